//! k-fold cross-validation: the seeded split, the fold loop over worker threads, the per-fold
//! cache, and merging per-fold files into history.csv / folds.csv.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::data::mnist::{self, write_atomic, Dataset, Split};
use crate::data::prep::Scaler;
use crate::experiment::Experiment;
use crate::model::{gemm, Network};
use crate::progress::Progress;
use crate::results::csv::{folds_csv, history_csv, read_history, FoldRow, HistoryRow};
use crate::results::stats::fold_mean_std;
use crate::rng::Rng;
use crate::train::{train, TrainData};

/// Bumped whenever a change alters what training computes (kernels, init, batching, loss), so
/// cached folds made by older code are recomputed. Speed-only changes keep it.
pub const NUMERICS_VERSION: u32 = 1;

/// Which images are held out in each fold.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldSplit {
    /// Held-out image indices of each fold (0-based fold), ascending.
    pub test: Vec<Vec<usize>>,
    /// Number of images split.
    pub n: usize,
    /// Short hash of the assignment: equal hashes mean identical folds.
    pub hash: String,
}

impl FoldSplit {
    /// Shuffles 0..n once with `seed` and cuts it into `k` folds, the first n % k one larger
    /// (scikit-learn's KFold(shuffle=True) layout).
    pub fn new(n: usize, k: usize, seed: u64) -> Self {
        let mut order: Vec<usize> = (0..n).collect();
        Rng::new(seed, 0x5EED_F01D).shuffle(&mut order);
        let mut test = Vec::with_capacity(k);
        let mut start = 0;
        for f in 0..k {
            let size = n / k + usize::from(f < n % k);
            let mut fold = order[start..start + size].to_vec();
            fold.sort_unstable();
            test.push(fold);
            start += size;
        }
        let mut h = Sha256::new();
        h.update((n as u64).to_le_bytes());
        for fold in &test {
            h.update((fold.len() as u64).to_le_bytes());
            for &i in fold {
                h.update((i as u32).to_le_bytes());
            }
        }
        let hash = format!("{:x}", h.finalize())[..16].to_string();
        FoldSplit { test, n, hash }
    }

    /// Training indices of 0-based `fold`: every image not held out, ascending.
    pub fn train(&self, fold: usize) -> Vec<usize> {
        let mut held = vec![false; self.n];
        for &i in &self.test[fold] {
            held[i] = true;
        }
        (0..self.n).filter(|&i| !held[i]).collect()
    }
}

/// Where things are read and written.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Data root (datasets in subfolders).
    pub data: PathBuf,
    /// Results root.
    pub results: PathBuf,
}

impl Paths {
    /// results/<exp>
    pub fn exp_dir(&self, exp: &str) -> PathBuf {
        self.results.join(exp)
    }
}

/// Per-fold files of an experiment.
fn fold_file(dir: &Path, fold: usize, ext: &str) -> PathBuf {
    dir.join("folds").join(format!("fold-{fold}.{ext}"))
}

/// Loads training datasets once each.
#[derive(Default)]
pub struct DataCache {
    sets: BTreeMap<String, Arc<Dataset>>,
}

impl DataCache {
    /// The training split of `name` under `root`.
    pub fn train(&mut self, root: &Path, name: &str) -> Result<Arc<Dataset>> {
        if let Some(d) = self.sets.get(name) {
            return Ok(d.clone());
        }
        let d = Arc::new(mnist::load(&mnist::dataset_dir(root, name), Split::Train)?);
        self.sets.insert(name.to_string(), d.clone());
        Ok(d)
    }
}

/// One (experiment, fold) unit of work with everything needed to run it.
#[derive(Clone)]
pub struct FoldJob {
    /// The experiment.
    pub exp: Arc<Experiment>,
    /// 1-based fold.
    pub fold: usize,
    /// Its training data.
    pub data: Arc<Dataset>,
    /// The split.
    pub split: Arc<FoldSplit>,
    /// Cache key of this fold's result.
    pub key: String,
}

/// A fold's relative training cost: work per image × images × epochs. The work is the
/// forward FLOPs of conv and dense layers, plus 20 per batch-normalized value (its memory-bound
/// passes; about what the seed's batchnorm model measures over the baseline).
fn fold_cost(job: &FoldJob) -> f64 {
    let exp = &job.exp;
    let flops = crate::bench::forward_flops(exp).map_or(0.0, |(f, _)| f);
    let normalized: usize = exp.summary().map_or(0, |rows| {
        exp.model
            .layers
            .iter()
            .zip(&rows)
            .filter(|(l, _)| matches!(l, crate::experiment::LayerSpec::Batchnorm(_)))
            .map(|(_, r)| r.output.len())
            .sum()
    });
    (flops + 20.0 * normalized as f64) * job.split.n as f64 * exp.train.epochs as f64
}

