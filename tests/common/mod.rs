//! Shared fixtures for the CLI tests: a synthetic MNIST-format dataset and temp folders.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mnist_lab::data::idx::encode_idx;

/// A temporary folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("mnist-lab-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A learnable synthetic image of digit `label`: a bright bar whose row encodes the label.
pub fn synthetic_image(label: usize, variant: usize) -> Vec<u8> {
    let mut img = vec![0u8; 784];
    let row = 3 + 2 * label;
    let shift = variant % 5;
    for x in 4 + shift..20 + shift {
        img[row * 28 + x] = 200 + (variant % 50) as u8;
        img[(row + 1) * 28 + x] = 120;
    }
    img[(variant * 7) % 784] = 255;
    img
}

/// Writes `n_train` + `n_test` synthetic images as the four IDX files into `dir`.
pub fn write_synthetic_mnist(dir: &Path, n_train: usize, n_test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for (prefix, n, offset) in [("train", n_train, 0), ("t10k", n_test, 7)] {
        let mut images = Vec::with_capacity(n * 784);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let label = (i * 3 + offset) % 10;
            images.extend(synthetic_image(label, i + offset));
            labels.push(label as u8);
        }
        std::fs::write(
            dir.join(format!("{prefix}-images-idx3-ubyte")),
            encode_idx(&[n, 28, 28], &images),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{prefix}-labels-idx1-ubyte")),
            encode_idx(&[n], &labels),
        )
        .unwrap();
    }
}

/// A learnable synthetic `side`×`side` image of class `label` (of up to 2·(side − 6)/2
/// classes): a bright bar whose row and half encode the label.
pub fn synthetic_letter(side: usize, label: usize, variant: usize) -> Vec<u8> {
    let mut img = vec![0u8; side * side];
    let per_half = (side - 6) / 2;
    let row = 2 + 2 * (label % per_half);
    let x0 = if label < per_half { 1 } else { side / 2 + 1 };
    let shift = variant % 3;
    for x in x0 + shift..x0 + shift + side / 2 - 4 {
        img[row * side + x] = 200 + (variant % 50) as u8;
        img[(row + 1) * side + x] = 120;
    }
    img[(variant * 7) % (side * side)] = 255;
    img
}

/// Writes a synthetic dataset of `side`×`side` images and `classes` classes (every class in
/// both splits) as the four IDX files into `dir`.
pub fn write_synthetic(dir: &Path, side: usize, classes: usize, n_train: usize, n_test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for (prefix, n, offset) in [("train", n_train, 0), ("t10k", n_test, 5)] {
        let mut images = Vec::with_capacity(n * side * side);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let label = (i + offset) % classes;
            images.extend(synthetic_letter(side, label, i + offset));
            labels.push(label as u8);
        }
        std::fs::write(
            dir.join(format!("{prefix}-images-idx3-ubyte")),
            encode_idx(&[n, side, side], &images),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{prefix}-labels-idx1-ubyte")),
            encode_idx(&[n], &labels),
        )
        .unwrap();
    }
}

/// A tiny experiment on the synthetic data (folder name `synthetic`).
pub const TINY: &str = r#"
description = "tiny test model"
[data]
dataset = "synthetic"
limit = 600
[[model.layers]]
conv = { filters = 4, kernel = 3, activation = "relu", init = "he_uniform" }
[[model.layers]]
maxpool = 2
[[model.layers]]
flatten = true
[[model.layers]]
dense = { units = 16, activation = "relu", init = "he_uniform" }
[[model.layers]]
dense = { units = 10, activation = "softmax" }
[train]
epochs = 2
batch_size = 32
[cv]
folds = 2
"#;

/// A workspace with data/synthetic, experiments/tiny.toml and an empty results/.
pub fn workspace(tag: &str) -> TempDir {
    let t = TempDir::new(tag);
    write_synthetic_mnist(&t.path().join("data/synthetic"), 700, 100);
    std::fs::create_dir_all(t.path().join("experiments")).unwrap();
    std::fs::write(t.path().join("experiments/tiny.toml"), TINY).unwrap();
    t
}

/// Runs the binary in `dir`.
pub fn mnist_lab(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mnist-lab"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// stdout + stderr as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
