//! The CSV files under results/: stable column order, sorted rows, fixed precision.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::train::EpochRow;

/// Header of history.csv and of each per-fold file.
pub const HISTORY_HEADER: &str = "fold,epoch,train_loss,train_acc,val_loss,val_acc";
/// The column history files gain when a schedule varies the learning rate.
pub const LR_COLUMN: &str = ",lr";
/// Header of folds.csv.
pub const FOLDS_HEADER: &str = "fold,val_acc,val_loss,split";

/// A row of history.csv.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryRow {
    /// 1-based fold.
    pub fold: usize,
    /// The epoch's numbers.
    pub row: EpochRow,
}

/// A row of folds.csv: the fold's score after its last epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldRow {
    /// 1-based fold.
    pub fold: usize,
    /// Validation accuracy (fraction).
    pub val_acc: f64,
    /// Validation loss.
    pub val_loss: f64,
    /// Hash of the fold split the score was measured on.
    pub split: String,
}

fn num(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else {
        format!("{v:.6}")
    }
}

/// Renders history rows (sorted by fold, epoch), with an `lr` column when the rows have
/// learning rates (a schedule varied it).
pub fn history_csv(rows: &[HistoryRow]) -> String {
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| (r.fold, r.row.epoch));
    let with_lr = rows.iter().any(|r| r.row.lr.is_some());
    let mut s = HISTORY_HEADER.to_string();
    if with_lr {
        s += LR_COLUMN;
    }
    s.push('\n');
    for r in rows {
        let e = r.row;
        let _ = write!(
            s,
            "{},{},{},{},{},{}",
            r.fold,
            e.epoch,
            num(e.train_loss),
            num(e.train_acc),
            num(e.val_loss),
            num(e.val_acc)
        );
        if with_lr {
            // The shortest decimal that reads back as the same f32.
            let _ = write!(s, ",{}", e.lr.map_or(String::new(), |v| v.to_string()));
        }
        s.push('\n');
    }
    s
}

/// Renders fold scores (sorted by fold).
pub fn folds_csv(rows: &[FoldRow]) -> String {
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| r.fold);
    let mut s = format!("{FOLDS_HEADER}\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{}",
            r.fold,
            num(r.val_acc),
            num(r.val_loss),
            r.split
        );
    }
    s
}

fn parse_f64(field: &str, path: &Path, line: u64, col: &str) -> Result<f64> {
    if field.is_empty() {
        return Ok(f64::NAN);
    }
    field.parse().map_err(|_| {
        anyhow::anyhow!(
            "{}:{line}: column {col} is {field:?}, expected a number",
            path.display()
        )
    })
}

fn parse_usize(field: &str, path: &Path, line: u64, col: &str) -> Result<usize> {
    field.parse().map_err(|_| {
        anyhow::anyhow!(
            "{}:{line}: column {col} is {field:?}, expected a whole number",
            path.display()
        )
    })
}

fn records(text: &str, path: &Path, header: &str) -> Result<Vec<(u64, Vec<String>)>> {
    records_any(text, path, &[header])
}