/// The cache key of a fold: what it was trained from, and by which numerics.
pub fn fold_key(exp: &Experiment, fold: usize, split: &FoldSplit, data_sha: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "mnist-lab {} numerics {NUMERICS_VERSION}\nfold {fold}\nsplit {}\ndata {data_sha}\n",
        env!("CARGO_PKG_VERSION"),
        split.hash
    ));
    h.update(exp.to_toml());
    format!("{:x}", h.finalize())
}

/// Prepares the jobs of `exp`: writes spec.toml and lists folds (all, or `only`) whose cached
/// result is missing or stale (all of them with `force`). Returns (pending, all) jobs.
pub fn plan_experiment(
    exp: &Experiment,
    paths: &Paths,
    data: &mut DataCache,
    only: Option<&[usize]>,
    force: bool,
) -> Result<(Vec<FoldJob>, Vec<FoldJob>)> {
    let ds = data.train(&paths.data, &exp.data.dataset)?;
    let n = exp.data.limit.map_or(ds.len(), |l| l.min(ds.len()));
    if n < exp.cv.folds {
        bail!("{}: only {n} images for {} folds", exp.name, exp.cv.folds);
    }
    let split = Arc::new(FoldSplit::new(n, exp.cv.folds, exp.cv.seed));
    let exp = Arc::new(exp.clone());
    let dir = paths.exp_dir(&exp.name);
    let mut all = Vec::new();
    let mut pending = Vec::new();
    for fold in 1..=exp.cv.folds {
        let key = fold_key(&exp, fold, &split, &ds.sha256);
        let job = FoldJob {
            exp: exp.clone(),
            fold,
            data: ds.clone(),
            split: split.clone(),
            key: key.clone(),
        };
        let wanted = only.is_none_or(|o| o.contains(&fold));
        let cached = std::fs::read_to_string(fold_file(&dir, fold, "key"))
            .is_ok_and(|k| k.trim() == key)
            && fold_file(&dir, fold, "csv").is_file();
        if wanted && (force || !cached) {
            pending.push(job.clone());
        }
        all.push(job);
    }
    if let Some(o) = only {
        if let Some(bad) = o.iter().find(|&&f| f == 0 || f > exp.cv.folds) {
            bail!(
                "{}: --fold {bad} is out of range, expected 1..={}",
                exp.name,
                exp.cv.folds
            );
        }
    }
    Ok((pending, all))
}

/// One `run` argument line per (experiment, fold) whose result is missing or stale:
/// `FILE [--experiment NAME] --fold K`, in experiment then fold order.
pub fn plan_lines(exps: &[Experiment], paths: &Paths) -> Result<Vec<String>> {
    let mut data = DataCache::default();
    let mut lines = Vec::new();
    for exp in exps {
        let (pending, _) = plan_experiment(exp, paths, &mut data, None, false)?;
        let stem = exp
            .source
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let variant = if exp.name == stem {
            String::new()
        } else {
            format!(" --experiment {}", exp.name)
        };
        for job in pending {
            lines.push(format!(
                "{}{variant} --fold {}",
                exp.source.display(),
                job.fold
            ));
        }
    }
    Ok(lines)
}

/// Result of one trained fold.
pub struct FoldOutcome {
    /// Its history rows.
    pub rows: Vec<HistoryRow>,
    /// Wall seconds of the whole fold.
    pub seconds: f64,
    /// Training samples per second (validation excluded).
    pub samples_per_sec: f64,
}

