//! Golden end-to-end trainings: tiny runs of the seed's three models, a modern-like one, one
//! that uses the rest of the vocabulary and a residual one, on synthetic data, each trained
//! through the command line (`run --fold 1` and `final`, on 1, 2 and 4 threads) and pinned by
//! the sha256 of its fold's history and of its final model's weights. A change that alters
//! what training computes fails here: if it is meant, it bumps `NUMERICS_VERSION` (src/key.rs)
//! and the failure prints the digests to renew; if it is not, it is a bug. The digests do not
//! depend on the build profile or the CPU (every sum is taken in an order fixed by the shapes;
//! see docs/speed.md).

mod common;
use common::*;

use std::path::Path;

/// Synthetic images used: the first 320 (fold 1 trains on 256 and validates on 64).
const DATA: &str = "\n[data]\ndataset = \"synthetic\"\nlimit = 320\n";

/// The seed's baseline, as experiments/baseline.toml builds it.
const BASELINE: &str = r#"
[[model.layers]]
conv = { filters = 32, kernel = 3, activation = "relu", init = "he_uniform" }
[[model.layers]]
maxpool = 2
[[model.layers]]
flatten = true
[[model.layers]]
dense = { units = 100, activation = "relu", init = "he_uniform" }
[[model.layers]]
dense = { units = 10, activation = "softmax" }
[train]
optimizer = "sgd"
learning_rate = 0.01
momentum = 0.9
epochs = 2
batch_size = 32
"#;

/// The seed's batch-norm variant.
const BATCHNORM: &str = r#"
[[model.layers]]
conv = { filters = 32, kernel = 3, activation = "relu", init = "he_uniform" }
[[model.layers]]
batchnorm = {}
[[model.layers]]
maxpool = 2
[[model.layers]]
flatten = true
[[model.layers]]
dense = { units = 100, activation = "relu", init = "he_uniform" }
[[model.layers]]
batchnorm = {}
[[model.layers]]
dense = { units = 10, activation = "softmax" }
[train]
epochs = 2
"#;

/// The seed's deeper model (its 64-filter convs are computed by Winograd F(3×3, 3×3)).
const DEEPER: &str = r#"
[[model.layers]]
conv = { filters = 32, kernel = 3, activation = "relu", init = "he_uniform" }
[[model.layers]]
maxpool = 2
[[model.layers]]
conv = { filters = 64, kernel = 3, activation = "relu", init = "he_uniform" }
[[model.layers]]
conv = { filters = 64, kernel = 3, activation = "relu", init = "he_uniform" }
[[model.layers]]
maxpool = 2
[[model.layers]]
flatten = true
[[model.layers]]
dense = { units = 100, activation = "relu", init = "he_uniform" }
[[model.layers]]
dense = { units = 10, activation = "softmax" }
[train]
epochs = 2
"#;

/// experiments/modern.toml's recipe, narrower: 'same' convs with batch norm, dropout, Adam on
/// a one-cycle schedule, label smoothing, affine augmentation.
const MODERN: &str = r#"
[data.augment]
affine = { rotation = 10, shift = 0.1, zoom = 0.1 }
[[model.layers]]
conv = { filters = 16, kernel = 3, padding = "same", init = "he_uniform" }
[[model.layers]]
batchnorm = { activation = "relu" }
[[model.layers]]
conv = { filters = 16, kernel = 3, padding = "same", init = "he_uniform" }
[[model.layers]]
batchnorm = { activation = "relu" }
[[model.layers]]
maxpool = 2
[[model.layers]]
dropout = { rate = 0.25 }
[[model.layers]]
conv = { filters = 32, kernel = 3, padding = "same", init = "he_uniform" }
[[model.layers]]
batchnorm = { activation = "relu" }
[[model.layers]]
maxpool = 2
[[model.layers]]
dropout = { rate = 0.25 }
[[model.layers]]
flatten = true
[[model.layers]]
dense = { units = 64, init = "he_uniform" }
[[model.layers]]
batchnorm = { activation = "relu" }
[[model.layers]]
dropout = { rate = 0.5 }
[[model.layers]]
dense = { units = 10, activation = "softmax" }
[train]
epochs = 2
batch_size = 64
label_smoothing = 0.1
schedule = "onecycle"
[train.optimizer.adam]
learning_rate = 0.003
"#;

