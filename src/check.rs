//! `mnist-lab check`: validates experiment files and prints each network's layers, output
//! shapes and parameter counts, checked against its dataset's image shape and classes.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::cv::plan::{check_experiment, DataCache};
use crate::cv::search::{rungs, worst_fold_epochs};
use crate::data::dataset;
use crate::experiment::search::SearchGroup;
use crate::experiment::{self, Experiment};
use crate::files::Paths;

/// The `check` table of one experiment (or the error that makes it invalid): whatever `run`
/// would refuse before training is refused here too (its training data is loaded and checked,
/// once per dataset, through `data`).
pub fn describe(exp: &Experiment, paths: &Paths, data: &mut DataCache) -> Result<String> {
    let name = &exp.data.dataset;
    let info = dataset::info(&paths.dataset_dir(name), name).map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot check its network without dataset {name:?}'s image shape: {e:#}",
            exp.source.display()
        )
    })?;
    let rows = exp.network(&info)?;
    // `run` needs the files themselves: say now, not after the first experiments trained.
    dataset::check_present(&paths.dataset_dir(name), name, &info)
        .map_err(|e| anyhow::anyhow!("{}: dataset {name:?}: {e:#}", exp.source.display()))?;
    check_experiment(exp, paths, data)
        .map_err(|e| anyhow::anyhow!("{}: {e:#}", exp.source.display()))?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} [{}]: {}",
        exp.source.display(),
        exp.name,
        exp.description
    );
    let _ = writeln!(
        s,
        "  input {} ({name}, {} classes)",
        info.image,
        info.classes()
    );
    let _ = writeln!(
        s,
        "  {:<8} {:<26} {:<16} {:>10}  algorithm",
        "#", "layer", "output shape", "params"
    );
    // A block's rows follow it, indented; its own row counts their parameters.
    for r in rows.iter().flat_map(|r| r.all()) {
        let _ = writeln!(s, "  {:<8} {r}", r.path);
    }
    let total: usize = rows.iter().map(|r| r.params).sum();
    let _ = writeln!(s, "  total params: {total}");
    for line in exp.describe_training() {
        let _ = writeln!(s, "  {line}");
    }
    Ok(s)
}

/// The summary of a search that `check` prints before its variants' tables: its space, its
/// pruning, and the most fold-epochs it can train against the same search unpruned.
fn describe_search(g: &SearchGroup, first: &Experiment) -> String {
    let (epochs, folds) = (first.train.epochs, first.cv.folds);
    let mut s = format!(
        "{}: search {} of {} variants\n",
        first.source.display(),
        g.name,
        g.variants.len()
    );
    for (key, d) in &g.space {
        let _ = writeln!(s, "  {key}: {d}");
    }
    if let Some(h) = &g.halving {
        let r: Vec<String> = rungs(h.min_epochs, h.eta, epochs)
            .iter()
            .map(|e| e.to_string())
            .collect();
        let _ = writeln!(
            s,
            "  successive halving: eta {}, rungs at {} epochs on folds {:?}",
            h.eta,
            r.join(", "),
            h.folds
        );
    }
    if let Some(r) = &g.race {
        let _ = writeln!(
            s,
            "  racing over folds: after {}, alpha {}",
            r.after, r.alpha
        );
    }
    let _ = writeln!(
        s,
        "  at most {} fold-epochs (unpruned: {} variants × {folds} folds × {epochs} epochs = {})",
        worst_fold_epochs(g, epochs, folds),
        g.variants.len(),
        g.variants.len() * folds * epochs
    );
    s
}

/// Checks every experiment (and sweep variant) of `files`: prints the table of each valid one
/// and the error of each invalid file, and fails if any is invalid.
pub fn check(files: &[PathBuf], paths: &Paths) -> Result<()> {
    let mut failed = 0;
    let mut all: Vec<Experiment> = Vec::new();
    let mut data = DataCache::default();
    for f in files {
        let described = experiment::load_all(f).and_then(|variants| {
            let mut tables = variants
                .iter()
                .map(|e| describe(e, paths, &mut data))
                .collect::<Result<Vec<_>>>()?;
            if let Some(first) = variants.first() {
                if let Some(g) = &first.search {
                    tables.insert(0, describe_search(g, first));
                }
            }
            all.extend(variants);
            Ok(tables)
        });
        match described {
            Ok(tables) => tables.iter().for_each(|t| crate::output::print(t)),
            Err(err) => {
                crate::output::eprintln(&format!("error: {err:#}"));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} experiment files are invalid", files.len());
    }
    // Valid one by one, but not together: two sources of one experiment name.
    experiment::unique_names(all)?;
    Ok(())
}