/// Trains one fold and writes its files atomically (rows, then key: a fold without a key is
/// not cached, so an interruption between the two only costs a re-run).
///
/// `threads` is asked at each epoch's start how many threads the matrix products may use
/// (results do not depend on it: the GEMM's arithmetic is the same for any thread count).
pub fn run_fold(
    job: &FoldJob,
    paths: &Paths,
    progress: &Progress,
    threads: &(dyn Fn() -> usize + Sync),
) -> Result<FoldOutcome> {
    let exp = &job.exp;
    let f0 = job.fold - 1;
    let train_idx = job.split.train(f0);
    let val_idx = &job.split.test[f0];
    let scaler = Scaler::fit(exp.data.scaling, &job.data, &train_idx);
    let mut net = Network::build(exp, &mut Rng::new(exp.train.seed, 1000 + job.fold as u64))?;
    let mut shuffle = Rng::new(exp.train.seed, 2000 + job.fold as u64);
    let mut task = progress.task(
        format!("{} fold {}/{}", exp.name, job.fold, exp.cv.folds),
        exp.train.epochs,
    );
    let mut train_secs = 0.0;
    let mut epoch_start = Instant::now();
    let mut rows = Vec::new();
    let history = train(
        &mut net,
        exp,
        &TrainData {
            ds: &job.data,
            scaler: &scaler,
            train: &train_idx,
            val: val_idx,
        },
        &mut shuffle,
        &mut |e| {
            match &e {
                crate::train::Event::EpochStart { .. } => {
                    gemm::set_threads(threads());
                    epoch_start = Instant::now();
                }
                crate::train::Event::Batch { done, .. }
                    if *done == train_idx.len().div_ceil(exp.train.batch_size) =>
                {
                    train_secs += epoch_start.elapsed().as_secs_f64();
                }
                _ => {}
            }
            task.event(e)
        },
    );
    for row in history {
        rows.push(HistoryRow {
            fold: job.fold,
            row,
        });
    }
    let seconds = task.elapsed().as_secs_f64();
    task.finish();
    let dir = paths.exp_dir(&exp.name);
    let samples_per_sec = (train_idx.len() * exp.train.epochs) as f64 / train_secs.max(1e-9);
    write_atomic(
        &fold_file(&dir, job.fold, "csv"),
        history_csv(&rows).as_bytes(),
    )?;
    write_atomic(
        &fold_file(&dir, job.fold, "timing.csv"),
        format!(
            "fold,seconds,train_samples_per_s\n{},{seconds:.1},{samples_per_sec:.0}\n",
            job.fold
        )
        .as_bytes(),
    )?;
    write_atomic(
        &fold_file(&dir, job.fold, "key"),
        format!("{}\n", job.key).as_bytes(),
    )?;
    Ok(FoldOutcome {
        rows,
        seconds,
        samples_per_sec,
    })
}

/// Merges the current (key-matching) per-fold files of an experiment into history.csv,
/// folds.csv and timing.csv; returns the fold scores.
pub fn merge(exp: &Experiment, all: &[FoldJob], paths: &Paths) -> Result<Vec<FoldRow>> {
    let dir = paths.exp_dir(&exp.name);
    let mut history = Vec::new();
    let mut folds = Vec::new();
    let mut timing = String::from("fold,seconds,train_samples_per_s\n");
    for job in all {
        let key_ok = std::fs::read_to_string(fold_file(&dir, job.fold, "key"))
            .is_ok_and(|k| k.trim() == job.key);
        if !key_ok {
            continue;
        }
        let rows = read_history(&fold_file(&dir, job.fold, "csv"))?;
        let last = rows
            .iter()
            .max_by_key(|r| r.row.epoch)
            .with_context(|| format!("{}: no rows", fold_file(&dir, job.fold, "csv").display()))?;
        folds.push(FoldRow {
            fold: job.fold,
            val_acc: last.row.val_acc,
            val_loss: last.row.val_loss,
            split: job.split.hash.clone(),
        });
        history.extend(rows);
        if let Ok(t) = std::fs::read_to_string(fold_file(&dir, job.fold, "timing.csv")) {
            timing.extend(t.lines().skip(1).map(|l| format!("{l}\n")));
        }
    }
    write_atomic(&dir.join("spec.toml"), exp.to_toml().as_bytes())?;
    write_atomic(&dir.join("history.csv"), history_csv(&history).as_bytes())?;
    write_atomic(&dir.join("folds.csv"), folds_csv(&folds).as_bytes())?;
    write_atomic(&dir.join("timing.csv"), timing.as_bytes())?;
    Ok(folds)
}

