#!/usr/bin/env bash
# What does pruning cost in quality? A cheap version of a search run both ways: pruned as its
# file declares, and unpruned (every variant cross-validated). Both draw the same variants (the
# same [search] seed and space) and train them to the same bits, so the unpruned run holds the
# pruned winner's own CV; the regret is the best unpruned CV minus the pruned winner's.
# A measuring tool, not part of the product (see docs/search.md).
#   bash bench/search_regret.sh [SEARCH] [LIMIT] [EPOCHS] [FOLDS] [MIN_EPOCHS]
# defaults: experiments/fashion-search.toml, the first 6000 training images, 6 epochs, 3 folds,
# first rung at 2 epochs. Needs the data (make data) and a build (make build).
set -euo pipefail
SEARCH=${1:-experiments/fashion-search.toml}
LIMIT=${2:-6000}
EPOCHS=${3:-6}
FOLDS=${4:-3}
MIN_EPOCHS=${5:-2}
BIN=${BIN:-$PWD/target/release/mnist-lab}
DATA_DIR=${DATA_DIR:-$PWD/data}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out/experiments"
name=$(basename "$SEARCH" .toml)
# The cheap version: fewer images, epochs and folds; the pruned file keeps [search.halving].
sed -e "s/^\[data\]$/[data]\nlimit = $LIMIT/" -e "s/^epochs = .*/epochs = $EPOCHS/" \
    -e "s/^min_epochs = .*/min_epochs = $MIN_EPOCHS/" "$SEARCH" > "$out/experiments/pruned.toml"
printf '\n[cv]\nfolds = %s\n' "$FOLDS" >> "$out/experiments/pruned.toml"
# Unpruned: the same file without its [search.halving] / [search.race] tables.
awk '/^\[search\.(halving|race)\]/{skip=1; next} /^\[/{skip=0} !skip' \
    "$out/experiments/pruned.toml" > "$out/experiments/unpruned.toml"
cd "$out"
for run in pruned unpruned; do
  start=$(date +%s)
  "$BIN" --data-dir "$DATA_DIR" run "experiments/$run.toml" > "$run.log" 2>&1
  echo "$run: $(( $(date +%s) - start )) s, $(grep -o 'fold_epochs = [0-9]*' results/$run/search.toml)"
done
# The pruned winner (the best CV among the survivors, as the report picks it), its unpruned
# twin's rank, and the best unpruned variant; the names differ only by their prefix.
python3 - <<'PY'
import csv, glob, os

def cv(d):
    rows = list(csv.DictReader(open(os.path.join(d, "folds.csv"))))
    return 100 * sum(float(r["val_acc"]) for r in rows) / len(rows)

def runs(prefix):
    return {os.path.basename(d)[len(prefix):]: cv(d)
            for d in glob.glob(f"results/{prefix}*") if os.path.exists(os.path.join(d, "folds.csv"))}

pruned, unpruned = runs("pruned-"), runs("unpruned-")
winner = max(sorted(pruned), key=lambda v: pruned[v])
ranked = sorted(sorted(unpruned), key=lambda v: -unpruned[v])
print(f"pruned survivors: " + ", ".join(f"{v} {pruned[v]:.3f}" for v in sorted(pruned, key=lambda v: -pruned[v])))
print(f"pruned winner: {winner} (CV {pruned[winner]:.3f}; its unpruned twin {unpruned[winner]:.3f}, rank {ranked.index(winner) + 1} of {len(ranked)})")
print(f"unpruned best: {ranked[0]} (CV {unpruned[ranked[0]]:.3f}); top 5: " + ", ".join(f"{unpruned[v]:.3f}" for v in ranked[:5]))
print(f"regret: {unpruned[ranked[0]] - unpruned[winner]:.3f} points")
PY
echo "results in $out"
