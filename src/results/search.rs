//! A search's result files under `results/<search>/`: `search.toml` (its settings and the
//! compute it used against the unpruned search, in fold-epochs) and `search.csv` (one row per
//! variant: its values, how far it trained, its validation accuracy at each rung, what it came
//! to), written by `run` as it decides; read by the report, which draws `search.png` from the
//! variants' own fold files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// `search.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchInfo {
    /// The search's name (its file's stem).
    pub name: String,
    /// Variants.
    pub variants: usize,
    /// Epochs of a full run.
    pub epochs: usize,
    /// Folds of a full cross-validation.
    pub folds: usize,
    /// The rungs' epochs (empty without halving).
    pub rungs: Vec<usize>,
    /// The folds the rungs train (fold 1 without halving: the race's first).
    pub rung_folds: Vec<usize>,
    /// How halving was declared ("min_epochs 2, eta 3, folds [1]"), if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halving: Option<String>,
    /// How the race was declared ("after 2, alpha 0.05"), if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub race: Option<String>,
    /// Fold-epochs trained.
    pub fold_epochs: usize,
    /// Fold-epochs of the same search unpruned: variants × folds × epochs.
    pub unpruned_fold_epochs: usize,
    /// Whether every decision is taken and every survivor cross-validated.
    pub done: bool,
    /// The space, by key.
    pub space: BTreeMap<String, String>,
}

/// A row of `search.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRow {
    /// The variant's name.
    pub variant: String,
    /// Its values, `key=value` by the last part of each key.
    pub values: String,
    /// The most epochs it trained on a fold.
    pub epochs: usize,
    /// Folds trained in full.
    pub folds_done: usize,
    /// Fold-epochs trained.
    pub fold_epochs: usize,
    /// Validation accuracy (fraction) at each rung it reached.
    pub rung_acc: Vec<f64>,
    /// What it came to ("survivor", "stopped at rung 1 (2 epochs)", …).
    pub status: String,
}

/// Header of `search.csv`.
pub const HEADER: &str = "variant,values,epochs,folds_done,fold_epochs,rung_acc,status";

/// `search.csv`'s text, rows in the order given (variants in name order).
pub fn search_csv(rows: &[SearchRow]) -> String {
    let field = |t: &str| {
        if t.contains([',', '"']) {
            format!("\"{}\"", t.replace('"', "\"\""))
        } else {
            t.to_string()
        }
    };
    let mut s = format!("{HEADER}\n");
    for r in rows {
        let accs: Vec<String> = r.rung_acc.iter().map(|a| format!("{a:.6}")).collect();
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{}",
            r.variant,
            field(&r.values),
            r.epochs,
            r.folds_done,
            r.fold_epochs,
            accs.join(" "),
            field(&r.status)
        );
    }
    s
}

/// Reads `search.toml` and `search.csv` of the search in `dir`.
pub fn read_search(dir: &Path) -> Result<(SearchInfo, Vec<SearchRow>)> {
    let info_path = dir.join("search.toml");
    let text = std::fs::read_to_string(&info_path)
        .with_context(|| format!("cannot read {}", info_path.display()))?;
    let info: SearchInfo =
        toml::from_str(&text).with_context(|| format!("{}: corrupt", info_path.display()))?;
    let csv_path = dir.join("search.csv");
    let text = std::fs::read_to_string(&csv_path)
        .with_context(|| format!("cannot read {}", csv_path.display()))?;
    let mut rd = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header: Vec<String> = rd
        .headers()
        .with_context(|| format!("{}: no header", csv_path.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    if header.join(",") != HEADER {
        anyhow::bail!(
            "{}:1: header is {:?}, expected {HEADER:?}",
            csv_path.display(),
            header.join(",")
        );
    }
    let mut rows = Vec::new();
    for (i, rec) in rd.records().enumerate() {
        let line = i + 2;
        let bad = || format!("{}:{line}: malformed row", csv_path.display());
        let rec = rec.with_context(bad)?;
        let num = |k: usize| -> Result<usize> { rec[k].parse().with_context(bad) };
        let rung_acc = rec[5]
            .split_whitespace()
            .map(|a| a.parse::<f64>().with_context(bad))
            .collect::<Result<_>>()?;
        rows.push(SearchRow {
            variant: rec[0].to_string(),
            values: rec[1].to_string(),
            epochs: num(2)?,
            folds_done: num(3)?,
            fold_epochs: num(4)?,
            rung_acc,
            status: rec[6].to_string(),
        });
    }
    Ok((info, rows))
}

/// The search's winner: of its survivors, the one with the best mean fold accuracy
/// (`mean_of`; ties broken by name); none before a survivor is cross-validated.
pub fn winner(rows: &[SearchRow], mean_of: impl Fn(&str) -> Option<f64>) -> Option<&str> {
    rows.iter()
        .filter(|r| r.status == "survivor")
        .filter_map(|r| Some((mean_of(&r.variant)?, r.variant.as_str())))
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, name)| name)
}

/// The winner of the search `name` under `results`, from its table and its survivors'
/// `folds.csv`; none when the search has no table or no cross-validated survivor yet.
pub fn winner_on_disk(results: &Path, name: &str) -> Result<Option<String>> {
    let dir = results.join(name);
    if !dir.join("search.toml").is_file() {
        return Ok(None);
    }
    let (_, rows) = read_search(&dir)?;
    let mean_of = |v: &str| {
        let folds = crate::results::csv::read_folds(&results.join(v).join("folds.csv")).ok()?;
        (!folds.is_empty())
            .then(|| folds.iter().map(|f| f.val_acc).sum::<f64>() / folds.len() as f64)
    };
    Ok(winner(&rows, mean_of).map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_rows_round_trip_through_their_csv() {
        let rows = vec![
            SearchRow {
                variant: "s-lr=0.001".into(),
                values: "lr=0.001".into(),
                epochs: 2,
                folds_done: 0,
                fold_epochs: 2,
                rung_acc: vec![0.5],
                status: "stopped at rung 1 (2 epochs)".into(),
            },
            SearchRow {
                variant: "s-lr=0.01".into(),
                values: "lr=0.01".into(),
                epochs: 12,
                folds_done: 5,
                fold_epochs: 60,
                rung_acc: vec![0.6, 0.7, 0.9],
                status: "raced out after fold 3 (p = 0.010)".into(),
            },
        ];
        let dir = std::env::temp_dir().join(format!("search-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("search.csv"), search_csv(&rows)).unwrap();
        let info = SearchInfo {
            name: "s".into(),
            variants: 2,
            epochs: 12,
            folds: 5,
            rungs: vec![2, 6, 12],
            rung_folds: vec![1],
            halving: Some("min_epochs 2, eta 3, folds [1]".into()),
            race: None,
            fold_epochs: 62,
            unpruned_fold_epochs: 120,
            done: true,
            space: BTreeMap::from([("train.learning_rate".into(), "one of [0.001, 0.01]".into())]),
        };
        std::fs::write(dir.join("search.toml"), toml::to_string(&info).unwrap()).unwrap();
        let (back_info, back) = read_search(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(back, rows);
        assert_eq!(back_info, info);
    }
}
