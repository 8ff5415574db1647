//! The final model: trained on all training images, saved, then scored on the test set.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::cv::{Paths, NUMERICS_VERSION};
use crate::data::mnist::{self, write_atomic, Split, CLASSES};
use crate::data::prep::Scaler;
use crate::experiment::Experiment;
use crate::model::io::{self, SavedModel};
use crate::model::Network;
use crate::progress::Progress;
use crate::results::csv::{history_csv, HistoryRow};
use crate::rng::Rng;
use crate::train::{evaluate_with, train, TrainData};

/// The model file inside a final folder.
pub const MODEL_FILE: &str = "model.safetensors";

/// results/<exp>/final
pub fn final_dir(paths: &Paths, exp: &str) -> PathBuf {
    paths.exp_dir(exp).join("final")
}

/// Accepts a final folder or the model file itself.
pub fn model_path(given: &Path) -> PathBuf {
    if given.is_dir() {
        given.join(MODEL_FILE)
    } else {
        given.to_path_buf()
    }
}

fn final_key(exp: &Experiment, data_sha: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "mnist-lab {} numerics {NUMERICS_VERSION}\nfinal\ndata {data_sha}\n",
        env!("CARGO_PKG_VERSION")
    ));
    h.update(exp.to_toml());
    format!("{:x}", h.finalize())
}

/// Trains `exp` on every training image (no validation split) and saves the model, unless a
/// model trained from the same experiment, data and code is already there (or `force`).
pub fn train_final(exp: &Experiment, paths: &Paths, force: bool) -> Result<PathBuf> {
    let dir = final_dir(paths, &exp.name);
    let path = dir.join(MODEL_FILE);
    let ds = mnist::load(
        &mnist::dataset_dir(&paths.data, &exp.data.dataset),
        Split::Train,
    )?;
    let key = final_key(exp, &ds.sha256);
    if !force && path.is_file() {
        if let Ok(m) = io::load(&path) {
            if m.metadata.get("key") == Some(&key) {
                eprintln!("{}: final model is up to date", exp.name);
                return Ok(path);
            }
        }
    }
    let n = exp.data.limit.map_or(ds.len(), |l| l.min(ds.len()));
    let idx: Vec<usize> = (0..n).collect();
    let scaler = Scaler::fit(exp.data.scaling, &ds, &idx);
    let mut net = Network::build(exp, &mut Rng::new(exp.train.seed, 3000))?;
    // One model, all cores: the GEMM's bits do not depend on its thread count.
    crate::model::gemm::set_threads(std::thread::available_parallelism().map_or(1, |n| n.get()));
    let progress = Progress::new();
    let mut task = progress.task(format!("{} final", exp.name), exp.train.epochs);
    let rows = train(
        &mut net,
        exp,
        &TrainData {
            ds: &ds,
            scaler: &scaler,
            train: &idx,
            val: &[],
        },
        &mut Rng::new(exp.train.seed, 3001),
        &mut |e| task.event(e),
    );
    task.finish();
    let history: Vec<HistoryRow> = rows
        .into_iter()
        .map(|row| HistoryRow { fold: 0, row })
        .collect();
    write_atomic(&dir.join("history.csv"), history_csv(&history).as_bytes())?;
    write_atomic(&dir.join("spec.toml"), exp.to_toml().as_bytes())?;
    io::save(
        &path,
        &mut net,
        exp,
        &scaler,
        &[
            ("key", key),
            ("data_sha256", ds.sha256.clone()),
            ("train_images", n.to_string()),
        ],
    )?;
    println!("saved {}", path.display());
    Ok(path)
}

/// Test-set score of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct TestScore {
    /// Fraction correct.
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    /// confusion[true][predicted] counts.
    pub confusion: [[usize; CLASSES]; CLASSES],
    /// Mean cross-entropy of each true class.
    pub class_loss: [f64; CLASSES],
}

impl TestScore {
    /// test.csv: one row per true class (count, accuracy, predicted-class counts), then `all`.
    pub fn to_csv(&self) -> String {
        let mut s = String::from("class,n,accuracy");
        for p in 0..CLASSES {
            let _ = write!(s, ",pred_{p}");
        }
        s.push_str(",loss\n");
        let mut totals = [0usize; CLASSES];
        let mut n_all = 0;
        for (t, row) in self.confusion.iter().enumerate() {
            let n: usize = row.iter().sum();
            n_all += n;
            let _ = write!(s, "{t},{n},{:.6}", row[t] as f64 / n.max(1) as f64);
            for (p, c) in row.iter().enumerate() {
                totals[p] += c;
                let _ = write!(s, ",{c}");
            }
            let _ = writeln!(s, ",{:.6}", self.class_loss[t]);
        }
        let _ = write!(s, "all,{n_all},{:.6}", self.accuracy);
        for c in totals {
            let _ = write!(s, ",{c}");
        }
        let _ = writeln!(s, ",{:.6}", self.loss);
        s
    }
}

/// Scores a loaded model on the test split of its dataset.
pub fn score_test(model: &mut SavedModel, data_root: &Path) -> Result<TestScore> {
    let ds = mnist::load(
        &mnist::dataset_dir(data_root, &model.exp.data.dataset),
        Split::Test,
    )?;
    let idx: Vec<usize> = (0..ds.len()).collect();
    let mut confusion = [[0usize; CLASSES]; CLASSES];
    let mut loss_sum = [0.0f64; CLASSES];
    let score = evaluate_with(&mut model.net, &ds, &model.scaler, &idx, |chunk, logits| {
        for (&i, row) in chunk.iter().zip(logits.chunks_exact(CLASSES)) {
            let label = ds.labels[i] as usize;
            confusion[label][crate::model::loss::argmax(row)] += 1;
            loss_sum[label] += crate::model::loss::sample_cross_entropy(row, label);
        }
    });
    let mut class_loss = [0.0f64; CLASSES];
    for (t, l) in class_loss.iter_mut().enumerate() {
        *l = loss_sum[t] / confusion[t].iter().sum::<usize>().max(1) as f64;
    }
    Ok(TestScore {
        accuracy: score.acc,
        loss: score.loss,
        confusion,
        class_loss,
    })
}

/// Loads the model at `given` (folder or file), scores the test set and writes test.csv and
/// confusion.png beside the model.
pub fn evaluate(given: &Path, data_root: &Path) -> Result<TestScore> {
    let path = model_path(given);
    let mut model = io::load(&path)?;
    let score = score_test(&mut model, data_root)?;
    let dir = path.parent().context("model path has no folder")?;
    write_atomic(&dir.join("test.csv"), score.to_csv().as_bytes())?;
    crate::results::plots::confusion_png(
        &dir.join("confusion.png"),
        &score.confusion,
        &model.exp.name,
    )?;
    if score.confusion.iter().flatten().sum::<usize>() == 0 {
        bail!("the test set is empty");
    }
    Ok(score)
}