/// [`records`] for a file that may have any of `headers`.
fn records_any(text: &str, path: &Path, headers: &[&str]) -> Result<Vec<(u64, Vec<String>)>> {
    let header = headers[0];
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let got: Vec<String> = rd
        .headers()
        .with_context(|| format!("{}: cannot read the header", path.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    if !headers.contains(&got.join(",").as_str()) {
        bail!(
            "{}:1: header is {:?}, expected {header:?}",
            path.display(),
            got.join(",")
        );
    }
    let mut out = Vec::new();
    for (i, rec) in rd.records().enumerate() {
        let line = i as u64 + 2;
        let rec = rec.with_context(|| format!("{}:{line}: malformed CSV row", path.display()))?;
        out.push((line, rec.iter().map(str::to_string).collect()));
    }
    Ok(out)
}

/// Parses history.csv text (`path` names it in errors).
pub fn parse_history(text: &str, path: &Path) -> Result<Vec<HistoryRow>> {
    let with_lr = format!("{HISTORY_HEADER}{LR_COLUMN}");
    records_any(text, path, &[HISTORY_HEADER, &with_lr])?
        .into_iter()
        .map(|(line, f)| {
            Ok(HistoryRow {
                fold: parse_usize(&f[0], path, line, "fold")?,
                row: EpochRow {
                    epoch: parse_usize(&f[1], path, line, "epoch")?,
                    train_loss: parse_f64(&f[2], path, line, "train_loss")?,
                    train_acc: parse_f64(&f[3], path, line, "train_acc")?,
                    val_loss: parse_f64(&f[4], path, line, "val_loss")?,
                    val_acc: parse_f64(&f[5], path, line, "val_acc")?,
                    lr: match f.get(6) {
                        Some(v) if !v.is_empty() => Some(v.parse::<f32>().map_err(|_| {
                            anyhow::anyhow!(
                                "{}:{line}: column lr is {v:?}, expected a number",
                                path.display()
                            )
                        })?),
                        _ => None,
                    },
                },
            })
        })
        .collect()
}

/// Parses folds.csv text (`path` names it in errors).
pub fn parse_folds(text: &str, path: &Path) -> Result<Vec<FoldRow>> {
    records(text, path, FOLDS_HEADER)?
        .into_iter()
        .map(|(line, f)| {
            let val_acc = parse_f64(&f[1], path, line, "val_acc")?;
            if !(0.0..=1.0).contains(&val_acc) {
                bail!(
                    "{}:{line}: val_acc is {}, expected a fraction in [0, 1]",
                    path.display(),
                    f[1]
                );
            }
            Ok(FoldRow {
                fold: parse_usize(&f[0], path, line, "fold")?,
                val_acc,
                val_loss: parse_f64(&f[2], path, line, "val_loss")?,
                split: f[3].clone(),
            })
        })
        .collect()
}

/// Reads and parses a history file.
pub fn read_history(path: &Path) -> Result<Vec<HistoryRow>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_history(&text, path)
}

/// Reads and parses a folds file.
pub fn read_folds(path: &Path) -> Result<Vec<FoldRow>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_folds(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fold: usize, epoch: usize) -> HistoryRow {
        HistoryRow {
            fold,
            row: EpochRow {
                epoch,
                train_loss: 0.5,
                train_acc: 0.9,
                val_loss: 0.25,
                val_acc: 1.0 / 3.0,
                lr: None,
            },
        }
    }

    #[test]
    fn history_is_sorted_fixed_precision_and_round_trips() {
        let s = history_csv(&[row(2, 1), row(1, 2), row(1, 1)]);
        assert_eq!(
            s,
            "fold,epoch,train_loss,train_acc,val_loss,val_acc\n\
             1,1,0.500000,0.900000,0.250000,0.333333\n\
             1,2,0.500000,0.900000,0.250000,0.333333\n\
             2,1,0.500000,0.900000,0.250000,0.333333\n"
        );
        let back = parse_history(&s, Path::new("h.csv")).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[2].fold, 2);
    }

    #[test]
    fn bad_files_name_the_line_and_column() {
        let e = parse_folds(
            "fold,val_acc,val_loss,split\n1,abc,0.1,x\n",
            Path::new("f.csv"),
        )
        .unwrap_err();
        assert_eq!(
            format!("{e}"),
            "f.csv:2: column val_acc is \"abc\", expected a number"
        );
        let e = parse_folds("fold,acc\n", Path::new("f.csv")).unwrap_err();
        assert!(format!("{e}").contains("f.csv:1: header"));
        let e =
            parse_folds("fold,val_acc,val_loss,split\n1,0.9\n", Path::new("f.csv")).unwrap_err();
        assert!(format!("{e:#}").contains("f.csv:2: malformed"), "{e:#}");
        let e = parse_folds(
            "fold,val_acc,val_loss,split\n1,1.5,0.1,x\n",
            Path::new("f.csv"),
        )
        .unwrap_err();
        assert!(format!("{e}").contains("expected a fraction"));
    }
}
