#!/usr/bin/env bash
# Does training give the same bits on a CPU without AVX-512? (A measuring tool, not part of the
# product; see docs/speed.md, "Identical on every CPU, checked".) qemu-user runs the programs
# on an emulated AMD EPYC-Rome (AVX2 and FMA, no AVX-512; its FMA is emulated exactly), so
# `gemm` picks its AVX2 kernels and the block depths that go with them, as it would on such a
# CPU; the cache sizes it reads (from /sys) stay this machine's.
#   1. builds mnist-lab for x86-64-v3 (AVX2 + FMA: our own loops use AVX2 too) into $TARGET;
#   2. runs, emulated, the unit tests that pin bits: deep products' blocks, Winograd's digests;
#   3. trains the final model of a small baseline (the first $LIMIT training images, 2 epochs)
#      with $BIN natively and with the x86-64-v3 build emulated, and compares the two files
#      byte for byte (a model file holds every weight's bits; its header is sorted).
# Needs qemu-user (apt-get install qemu-user) and the data (make data). About 10 minutes, most
# of it emulated training (~8 images/s).
set -euo pipefail
BIN=${BIN:-target/release/mnist-lab}
TARGET=${TARGET:-/tmp/mnist-lab-x86-64-v3}
LIMIT=${LIMIT:-1500}
CPU=${CPU:-EPYC-Rome}
DATA_DIR=${DATA_DIR:-data}
command -v qemu-x86_64 >/dev/null || { echo "error: qemu-x86_64 not found (apt-get install qemu-user)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "error: $BIN not built (make build)" >&2; exit 1; }
out=$(mktemp -d)
emu() { qemu-x86_64 -cpu "$CPU" "$@" 2> >(grep -v "TCG doesn't support" >&2); }

echo "host: $(lscpu | sed -n 's/^Model name: *//p'); emulated: $CPU"
RUSTFLAGS="-C target-cpu=x86-64-v3" CARGO_TARGET_DIR="$TARGET" cargo build --release --quiet
tests=$(RUSTFLAGS="-C target-cpu=x86-64-v3" CARGO_TARGET_DIR="$TARGET" \
  cargo test --release --lib --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | head -1)
[ -n "$tests" ] || { echo "error: no unit-test binary built" >&2; exit 1; }
emu "$tests" deep_products golden

mkdir -p "$out/experiments"
sed -e "s/^\[data\]$/[data]\nlimit = $LIMIT/" -e 's/^epochs = .*/epochs = 2/' \
  experiments/baseline.toml > "$out/experiments/baseline.toml"
"$BIN" --data-dir "$DATA_DIR" --results "$out/native" final "$out/experiments/baseline.toml"
emu "$TARGET/release/mnist-lab" --data-dir "$DATA_DIR" --results "$out/emulated" \
  final "$out/experiments/baseline.toml"
model=baseline/final/model.safetensors
if cmp "$out/native/$model" "$out/emulated/$model"; then
  echo "same bits: the model trained natively and the one trained on the emulated $CPU"
else
  echo "DIFFERENT: $out/native/$model and $out/emulated/$model" >&2
  exit 1
fi
