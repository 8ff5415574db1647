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
pub mod search;
pub mod search_run;
pub mod split;

use anyhow::{bail, Result};

use crate::experiment::Experiment;
use crate::files::Paths;
use crate::progress::Progress;
use crate::results::csv::FoldRow;
use crate::results::stats::fold_mean_std;
use merge::merge;
use plan::{plan_experiment, DataCache};
use schedule::{longest_first, run_jobs};
use search::Status;
use search_run::SearchRun;

/// Cross-validates every experiment: trains the folds that are not cached (of the folds `only`
/// and the experiment `only_exp` when given), then merges and prints each experiment's score
/// like the seed. A search's variants train as its pruning decides, rung by rung or fold by
/// fold, until it is decided; its survivors are merged like experiments.
pub fn run(
    exps: &[Experiment],
    paths: &Paths,
    only: Option<&[usize]>,
    only_exp: Option<&str>,
    force: bool,
    workers: usize,
) -> Result<()> {
    let progress = Progress::new();
    let mut data = DataCache::default();
    if force {
        if let Some(s) = exps.iter().find_map(|e| e.search.as_ref()) {
            bail!(
                "--force does not apply to a search ({}): its decisions come from the results on disk; remove its variants' folders under {} to train it again",
                s.name,
                paths.results.display()
            );
        }
    }
    let searches = SearchRun::plan_all(exps, paths, &mut data)?;
    let plain: Vec<&Experiment> = exps
        .iter()
        .filter(|e| e.search.is_none() && only_exp.is_none_or(|n| n == e.name))
        .collect();
    let mut pending = Vec::new();
    let mut planned = Vec::new();
    for exp in plain {
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
    // A search goes on rung after rung only when this run has all of it (a plan line runs one
    // job, the rest being elsewhere).
    let whole = only.is_none() && only_exp.is_none();
    for s in &searches {
        pending.extend(s.runnable(paths, only, only_exp));
    }
    // Before any training: every results folder a fold will be written to takes files.
    let mut probed = std::collections::BTreeSet::new();
    for job in &pending {
        if probed.insert(job.exp.name.clone()) {
            crate::files::probe_writable(&paths.exp_dir(&job.exp.name))?;
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
    let mut failures = Vec::new();
    while !pending.is_empty() {
        longest_first(&mut pending);
        let round = progress
            .clone()
            .with_overall(pending.len(), pending.iter().map(|j| j.cost).sum());
        failures.extend(run_jobs(pending, workers, paths, &round, &planned, force));
        round.finish();
        pending = Vec::new();
        if failures.is_empty() && whole {
            for s in &searches {
                let next = s.runnable(paths, None, None);
                for job in &next {
                    if probed.insert(job.exp.name.clone()) {
                        crate::files::probe_writable(&paths.exp_dir(&job.exp.name))?;
                    }
                }
                pending.extend(next);
            }
        }
    }
    for s in &searches {
        let st = s.record(paths)?;
        let survivors: Vec<&str> = st
            .variants
            .iter()
            .filter(|v| v.status == Status::Survivor)
            .map(|v| v.name.as_str())
            .collect();
        let left = st.runnable.len();
        progress.println(&format!(
            "Search {}: {} variants, {} survivor{}{}",
            s.group.name,
            st.variants.len(),
            survivors.len(),
            if survivors.len() == 1 { "" } else { "s" },
            if left > 0 {
                format!(" so far ({left} jobs runnable now)")
            } else {
                String::new()
            }
        ));
        for name in survivors {
            let exp = &s.jobs[name][0].exp;
            let folds = merge(exp, &s.jobs[name], paths)?;
            print_accuracy(&progress, &folds, name);
        }
    }
    for (exp, all) in &planned {
        let folds = merge(exp, all, paths)?;
        print_accuracy(&progress, &folds, &exp.name);
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

/// Prints an experiment's score as the seed does.
fn print_accuracy(progress: &Progress, folds: &[FoldRow], name: &str) {
    if folds.is_empty() {
        progress.println(&format!("Accuracy: no finished folds  ({name})"));
        return;
    }
    let (mean, std) = fold_mean_std(folds);
    progress.println(&format!(
        "Accuracy: mean={mean:.3} std={std:.3}, n={}  ({name})",
        folds.len()
    ));
}
