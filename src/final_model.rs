//! The final model: trained on all training images, saved, then scored on the test set.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::cv::lock::FileLock;
use crate::cv::plan::training_cost;
use crate::data::prep::Scaler;
use crate::data::{dataset, Split};
use crate::experiment::Experiment;
use crate::files::{write_atomic, Paths};
use crate::key::key;
use crate::model::io::{self, SavedModel};
use crate::model::Network;
use crate::progress::Progress;
use crate::results::csv::{history_csv, HistoryRow};
use crate::rng::{Run, Streams};
use crate::train::{evaluate_with, train, TrainData};

/// The model file inside a final folder.
pub const MODEL_FILE: &str = "model.safetensors";

/// results/<exp>/final
pub fn final_dir(paths: &Paths, exp: &str) -> PathBuf {
    paths.exp_dir(exp).join("final")
}

/// The lock held while the final model in `dir` (a [`final_dir`]) trains.
pub fn final_lock(dir: &Path) -> PathBuf {
    dir.join(".final.lock")
}

/// Accepts a final folder or the model file itself.
pub fn model_path(given: &Path) -> PathBuf {
    if given.is_dir() {
        given.join(MODEL_FILE)
    } else {
        given.to_path_buf()
    }
}

/// Trains the final models of `exps` (see [`train_final`]), up to `jobs` at once on worker
/// threads, the costliest first (work per image × images × epochs, as `run` orders folds);
/// while models are waiting each running one has its share of the process's threads
/// (`--threads`), and once none is, those still training share the threads the others left.
/// A model's bits do not depend on any of this. Every model is attempted: returns the
/// failures, each with its experiment's name.
pub fn train_finals(
    exps: &[&Experiment],
    paths: &Paths,
    force: bool,
    jobs: usize,
) -> Vec<(String, anyhow::Error)> {
    let mut order: Vec<(f64, &Experiment)> = exps.iter().map(|e| (cost(e, paths), *e)).collect();
    // Stable: equal costs keep the files' order.
    order.sort_by(|a, b| b.0.total_cmp(&a.0));
    let workers = jobs.min(order.len()).max(1);
    let queue = Mutex::new(VecDeque::from(order));
    let failures = Mutex::new(Vec::new());
    let progress = Progress::new();
    let budget = crate::model::par::budget();
    let busy = AtomicUsize::new(0);
    let threads = || match queue.lock().expect("queue").is_empty() {
        true => (budget / busy.load(Ordering::SeqCst).max(1)).max(1),
        false => (budget / workers).max(1),
    };
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some((_, exp)) = queue.lock().expect("queue").pop_front() else {
                    break;
                };
                busy.fetch_add(1, Ordering::SeqCst);
                let result = train_final(exp, paths, force, &progress, &threads);
                busy.fetch_sub(1, Ordering::SeqCst);
                if let Err(e) = result {
                    failures
                        .lock()
                        .expect("failures")
                        .push((exp.name.clone(), e));
                }
            });
        }
    });
    failures.into_inner().expect("failures")
}

/// Relative cost of `exp`'s final model, for the order [`train_finals`] takes them in (0 when
/// its data or network cannot be read: training it then says why).
fn cost(exp: &Experiment, paths: &Paths) -> f64 {
    let dir = paths.dataset_dir(&exp.data.dataset);
    let cost = || -> Result<f64> {
        let info = dataset::info(&dir, &exp.data.dataset)?;
        let network = exp.network(&info)?;
        let images = crate::data::idx::read_idx_header(&dataset::find_file(
            &dir,
            crate::data::catalog::FILES[0],
        )?)?;
        let n = images.first().copied().unwrap_or(0);
        Ok(training_cost(
            exp,
            &network,
            exp.data.limit.unwrap_or(n).min(n),
        ))
    };
    cost().unwrap_or(0.0)
}

