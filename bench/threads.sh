#!/usr/bin/env bash
# One model on 1 and on N threads, real runs alternated (a measuring tool, not part of the
# product; see docs/speed.md).
#
# For each experiment file it alternates `run --fold 1 --jobs 1 --threads 1` and `--threads N`,
# ROUNDS times each, into a scratch results folder (so nothing is cached), and prints the
# samples/s each run reports, then the best and the median of each. On a machine whose cores
# other programs share (this project's 2-core machine is one: another tenant's tasks show in
# /proc/loadavg but not in this container's /proc/stat), compare the bests, and rerun when the
# two columns' spreads overlap.
#
#   bash bench/threads.sh /tmp/exp/modern-small.toml ...   # experiments limited to a few
#                                                           # thousand images ([data] limit)
# Environment: BIN (default target/release/mnist-lab), THREADS (2), ROUNDS (4), DATA (data).
set -euo pipefail
BIN=${BIN:-target/release/mnist-lab}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-4}
DATA=${DATA:-data}
[ $# -gt 0 ] || { echo "usage: bash bench/threads.sh EXPERIMENT.toml..." >&2; exit 2; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

for exp in "$@"; do
    name=$(basename "$exp" .toml)
    for r in $(seq "$ROUNDS"); do
        for t in 1 "$THREADS"; do
            rm -rf "$scratch/results"
            "$BIN" --data-dir "$DATA" --results "$scratch/results" --threads "$t" \
                run "$exp" --fold 1 --jobs 1 > "$scratch/out" 2>&1 || { cat "$scratch/out" >&2; exit 1; }
            rate=$(sed -n 's/^>.* \([0-9]*\) samples\/s).*/\1/p' "$scratch/out" | tail -1)
            echo "$name $t $rate" >> "$scratch/runs"
        done
    done
done

python3 - "$scratch/runs" "$THREADS" <<'PY'
import sys, statistics
runs, n = {}, sys.argv[2]
for line in open(sys.argv[1]):
    name, t, rate = line.split()
    runs.setdefault(name, {}).setdefault(t, []).append(int(rate))
print(f"| experiment | 1 thread, samples/s | {n} threads, samples/s | best {n} / best 1 | median {n} / median 1 |")
print("|---|---|---|---:|---:|")
for name, by in runs.items():
    one, many = by["1"], by[n]
    cell = lambda v: " / ".join(map(str, v))
    print(f"| {name} | {cell(one)} | {cell(many)} | {max(many) / max(one):.2f} | "
          f"{statistics.median(many) / statistics.median(one):.2f} |")
PY
