//! Planning: the (experiment, fold) jobs of a run, which of them are already cached, and the
//! plan lines that spread them over processes or machines.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::cache::{cached, Cached};
use super::split::FoldSplit;
use crate::data::{dataset, Dataset, Split};
use crate::experiment::Experiment;
use crate::files::Paths;
use crate::key::key;
use crate::model::LayerSummary;
use crate::rng::Run;

/// Loads training datasets once each.
#[derive(Default)]
pub struct DataCache {
    sets: BTreeMap<String, Arc<Dataset>>,
}

impl DataCache {
    /// The training split of dataset `name` under `paths.data`.
    pub fn train(&mut self, paths: &Paths, name: &str) -> Result<Arc<Dataset>> {
        if let Some(d) = self.sets.get(name) {
            return Ok(d.clone());
        }
        let d = Arc::new(dataset::load(&paths.dataset_dir(name), name, Split::Train)?);
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
    /// Relative training cost: work per image (see `LayerSpec::cost`) × images × epochs.
    pub cost: f64,
    /// The epoch to train up to: all of them, or a search's rung.
    pub until: usize,
    /// What the progress display adds to the fold's label (a search's rung).
    pub note: String,
}

/// What `run` checks of an experiment before it trains anything (and `check` with it): its
/// training data loads (with every check of [`dataset::load`]), its network fits the data's
/// images and classes and the limits, and the images it uses are enough for its folds.
/// Returns the data, the network's layers and the number of images used.
pub fn check_experiment(
    exp: &Experiment,
    paths: &Paths,
    data: &mut DataCache,
) -> Result<(Arc<Dataset>, Vec<LayerSummary>, usize)> {
    let ds = data.train(paths, &exp.data.dataset)?;
    let network = exp.network(&ds.info)?;
    let n = exp.images_used(ds.len());
    if n < exp.cv.folds {
        bail!(
            "{}: only {n} training images for cv.folds = {} (expected at least one image per fold)",
            exp.name,
            exp.cv.folds
        );
    }
    Ok((ds, network, n))
}

/// Relative cost of training `exp`'s `network` on `n` images: work per image (see
/// `LayerSpec::cost`) × images × epochs. Orders jobs (folds, final models) longest first.
pub fn training_cost(exp: &Experiment, network: &[LayerSummary], n: usize) -> f64 {
    network.iter().map(|l| l.cost).sum::<f64>() * n as f64 * exp.train.epochs as f64
}

/// Prepares the jobs of `exp`: checks its network against the data and lists folds (all, or
/// `only`) whose cached result is missing or stale (all of them with `force`). Returns
/// (pending, all) jobs.
pub fn plan_experiment(
    exp: &Experiment,
    paths: &Paths,
    data: &mut DataCache,
    only: Option<&[usize]>,
    force: bool,
) -> Result<(Vec<FoldJob>, Vec<FoldJob>)> {
    let (ds, network, n) = check_experiment(exp, paths, data)?;
    if let Some(bad) = only
        .into_iter()
        .flatten()
        .find(|&&f| f == 0 || f > exp.cv.folds)
    {
        bail!(
            "{}: --fold {bad} is out of range, expected 1..={}",
            exp.name,
            exp.cv.folds
        );
    }
    let split = Arc::new(FoldSplit::new(n, exp.cv.folds, exp.cv.seed));
    let exp = Arc::new(exp.clone());
    let dir = paths.exp_dir(&exp.name);
    let mut all = Vec::new();
    let mut pending = Vec::new();
    for fold in 1..=exp.cv.folds {
        let key = key(&exp, &network, Run::Fold(fold), &split.hash, &ds.sha256);
        let job = FoldJob {
            exp: exp.clone(),
            fold,
            data: ds.clone(),
            split: split.clone(),
            cost: training_cost(&exp, &network, n),
            key,
            until: exp.train.epochs,
            note: String::new(),
        };
        let wanted = only.is_none_or(|o| o.contains(&fold));
        let current = || match cached(&dir, fold, &job.key, exp.train.epochs) {
            Cached::Rows(_) => true,
            Cached::Missing => false,
            Cached::Invalid(e) => {
                crate::output::eprintln(&format!(
                    "warning: {e:#}: not a valid result, so the cache entry is stale; {} fold {fold} is trained again",
                    exp.name
                ));
                false
            }
        };
        if wanted && (force || !current()) {
            pending.push(job.clone());
        }
        all.push(job);
    }
    Ok((pending, all))
}

/// One `run` argument line per (experiment, fold) whose result is missing or stale:
/// `FILE [--experiment NAME] --fold K`, in experiment then fold order.
pub fn plan_lines(exps: &[Experiment], paths: &Paths) -> Result<Vec<String>> {
    let mut data = DataCache::default();
    let mut lines = Vec::new();
    // A search lists the jobs of its current rung (or race fold): the next ones depend on them.
    let searches = super::search_run::SearchRun::plan_all(exps, paths, &mut data)?;
    let mut runnable: std::collections::BTreeMap<String, Vec<FoldJob>> = Default::default();
    for s in &searches {
        for job in s.runnable(paths, None, None) {
            runnable.entry(job.exp.name.clone()).or_default().push(job);
        }
    }
    for exp in exps {
        let pending = match exp.search {
            Some(_) => runnable.remove(&exp.name).unwrap_or_default(),
            None => plan_experiment(exp, paths, &mut data, None, false)?.0,
        };
        let stem = exp
            .source
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let variant = if exp.name == stem {
            String::new()
        } else {
            format!(" --experiment {}", quote(&exp.name))
        };
        let file = exp.source.to_string_lossy();
        if !pending.is_empty() && file.contains(['\n', '\r']) {
            bail!(
                "{file:?}: a path with a line break cannot be written into a plan (one job per line); rename it"
            );
        }
        for job in pending {
            lines.push(format!("{}{variant} --fold {}", quote(&file), job.fold));
        }
    }
    Ok(lines)
}

/// `arg` as one word of a plan line: as it is when it is plain, else in single quotes the way a
/// POSIX shell reads them (so a line also works pasted after `mnist-lab run`).
pub fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// Splits a plan line into words as a POSIX shell would (quotes and backslashes; no expansion
/// of any kind), with the `shlex` crate.
pub fn split_words(line: &str) -> Result<Vec<String>> {
    shlex::split(line)
        .context("cannot split the line into words: a quote is not closed or a backslash ends it")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_words_split_back_to_themselves() {
        for arg in [
            "experiments/a.toml",
            "my experiments/a b.toml",
            "it's.toml",
            "sw-learning_rate=0.05",
            "tab\there",
            "\"dq\" and \\ back",
            "",
        ] {
            let line = format!("{} --fold 1", quote(arg));
            assert_eq!(
                split_words(&line).unwrap(),
                vec![arg.to_string(), "--fold".into(), "1".into()],
                "{line}"
            );
        }
        assert_eq!(quote("experiments/a.toml"), "experiments/a.toml");
        assert_eq!(
            split_words(r#"  "a b"\ c 'd'"e"  "#).unwrap(),
            vec!["a b c", "de"]
        );
        assert!(split_words("'open").is_err());
    }
}
