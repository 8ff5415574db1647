//! `mnist-lab diff REV`: each experiment's fold scores at a git revision against the working
//! tree, with the uncertainty of the change (paired by fold when the splits match, else Welch).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::results::csv::{parse_folds, read_folds, FoldRow};
use crate::results::stats::{compare, fold_mean_std, Verdict};

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .context("cannot run git")?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Fold rows of every experiment under `results` at revision `rev`.
pub fn folds_at(results: &Path, rev: &str) -> Result<BTreeMap<String, Vec<FoldRow>>> {
    let abs = std::fs::canonicalize(results)
        .with_context(|| format!("cannot find {}", results.display()))?;
    let top = git(&abs, &["rev-parse", "--show-toplevel"])
        .context("the results folder is not inside a git repository")?;
    let top = Path::new(top.trim());
    let rel = abs
        .strip_prefix(std::fs::canonicalize(top)?)
        .unwrap_or(Path::new("results"))
        .to_string_lossy()
        .replace('\\', "/");
    if git(
        top,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .is_err()
    {
        bail!("{rev:?} is not a commit in {}", top.display());
    }
    let listing = git(top, &["ls-tree", "-r", "--name-only", rev, "--", &rel])?;
    let mut out = BTreeMap::new();
    for path in listing.lines() {
        let parts: Vec<&str> = path
            .strip_prefix(&format!("{rel}/"))
            .unwrap_or("")
            .split('/')
            .collect();
        if parts.len() == 2 && parts[1] == "folds.csv" {
            let text = git(top, &["show", &format!("{rev}:{path}")])?;
            let rows = parse_folds(&text, Path::new(&format!("{rev}:{path}")))?;
            if !rows.is_empty() {
                out.insert(parts[0].to_string(), rows);
            }
        }
    }
    if out.is_empty() {
        bail!("revision {rev} has no {rel}/*/folds.csv: nothing to compare with");
    }
    Ok(out)
}

/// Fold rows of every experiment in the working tree.
pub fn folds_now(results: &Path) -> Result<BTreeMap<String, Vec<FoldRow>>> {
    let mut out = BTreeMap::new();
    for entry in
        std::fs::read_dir(results).with_context(|| format!("cannot read {}", results.display()))?
    {
        let dir = entry?.path();
        let f = dir.join("folds.csv");
        if f.is_file() {
            let rows = read_folds(&f)?;
            if !rows.is_empty() {
                out.insert(
                    dir.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    rows,
                );
            }
        }
    }
    Ok(out)
}

/// The diff as text, and whether any experiment got significantly worse.
pub fn diff(results: &Path, rev: &str) -> Result<(String, bool)> {
    let before = folds_at(results, rev)?;
    let after = folds_now(results)?;
    let mut s = String::new();
    let mut regressed = false;
    let _ = writeln!(
        s,
        "{:<22} {:>17} {:>17} {:>26} {:>7}  verdict",
        "experiment",
        format!("{rev}"),
        "now",
        "Δ [95% CI]",
        "p"
    );
    let names: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for name in names {
        let ms = |f: &[FoldRow]| {
            let (m, sd) = fold_mean_std(f);
            format!("{m:.3} ± {sd:.3}")
        };
        match (before.get(name), after.get(name)) {
            (Some(b), Some(a)) => {
                if a == b {
                    let _ = writeln!(
                        s,
                        "{name:<22} {:>17} {:>17} {:>26} {:>7}  unchanged",
                        ms(b),
                        ms(a),
                        "",
                        ""
                    );
                    continue;
                }
                match compare(a, b, false) {
                    Ok(c) => {
                        let how = if c.paired {
                            "paired by fold"
                        } else {
                            "Welch, folds differ"
                        };
                        if c.verdict() == Verdict::Worse {
                            regressed = true;
                        }
                        let p = if c.p < 0.001 {
                            "<0.001".to_string()
                        } else {
                            format!("{:.3}", c.p)
                        };
                        let _ = writeln!(
                            s,
                            "{name:<22} {:>17} {:>17} {:>26} {p:>7}  {} ({how})",
                            ms(b),
                            ms(a),
                            format!("{:+.3} [{:+.3}, {:+.3}]", c.delta, c.ci.0, c.ci.1),
                            c.verdict().words()
                        );
                    }
                    Err(e) => {
                        let _ = writeln!(
                            s,
                            "{name:<22} {:>17} {:>17}  not comparable: {e}",
                            ms(b),
                            ms(a)
                        );
                    }
                }
            }
            (None, Some(a)) => {
                let _ = writeln!(s, "{name:<22} {:>17} {:>17}  added", "—", ms(a));
            }
            (Some(b), None) => {
                let _ = writeln!(s, "{name:<22} {:>17} {:>17}  removed", ms(b), "—");
            }
            (None, None) => {}
        }
    }
    Ok((s, regressed))
}