/// Runs `jobs` on `workers` threads (each with single-threaded matrix products, so a fold's
/// numbers never depend on the worker count). Returns the jobs that failed with their errors.
pub fn run_jobs(
    jobs: Vec<FoldJob>,
    workers: usize,
    paths: &Paths,
    progress: &Progress,
    planned: &[(&Experiment, Vec<FoldJob>)],
) -> Vec<(FoldJob, anyhow::Error)> {
    // An experiment's merged files are refreshed as each of its folds lands, so results (and
    // the report) are usable long before a long `run` of many experiments ends.
    let merging = Mutex::new(());
    let queue = Mutex::new(std::collections::VecDeque::from(jobs));
    let failures = Mutex::new(Vec::new());
    // Folds run one per worker on one thread each; once no fold is waiting, a worker's fold
    // takes the cores that idle workers left (checked each epoch).
    let workers = workers.max(1);
    let busy = std::sync::atomic::AtomicUsize::new(0);
    let threads = || {
        if queue.lock().expect("queue").is_empty() {
            let busy = busy.load(std::sync::atomic::Ordering::SeqCst).max(1);
            (workers / busy).max(1)
        } else {
            1
        }
    };
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                gemm::set_threads(1);
                loop {
                    let Some(job) = queue.lock().expect("queue").pop_front() else {
                        break;
                    };
                    busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let result = run_fold(&job, paths, progress, &threads);
                    busy.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    match result {
                        Ok(out) => {
                            if let Some((exp, all)) =
                                planned.iter().find(|(e, _)| e.name == job.exp.name)
                            {
                                let _guard = merging.lock().expect("merge lock");
                                if let Err(e) = merge(exp, all, paths) {
                                    failures.lock().expect("failures").push((job.clone(), e));
                                }
                            }
                            let last = out
                                .rows
                                .last()
                                .map(|r| r.row.val_acc * 100.0)
                                .unwrap_or(f64::NAN);
                            progress.println(&format!(
                                "> {last:.3}  ({} fold {}/{}, {:.0} s, {:.0} samples/s)",
                                job.exp.name,
                                job.fold,
                                job.exp.cv.folds,
                                out.seconds,
                                out.samples_per_sec
                            ));
                        }
                        Err(e) => failures.lock().expect("failures").push((job, e)),
                    }
                }
            });
        }
    });
    failures.into_inner().expect("failures")
}

/// Cross-validates every experiment: trains the folds that are not cached, then merges and
/// prints each experiment's score like the seed.
pub fn run(
    exps: &[Experiment],
    paths: &Paths,
    only: Option<&[usize]>,
    force: bool,
    workers: usize,
) -> Result<()> {
    let progress = Progress::new();
    let mut data = DataCache::default();
    let mut pending = Vec::new();
    let mut planned = Vec::new();
    for exp in exps {
        let (p, all) = plan_experiment(exp, paths, &mut data, only, force)?;
        let cached = all.len() - p.len();
        if cached > 0 && only.is_none() {
            progress.eprintln(&format!(
                "{}: {cached} of {} folds cached",
                exp.name,
                all.len()
            ));
        }
        pending.extend(p);
        planned.push((exp, all));
    }
    // Longest folds first (stable, so each experiment's folds keep their order): the last
    // fold standing is then a short one, not a deep model's that leaves a core idle for
    // minutes. Measured on the seed's three models with 2 workers: 907 s in file order.
    pending.sort_by(|a, b| fold_cost(b).total_cmp(&fold_cost(a)));
    let failures = run_jobs(pending, workers, paths, &progress, &planned);
    for (exp, all) in &planned {
        let folds = merge(exp, all, paths)?;
        let (mean, std) = fold_mean_std(&folds);
        progress.println(&format!(
            "Accuracy: mean={mean:.3} std={std:.3}, n={}  ({})",
            folds.len(),
            exp.name
        ));
    }
    if !failures.is_empty() {
        let lines: Vec<String> = failures
            .iter()
            .map(|(j, e)| format!("{} fold {}: {e:#}", j.exp.name, j.fold))
            .collect();
        bail!(
            "{} fold(s) failed:\n  {}",
            failures.len(),
            lines.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_a_seeded_partition_with_sklearn_sizes() {
        let s = FoldSplit::new(103, 5, 1);
        let sizes: Vec<usize> = s.test.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![21, 21, 21, 20, 20]);
        let mut all: Vec<usize> = s.test.concat();
        all.sort_unstable();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        for f in 0..5 {
            let train = s.train(f);
            assert_eq!(train.len() + s.test[f].len(), 103);
            assert!(train.iter().all(|i| s.test[f].binary_search(i).is_err()));
        }
        assert_eq!(s, FoldSplit::new(103, 5, 1));
        assert_ne!(s.hash, FoldSplit::new(103, 5, 2).hash);
        assert_ne!(s.hash, FoldSplit::new(103, 4, 1).hash);
    }

    #[test]
    fn mean_and_population_std_in_percent() {
        let f = |a| FoldRow {
            fold: 1,
            val_acc: a,
            val_loss: 0.0,
            split: String::new(),
        };
        let (m, s) = fold_mean_std(&[f(0.98), f(0.99)]);
        assert!((m - 98.5).abs() < 1e-9 && (s - 0.5).abs() < 1e-9);
    }
}
