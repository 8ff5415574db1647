//! A fold's result files under `results/<exp>/folds/` and whether they are current: rows first,
//! then the key (a fold without a matching key is not cached, so an interruption between the
//! two only costs a re-run).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::files::write_atomic;
use crate::results::csv::{history_csv, read_history, HistoryRow};

/// A per-fold file of an experiment: `folds/fold-K.<ext>`.
pub fn fold_file(dir: &Path, fold: usize, ext: &str) -> PathBuf {
    dir.join("folds").join(format!("fold-{fold}.{ext}"))
}

/// Whether fold `fold` of the experiment in `dir` has a result made under `key` (its key file
/// `fold-K.<key_ext>`).
fn is_current(dir: &Path, fold: usize, key: &str, key_ext: &str) -> bool {
    std::fs::read_to_string(fold_file(dir, fold, key_ext)).is_ok_and(|k| k.trim() == key)
}

/// What the cache holds for one fold.
#[derive(Debug)]
pub enum Cached {
    /// No result under this key (none yet, or one made by another spec, split, data or code).
    Missing,
    /// A result under this key whose rows are not a valid result (edited or damaged): a stale
    /// entry, to be trained again. The error says what is wrong and where.
    Invalid(anyhow::Error),
    /// The fold's rows, one per epoch, checked.
    Rows(Vec<HistoryRow>),
}

/// What the cache holds for fold `fold` (of `epochs` epochs) of the experiment in `dir` under
/// `key`: rows are trusted only if they are a result training could have written.
pub fn cached(dir: &Path, fold: usize, key: &str, epochs: usize) -> Cached {
    let path = fold_file(dir, fold, "csv");
    if !is_current(dir, fold, key, "key") || !path.is_file() {
        return Cached::Missing;
    }
    match read_history(&path).and_then(|rows| check_rows(&path, fold, epochs, rows)) {
        Ok(rows) => Cached::Rows(rows),
        Err(e) => Cached::Invalid(e),
    }
}

/// Whether fold `fold` has a valid result under `key` (see [`cached`]).
pub fn is_cached(dir: &Path, fold: usize, key: &str, epochs: usize) -> bool {
    matches!(cached(dir, fold, key, epochs), Cached::Rows(_))
}

/// The rows fold `fold` (of `epochs` epochs) of the experiment in `dir` has trained under
/// `key` so far: all of them when the fold is done, else those of a partial run a search
/// paused (`fold-K.partial.csv`, a prefix of the full run), else none. Rows that are not a
/// valid result count as none (the fold is trained again).
pub fn trained_rows(dir: &Path, fold: usize, key: &str, epochs: usize) -> Vec<HistoryRow> {
    if let Cached::Rows(rows) = cached(dir, fold, key, epochs) {
        return rows;
    }
    let path = fold_file(dir, fold, "partial.csv");
    if !is_current(dir, fold, key, "partial.key") || !path.is_file() {
        return Vec::new();
    }
    let partial = read_history(&path).and_then(|rows| {
        let n = rows.len();
        if n == 0 || n >= epochs {
            bail!("{}: {n} rows, expected 1..{epochs}", path.display());
        }
        check_rows(&path, fold, n, rows)
    });
    match partial {
        Ok(rows) => rows,
        Err(e) => {
            crate::output::eprintln(&format!(
                "warning: {e:#}: not a valid partial result; the fold is trained again"
            ));
            Vec::new()
        }
    }
}

/// Writes the rows of a fold a search paused before its last epoch (rows, then key), each
/// atomically; its checkpoint goes on from there.
pub fn write_partial(dir: &Path, fold: usize, rows: &[HistoryRow], key: &str) -> Result<()> {
    write_atomic(
        &fold_file(dir, fold, "partial.csv"),
        history_csv(rows).as_bytes(),
    )?;
    write_atomic(
        &fold_file(dir, fold, "partial.key"),
        format!("{key}\n").as_bytes(),
    )
}

/// Removes a fold's partial result (once the whole fold is written).
pub fn remove_partial(dir: &Path, fold: usize) -> Result<()> {
    for ext in ["partial.csv", "partial.key"] {
        crate::files::remove_if_present(&fold_file(dir, fold, ext))?;
    }
    Ok(())
}

/// Checks a fold file's rows: one per epoch in order, labelled with this fold, accuracies in
/// [0, 1], losses finite and not negative, learning rates finite.
fn check_rows(
    path: &Path,
    fold: usize,
    epochs: usize,
    rows: Vec<HistoryRow>,
) -> Result<Vec<HistoryRow>> {
    let shown = path.display();
    if rows.len() != epochs {
        bail!(
            "{shown}: {} rows, expected one per epoch ({epochs})",
            rows.len()
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let line = i + 2;
        if r.fold != fold {
            bail!("{shown}:{line}: fold is {}, expected {fold}", r.fold);
        }
        if r.row.epoch != i + 1 {
            bail!(
                "{shown}:{line}: epoch is {}, expected {}",
                r.row.epoch,
                i + 1
            );
        }
        let e = &r.row;
        for (name, v) in [("train_acc", e.train_acc), ("val_acc", e.val_acc)] {
            if !(0.0..=1.0).contains(&v) {
                bail!("{shown}:{line}: {name} is {v}, expected a fraction in [0, 1]");
            }
        }
        for (name, v) in [("train_loss", e.train_loss), ("val_loss", e.val_loss)] {
            if !(v.is_finite() && v >= 0.0) {
                bail!("{shown}:{line}: {name} is {v}, expected a finite number >= 0");
            }
        }
        if let Some(lr) = e.lr.filter(|lr| !(lr.is_finite() && *lr >= 0.0)) {
            bail!("{shown}:{line}: lr is {lr}, expected a finite number >= 0");
        }
    }
    Ok(rows)
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
