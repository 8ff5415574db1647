//! Merging an experiment's current per-fold files into history.csv, folds.csv and timing.csv.

use anyhow::Result;

use super::cache::{cached, fold_file, Cached};
use super::lock::{merge_lock, FileLock};
use super::plan::FoldJob;
use crate::experiment::Experiment;
use crate::files::{write_atomic, Paths};
use crate::results::csv::{folds_csv, history_csv, FoldRow};

/// Merges the current (key-matching) per-fold files of an experiment into history.csv,
/// folds.csv and timing.csv (none written when no fold is current); returns the fold scores.
pub fn merge(exp: &Experiment, all: &[FoldJob], paths: &Paths) -> Result<Vec<FoldRow>> {
    let dir = paths.exp_dir(&exp.name);
    // Another process running this experiment may merge too: one at a time, each reading the
    // fold files as they are when it holds the lock, so the last merge has every finished fold.
    let _lock = FileLock::acquire(&merge_lock(&dir))?;
    let mut history = Vec::new();
    let mut folds = Vec::new();
    let mut timing = String::from("fold,seconds,train_samples_per_s\n");
    for job in all {
        let rows = match cached(&dir, job.fold, &job.key, exp.train.epochs) {
            Cached::Rows(rows) => rows,
            Cached::Missing => continue,
            Cached::Invalid(e) => {
                crate::output::eprintln(&format!(
                    "warning: {e:#}: not a valid result; {} fold {} is left out of its merged files until it is trained again",
                    exp.name, job.fold
                ));
                continue;
            }
        };
        let last = rows.last().expect("a checked fold has a row per epoch");
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
    if folds.is_empty() {
        // Nothing finished under this spec (every fold failed): the merged files of an earlier
        // run, with their own spec.toml, are left as they are rather than emptied.
        return Ok(folds);
    }
    write_atomic(&dir.join("spec.toml"), exp.to_toml().as_bytes())?;
    write_atomic(&dir.join("history.csv"), history_csv(&history).as_bytes())?;
    write_atomic(&dir.join("folds.csv"), folds_csv(&folds).as_bytes())?;
    write_atomic(&dir.join("timing.csv"), timing.as_bytes())?;
    Ok(folds)
}
