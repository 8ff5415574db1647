//! A fold's result files under `results/<exp>/folds/` and whether they are current: rows first,
//! then the key (a fold without a matching key is not cached, so an interruption between the
//! two only costs a re-run).

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::files::write_atomic;
use crate::results::csv::{history_csv, HistoryRow};

/// A per-fold file of an experiment: `folds/fold-K.<ext>`.
pub fn fold_file(dir: &Path, fold: usize, ext: &str) -> PathBuf {
    dir.join("folds").join(format!("fold-{fold}.{ext}"))
}

/// Whether fold `fold` of the experiment in `dir` has a result made under `key`.
pub fn is_current(dir: &Path, fold: usize, key: &str) -> bool {
    std::fs::read_to_string(fold_file(dir, fold, "key")).is_ok_and(|k| k.trim() == key)
}

/// Whether fold `fold` has a result under `key` and its rows are there.
pub fn is_cached(dir: &Path, fold: usize, key: &str) -> bool {
    is_current(dir, fold, key) && fold_file(dir, fold, "csv").is_file()
}

/// Writes a trained fold's files, each atomically: its rows, its timing, then its key.
pub fn write_fold(
    dir: &Path,
    fold: usize,
    rows: &[HistoryRow],
    seconds: f64,
    samples_per_sec: f64,
    key: &str,
) -> Result<()> {
    write_atomic(&fold_file(dir, fold, "csv"), history_csv(rows).as_bytes())?;
    write_atomic(
        &fold_file(dir, fold, "timing.csv"),
        format!("fold,seconds,train_samples_per_s\n{fold},{seconds:.1},{samples_per_sec:.0}\n")
            .as_bytes(),
    )?;
    write_atomic(&fold_file(dir, fold, "key"), format!("{key}\n").as_bytes())
}
