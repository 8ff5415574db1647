#!/usr/bin/env bash
# One model on 1 and on N threads, real runs, with the runs that something else on the machine
# disturbed left out (a measuring tool, not part of the product; see docs/speed.md).
#
# For each experiment file it alternates `run --fold 1 --jobs 1 --threads 1` and `--threads N`
# (ROUNDS times each, into a scratch results folder, so nothing is cached) and reads the
# samples/s the run prints. The machine's cores may be shared with programs this process cannot
# see (another container on the same kernel): /proc/stat counts every program's CPU time, so
# the CPU time others took during a run is the machine's busy time less the run's own (from
# /usr/bin/time). A run during which others took more than MAX_OTHERS percent of one core is
# reported but left out of the summary.
#
#   bash bench/threads.sh /tmp/exp/modern-small.toml ...   # experiments limited to a few
#                                                           # thousand images ([data] limit)
# Environment: BIN (default target/release/mnist-lab), THREADS (2), ROUNDS (4), DATA (data),
# MAX_OTHERS (5).
set -euo pipefail
BIN=${BIN:-target/release/mnist-lab}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-4}
DATA=${DATA:-data}
MAX_OTHERS=${MAX_OTHERS:-5}
[ $# -gt 0 ] || { echo "usage: bash bench/threads.sh EXPERIMENT.toml..." >&2; exit 2; }
command -v /usr/bin/time > /dev/null || { echo "error: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Busy jiffies of the whole machine (user, nice, system, irq, softirq, steal).
busy() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
hz=$(getconf CLK_TCK)

echo "| experiment | threads | samples/s | wall s | own CPU s | others' CPU, % of a core | kept |"
echo "|---|---:|---:|---:|---:|---:|---|"
for exp in "$@"; do
    name=$(basename "$exp" .toml)
    for r in $(seq "$ROUNDS"); do
        for t in 1 "$THREADS"; do
            rm -rf "$scratch/results"
            b0=$(busy)
            /usr/bin/time -o "$scratch/time" -f "%e %U %S" "$BIN" --data-dir "$DATA" \
                --results "$scratch/results" --threads "$t" run "$exp" --fold 1 --jobs 1 \
                > "$scratch/out" 2>&1 || { cat "$scratch/out" >&2; exit 1; }
            b1=$(busy)
            read -r wall user sys < "$scratch/time"
            rate=$(sed -n 's/^>.* \([0-9]*\) samples\/s).*/\1/p' "$scratch/out" | tail -1)
            others=$(awk -v b="$((b1 - b0))" -v hz="$hz" -v u="$user" -v s="$sys" -v w="$wall" \
                'BEGIN { o = b / hz - u - s; if (o < 0) o = 0; printf "%.1f", 100 * o / w }')
            kept=$(awk -v o="$others" -v m="$MAX_OTHERS" 'BEGIN { print (o <= m) ? "yes" : "no" }')
            echo "| $name | $t | $rate | $wall | $(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }') | $others | $kept |"
            echo "$name $t $rate $kept" >> "$scratch/runs"
        done
    done
done

echo
echo "| experiment | 1 thread, best (median) | $THREADS threads, best (median) | ratio of the bests | runs kept (1 / $THREADS) |"
echo "|---|---:|---:|---:|---|"
python3 - "$scratch/runs" "$THREADS" <<'PY'
import sys, statistics
runs, n = {}, sys.argv[2]
for line in open(sys.argv[1]):
    name, t, rate, kept = line.split()
    runs.setdefault(name, {}).setdefault(t, []).append((int(rate), kept == "yes"))
for name, by in runs.items():
    ok = {t: [r for r, k in v if k] for t, v in by.items()}
    cell = lambda v: f"{max(v)} ({statistics.median(v):.0f})" if v else "none kept"
    one, many = ok.get("1", []), ok.get(n, [])
    ratio = f"{max(many) / max(one):.2f}" if one and many else "-"
    print(f"| {name} | {cell(one)} | {cell(many)} | {ratio} | {len(one)} / {len(many)} |")
PY
