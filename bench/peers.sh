#!/usr/bin/env bash
# mnist-lab beside its peers, side by side in one run on this machine (a measuring tool, not
# part of the product; see docs/speed.md). Seconds per epoch of 48,000 training + 12,000
# validation images:
#   - Keras 3 / TensorFlow-CPU: the seed's own code (../shared/bench/keras_seed.py), 2 epochs;
#   - PyTorch eager with 2 threads, and two 1-thread PyTorch processes at once (one fold each,
#     the best use of 2 cores), ../shared/bench/torch_seed.py, 2 epochs;
#   - mnist-lab: `bench`, two folds at once (the column `make all` gets), and a real run of
#     folds 1 and 2 at once on the data (`run --fold 1,2 --jobs 2`, all the experiment's
#     epochs, into a scratch folder): its wall time per fold-epoch. The ratios use the real
#     run: `bench` trains on random batches, which never have the dead units whose zero
#     gradients drive optimizer state into the subnormals (see docs/speed.md);
#   - modern: its Keras twin (bench/keras_twin.py on results/modern/spec.toml), 2 epochs.
# Needs the venvs of ../shared/bench/README.md (TF=/tmp/tfenv, TORCH=/tmp/torchenv by default).
# Run it on an idle machine: `bash bench/peers.sh` (SEED_MODELS="" for the modern model alone).
set -euo pipefail
BIN=${BIN:-target/release/mnist-lab}
TF=${TF:-/tmp/tfenv/bin/python}
TORCH=${TORCH:-/tmp/torchenv/bin/python}
SHARED=${SHARED:-../shared/bench}
EPOCHS=${EPOCHS:-2}
STEPS=${STEPS:-300}
SEED_MODELS=${SEED_MODELS-baseline batchnorm deeper}
export MNIST_DIR=${MNIST_DIR:-data/mnist} TF_CPP_MIN_LOG_LEVEL=2
out=$(mktemp -d)
"$TF" -c "import keras, sklearn" || { echo "error: $TF lacks keras or scikit-learn (see ../shared/bench/README.md)" >&2; exit 1; }
[ -z "$SEED_MODELS" ] || "$TORCH" -c "import torch, numpy, sklearn" || { echo "error: $TORCH lacks torch, numpy or scikit-learn (pip install numpy scikit-learn)" >&2; exit 1; }

# s/epoch printed by the seed harnesses: "> 98.6  fold 1  40.1s  (20.05 s/epoch incl. val)".
per_epoch() { sed -n 's/.*(\([0-9.]*\) s\/epoch.*/\1/p' "$1" | head -1; }

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%F)"
"$BIN" bench $(for m in $SEED_MODELS modern; do echo "experiments/$m.toml"; done) --steps "$STEPS" | tee "$out/bench.md"
# The "s/epoch, N folds at once" column of the first table.
ours() { awk -F'|' -v m="$1" '$2 ~ "^ "m" $" { gsub(/ /, "", $10); print $10; exit }' "$out/bench.md"; }

echo
echo "| model | Keras | PyTorch, 2 threads | PyTorch, two 1-thread processes (per fold) | mnist-lab bench, 2 folds at once | mnist-lab real run, 2 folds at once | vs Keras | vs best PyTorch |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for m in $SEED_MODELS; do
  "$TF" "$SHARED/keras_seed.py" "$m" "$EPOCHS" 1 > "$out/keras-$m" 2>&1
  # keras_seed.py leaves its scores in the working directory: keep them with the raw outputs.
  mv -f "keras_${m}_${EPOCHS}_1.json" "$out/" 2>/dev/null || true
  THREADS=2 "$TORCH" "$SHARED/torch_seed.py" "$m" "$EPOCHS" 1 > "$out/torch2-$m" 2>&1
  THREADS=1 "$TORCH" "$SHARED/torch_seed.py" "$m" "$EPOCHS" 1 > "$out/torch1a-$m" 2>&1 &
  THREADS=1 "$TORCH" "$SHARED/torch_seed.py" "$m" "$EPOCHS" 1 > "$out/torch1b-$m" 2>&1
  wait
  k=$(per_epoch "$out/keras-$m"); t2=$(per_epoch "$out/torch2-$m")
  t1=$(python3 -c "print(f'{($(per_epoch "$out/torch1a-$m") + $(per_epoch "$out/torch1b-$m")) / 4:.2f}')")
  o=$(ours "$m")
  epochs=$(sed -n 's/^epochs = //p' "results/$m/spec.toml" | head -1)
  start=$(date +%s.%N)
  "$BIN" --results "$out/run" run "experiments/$m.toml" --fold 1,2 --jobs 2 > "$out/run-$m" 2>&1
  r=$(python3 -c "print(f'{($(date +%s.%N) - $start) / ($epochs * 2):.2f}')")
  python3 -c "k, t2, t1, o, r = $k, $t2, $t1, $o, $r; print(f'| $m | {k:.1f} | {t2:.1f} | {t1:.1f} | {o:.1f} | {r:.1f} | {k / r:.1f}× | {min(t2, t1) / r:.1f}× |')"
done
# Two 1-thread processes at once: each fold-epoch takes their own s/epoch, and the two give two
# fold-epochs in that time, so per fold-epoch of the pair it is half of their mean.

"$TF" bench/keras_twin.py results/modern/spec.toml "$EPOCHS" "$(nproc)" > "$out/twin" 2>&1
twin=$(sed -n 's/^epoch \([0-9]*\): \([0-9.]*\) s.*/\2/p' "$out/twin" | paste -sd/)
best=$(sed -n 's/^epoch [0-9]*: \([0-9.]*\) s.*/\1/p' "$out/twin" | sort -n | head -1)
o=$(ours modern)
python3 -c "print(f'| modern | {\"$twin\"} (twin; best {$best:.1f}) | | | {$o:.1f} | | {$best / $o:.1f}× (bench) | |')"
echo "(raw outputs in $out)"