/// Trains `exp` on every training image (no validation split) and saves the model, unless a
/// model trained from the same experiment, data and code is already there (or `force`).
/// `threads` is asked at each epoch's start how many threads the model may use.
pub fn train_final(
    exp: &Experiment,
    paths: &Paths,
    force: bool,
    progress: &Progress,
    threads: &(dyn Fn() -> usize + Sync),
) -> Result<PathBuf> {
    let dir = final_dir(paths, &exp.name);
    let path = dir.join(MODEL_FILE);
    let name = &exp.data.dataset;
    let ds = dataset::load(&paths.dataset_dir(name), name, Split::Train)?;
    let network = exp.network(&ds.info)?;
    let key = key(exp, &network, Run::Final, "", &ds.sha256);
    let up_to_date = || -> Result<bool> {
        if force || !path.is_file() {
            return Ok(false);
        }
        match io::load(&path) {
            Ok(m) if m.metadata.get("key") == Some(&key) => {}
            _ => return Ok(false),
        }
        progress.eprintln(&format!("{}: final model is up to date", exp.name));
        // What the key leaves out (the description, the `final` mark) may have changed:
        // the folder's spec.toml follows the experiment file, as `run`'s folder does.
        let spec = exp.to_toml();
        let spec_path = dir.join("spec.toml");
        if std::fs::read_to_string(&spec_path).ok().as_deref() != Some(spec.as_str()) {
            write_atomic(&spec_path, spec.as_bytes())?;
        }
        Ok(true)
    };
    if up_to_date()? {
        return Ok(path);
    }
    crate::files::probe_writable(&dir)?;
    // Two `final`s of one experiment at once (two terminals, two `make all`s) train it once:
    // the second waits for the first's lock, then finds its model up to date.
    let lock_path = final_lock(&dir);
    let _lock = match FileLock::try_acquire(&lock_path)? {
        Some(lock) => lock,
        None => {
            progress.eprintln(&format!(
                "{}: another mnist-lab process is training its final model; waiting for its lock ({})",
                exp.name,
                lock_path.display()
            ));
            FileLock::acquire(&lock_path)?
        }
    };
    // Saved by another process since the check above.
    if up_to_date()? {
        return Ok(path);
    }
    let n = exp.images_used(ds.len());
    let idx: Vec<usize> = (0..n).collect();
    let scaler = Scaler::fit(exp.data.scaling, &ds, &idx);
    let streams = Streams::new(exp.train.seed, Run::Final);
    let mut net = Network::build(&exp.model.layers, &ds.info, &mut streams.init())?;
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
        &streams,
        &mut |e| {
            // Its bits do not depend on the number of threads.
            if let crate::train::Event::EpochStart { .. } = e {
                crate::model::par::set_threads(threads());
            }
            task.event(e)
        },
    );
    task.finish(rows.is_ok());
    let rows = rows.with_context(|| format!("{}: final model not saved", exp.name))?;
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
        &ds.info,
        &scaler,
        &[
            ("key", key),
            ("data_sha256", ds.sha256.clone()),
            ("train_images", n.to_string()),
        ],
    )?;
    progress.println(&format!("saved {}", path.display()));
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
    pub confusion: Vec<Vec<usize>>,
    /// Mean cross-entropy of each true class.
    pub class_loss: Vec<f64>,
}

impl TestScore {
    /// test.csv: one row per true class (count, accuracy, predicted-class counts), then `all`.
    pub fn to_csv(&self) -> String {
        let classes = self.confusion.len();
        let mut s = String::from("class,n,accuracy");
        for p in 0..classes {
            let _ = write!(s, ",pred_{p}");
        }
        s.push_str(",loss\n");
        let mut totals = vec![0usize; classes];
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
        for c in &totals {
            let _ = write!(s, ",{c}");
        }
        let _ = writeln!(s, ",{:.6}", self.loss);
        s
    }
}

/// Scores a loaded model on the test split of its dataset.
pub fn score_test(model: &mut SavedModel, data_root: &Path) -> Result<TestScore> {
    let name = &model.exp.data.dataset;
    let ds = dataset::load(&data_root.join(name), name, Split::Test)?;
    if ds.info.image != model.info.image || ds.info.class_names != model.info.class_names {
        bail!(
            "the model was trained on {} images of {} classes, but {} has {} images of {} classes",
            model.info.image,
            model.info.classes(),
            data_root.join(name).display(),
            ds.info.image,
            ds.info.classes()
        );
    }
    let classes = ds.info.classes();
    let idx: Vec<usize> = (0..ds.len()).collect();
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut loss_sum = vec![0.0f64; classes];
    let score = evaluate_with(&mut model.net, &ds, &model.scaler, &idx, |chunk, logits| {
        for (&i, row) in chunk.iter().zip(logits.chunks_exact(classes)) {
            let label = ds.labels[i] as usize;
            confusion[label][crate::model::loss::argmax(row)] += 1;
            loss_sum[label] += crate::model::loss::sample_cross_entropy(row, label);
        }
    });
    let class_loss = loss_sum
        .iter()
        .zip(&confusion)
        .map(|(l, row)| l / row.iter().sum::<usize>().max(1) as f64)
        .collect();
    Ok(TestScore {
        accuracy: score.acc,
        loss: score.loss,
        confusion,
        class_loss,
    })
}

/// The model files `evaluate` is given (final folders or files), each once: two different
/// models in one folder are refused, since both would write that folder's test.csv and
/// confusion.png and the first one's scores would be lost.
pub fn evaluation_targets(given: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let mut out: Vec<PathBuf> = Vec::new();
    for g in given {
        let path = model_path(g);
        let dir = |p: &Path| {
            canonical(
                p.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new(".")),
            )
        };
        if let Some(other) = out.iter().find(|o| dir(o) == dir(&path)) {
            if canonical(other) == canonical(&path) {
                continue;
            }
            bail!(
                "{} and {} would both write test.csv and confusion.png into {}; keep each model in a folder of its own",
                other.display(),
                path.display(),
                dir(&path).display()
            );
        }
        out.push(path);
    }
    Ok(out)
}

/// Loads the model at `given` (folder or file), scores the test set and writes test.csv and
/// confusion.png beside the model.
pub fn evaluate(given: &Path, data_root: &Path) -> Result<TestScore> {
    let path = model_path(given);
    let mut model = io::load(&path)?;
    let score = score_test(&mut model, data_root)?;
    if !score.loss.is_finite() {
        bail!(
            "{}: its test loss is {}: the model's outputs are not finite numbers (its weights overflow); nothing written",
            path.display(),
            score.loss
        );
    }
    let dir = path.parent().context("model path has no folder")?;
    write_atomic(&dir.join("test.csv"), score.to_csv().as_bytes())?;
    crate::results::plots::confusion_png(
        &dir.join("confusion.png"),
        &score.confusion,
        &model.info.class_names,
        &model.exp.name,
    )?;
    if score.confusion.iter().flatten().sum::<usize>() == 0 {
        bail!("the test set is empty");
    }
    Ok(score)
}