/// What the other models leave out: Winograd F(2×2) and F(4×4), strided 'same' convs, average
/// and global average pooling, ELU and leaky ReLU, RMSprop with momentum and weight decay, a
/// step schedule, standardized inputs, elastic distortion.
const VOCABULARY: &str = r#"
[data.augment]
elastic = { alpha = 20, sigma = 4 }
affine = { rotation = 5 }
[[model.layers]]
conv = { filters = 16, kernel = 3, activation = "relu", init = "he_uniform" }
[[model.layers]]
conv = { filters = 16, kernel = 3, activation = "relu", algorithm = "winograd", init = "he_uniform" }
[[model.layers]]
conv = { filters = 16, kernel = 3, activation = "elu", algorithm = "winograd4" }
[[model.layers]]
avgpool = 2
[[model.layers]]
conv = { filters = 24, kernel = 3, stride = 2, padding = "same", activation = { leaky_relu = 0.1 } }
[[model.layers]]
globalavgpool = true
[[model.layers]]
dense = { units = 32, activation = "leaky_relu" }
[[model.layers]]
dense = { units = 10, activation = "softmax" }
[train]
epochs = 2
batch_size = 16
schedule = "step"
[train.optimizer.rmsprop]
learning_rate = 0.002
momentum = 0.5
weight_decay = 0.01
"#;

/// Residual blocks (projected with a stride, identity repeated, and without a shortcut, one
/// holding a max-pool) and the augmentations for clothing: flips both ways, crops after
/// padding, random erasing with random fill; AdamW.
const RESIDUAL: &str = r#"
[data.augment]
flip = "horizontal_and_vertical"
crop = { padding = 2 }
erasing = { probability = 0.5, fill = "random" }
[[model.layers]]
conv = { filters = 8, kernel = 3, padding = "same", init = "he_uniform" }
[[model.layers]]
batchnorm = { activation = "relu" }
[[model.layers]]
[model.layers.residual]
repeat = 2
[[model.layers.residual.layers]]
conv = { filters = 8, kernel = 3, padding = "same", init = "he_uniform" }
[[model.layers.residual.layers]]
batchnorm = { activation = "relu" }
[[model.layers.residual.layers]]
conv = { filters = 8, kernel = 3, padding = "same", init = "he_uniform" }
[[model.layers.residual.layers]]
batchnorm = {}
[[model.layers]]
[model.layers.residual]
[[model.layers.residual.layers]]
conv = { filters = 16, kernel = 3, stride = 2, padding = "same", init = "he_uniform" }
[[model.layers.residual.layers]]
batchnorm = { activation = "relu" }
[[model.layers.residual.layers]]
conv = { filters = 16, kernel = 3, padding = "same", init = "he_uniform" }
[[model.layers]]
[model.layers.residual]
shortcut = "none"
activation = "linear"
[[model.layers.residual.layers]]
maxpool = 2
[[model.layers]]
globalavgpool = true
[[model.layers]]
dense = { units = 10, activation = "softmax" }
[train]
epochs = 2
[train.optimizer.adamw]
learning_rate = 0.003
"#;

/// (name, layers and training, the numerics version the digests were made under, sha256 of
/// `results/<name>/folds/fold-1.csv`, sha256 of the final model's weights).
const GOLDEN: &[(&str, &str, u32, &str, &str)] = &[
    (
        "baseline",
        BASELINE,
        2,
        "044e61a270e9107fb98e1040202f6a3ad4804d6bd7092a75fc4864fbd8890fe9",
        "7feb471d7b5074a652582692015714af93d25e5019bf0614c4156aebfd48cab2",
    ),
    (
        "batchnorm",
        BATCHNORM,
        2,
        "d081441f89264854a66c9de10f8bffee86c578000e5b289efc800443918808a6",
        "d5c82eeafddb40418c19413d64bbeb587b4e4b471777c3f6c91ecd3fdd3499eb",
    ),
    (
        "deeper",
        DEEPER,
        3,
        "e1caf9507eda0ebbd8e04098c53c95d31ac66cdfebd99ae28d1c30faf5654e7d",
        "4715893ec0ec94395ab4157405e4be04ff2445047efea348e05046f91df83666",
    ),
    (
        "modern",
        MODERN,
        3,
        "921b2b09ca5f6146e3a70e00349a8899c884feb4037ad52ebdf36fc0412f6458",
        "591034e155d0c2a2c9f8a492bc234545aaca99b04ee2bdff523d3269096469a6",
    ),
    (
        "vocabulary",
        VOCABULARY,
        3,
        "efcbbe4288fb7b23b3f35aa3a3835dd801d3d69d906eb887dea0f72c469bc017",
        "6fa85011e04794e1ff53b0c0dd3e39bfdc9942ff9613e2c08f7ea8f290725e62",
    ),
    (
        "residual",
        RESIDUAL,
        3,
        "d0e9c6e87854268bb99e8ca0ba6d4e3220059e66f48ff79ec3fdf70a1631bd23",
        "70f730ba5e3fad98f0382f4cf0276d511f30bedbd2f6166b06ef395279bb6dd8",
    ),
];

