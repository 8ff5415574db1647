//! k-fold cross-validation: the seeded split (`split`), which folds need training (`plan`),
//! their result files (`cache`), training one fold (`fold`), running folds on worker threads
//! (`schedule`), locks between processes (`lock`) and merging per-fold files into
//! history.csv / folds.csv (`merge`).

pub mod cache;
pub mod fold;
pub mod lock;
pub mod merge;
pub mod plan;
pub mod schedule;
pub mod split;

use anyhow::{bail, Result};

use crate::experiment::Experiment;
use crate::files::Paths;
use crate::progress::Progress;
use crate::results::stats::fold_mean_std;
use merge::merge;
use plan::{plan_experiment, DataCache};
use schedule::{longest_first, run_jobs};

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
    // Before any training: every results folder a fold will be written to takes files.
    for exp in exps {
        if pending.iter().any(|j| j.exp.name == exp.name) {
            crate::files::probe_writable(&paths.exp_dir(&exp.name))?;
        }
    }
    if !pending.is_empty() && pending.len() < workers {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if workers > cores {
            let n = pending.len();
            progress.eprintln(&format!(
                "note: --jobs {workers}: {n} fold{s} to train, so {n} worker{s}",
                s = if n == 1 { "" } else { "s" }
            ));
        }
    }
    longest_first(&mut pending);
    let progress = progress.with_overall(pending.len(), pending.iter().map(|j| j.cost).sum());
    let failures = run_jobs(pending, workers, paths, &progress, &planned, force);
    progress.finish();
    for (exp, all) in &planned {
        let folds = merge(exp, all, paths)?;
        if folds.is_empty() {
            progress.println(&format!("Accuracy: no finished folds  ({})", exp.name));
            continue;
        }
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