/// sha256 of every tensor of a model file, in name order (name, shape and little-endian
/// bytes): the weights' bits, without the metadata (which holds the crate's version).
fn weights_digest(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    let mut h = Sha256::new();
    for name in names {
        let t = st.tensor(name).unwrap();
        h.update(name.as_bytes());
        h.update(format!("{:?}", t.shape()).as_bytes());
        h.update(t.data());
    }
    format!("{:x}", h.finalize())
}

/// Runs the binary in `dir`, under the command in `MNIST_LAB_RUNNER` when it is set (an
/// emulator: `MNIST_LAB_RUNNER="qemu-x86_64 -cpu EPYC-Rome"` trains on an AVX2-only CPU; see
/// bench/xcpu.sh).
fn run_mnist_lab(dir: &Path, args: &[&str]) -> std::process::Output {
    let runner = std::env::var("MNIST_LAB_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    let bin = env!("CARGO_BIN_EXE_mnist-lab");
    let mut cmd = match words.next() {
        Some(program) => {
            let mut c = std::process::Command::new(program);
            c.args(words).arg(bin);
            c
        }
        None => std::process::Command::new(bin),
    };
    cmd.current_dir(dir).args(args).output().unwrap()
}

fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn tiny_trainings_give_the_pinned_bits_on_1_2_and_4_threads() {
    let w = workspace("golden");
    let d = w.path();
    let mut wrong = Vec::new();
    for &(name, spec, numerics, history, weights) in GOLDEN {
        let file = format!("experiments/{name}.toml");
        std::fs::write(d.join(&file), format!("{DATA}{spec}")).unwrap();
        let exp = mnist_lab::experiment::load(&d.join(&file)).unwrap();
        let info = mnist_lab::data::dataset::info(&d.join("data/synthetic"), "synthetic").unwrap();
        let now = mnist_lab::key::numerics(&exp.network(&info).unwrap());
        // One model on 1, 2 and 4 threads (the fold alone takes them all, as `final` does):
        // the work is split differently each time, and the bits must not move. Under an
        // emulator (the cross-CPU check, about 10× slower) on 2 threads only.
        let emulated = std::env::var("MNIST_LAB_RUNNER").is_ok_and(|r| !r.trim().is_empty());
        let counts: &[&str] = if emulated { &["2"] } else { &["1", "2", "4"] };
        for &threads in counts {
            let results = format!("results-{threads}");
            for cmd in [vec!["run", &file, "--fold", "1"], vec!["final", &file]] {
                let mut args = vec!["--threads", threads, "--results", &results];
                args.extend(cmd);
                let out = run_mnist_lab(d, &args);
                assert!(out.status.success(), "{args:?}: {}", text(&out));
            }
            let got_history = sha256(&d.join(format!("{results}/{name}/folds/fold-1.csv")));
            let got_weights =
                weights_digest(&d.join(format!("{results}/{name}/final/model.safetensors")));
            if (now, got_history.as_str(), got_weights.as_str()) != (numerics, history, weights) {
                let why = if now != numerics {
                    format!("its numerics version is now {now} (the digests were made under {numerics}): renew them")
                } else {
                    format!("it trains other bits under the same numerics version {now}: a bug (does a thread count change what is summed?), or a change of numerics that must bump NUMERICS_VERSION (src/key.rs) before its digests are renewed")
                };
                wrong.push(format!(
                    "{name} on {threads} threads: {why}\n    (\"{name}\", {}, {now}, \"{got_history}\", \"{got_weights}\"),",
                    name.to_uppercase()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}
