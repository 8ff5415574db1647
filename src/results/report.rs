//! The report: reads only results/ (never trains) and writes every plot, summary.csv and the
//! README.md a person reads on GitHub.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::data::mnist::{self, write_atomic, Split};
use crate::experiment::{Activation, Experiment, LayerSpec};
use crate::results::csv::{read_folds, read_history, FoldRow, HistoryRow};
use crate::results::plots;
use crate::results::stats::{compare, fold_percents, mean_std, Comparison};

/// One experiment's results as found under results/<name>/.
#[derive(Debug, Clone)]
pub struct ExperimentResults {
    /// Folder name.
    pub name: String,
    /// Per-epoch rows.
    pub history: Vec<HistoryRow>,
    /// Per-fold scores.
    pub folds: Vec<FoldRow>,
    /// The resolved experiment (spec.toml), if readable.
    pub spec: Option<Experiment>,
    /// Final model's test accuracy and loss (final/test.csv), if evaluated.
    pub test: Option<(f64, f64)>,
}

impl ExperimentResults {
    /// Fold accuracies in percent.
    pub fn scores(&self) -> Vec<f64> {
        fold_percents(&self.folds)
    }
}

/// Reads the `all` row of a test.csv: (accuracy, loss).
pub fn read_test_csv(path: &Path) -> Result<(f64, f64)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let header: Vec<&str> = text.lines().next().unwrap_or("").split(',').collect();
    let line = text
        .lines()
        .find(|l| l.starts_with("all,"))
        .with_context(|| format!("{}: no `all` row", path.display()))?;
    let f: Vec<&str> = line.split(',').collect();
    let col = |name: &str| -> Result<f64> {
        let i = header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("{}: no column {name}", path.display()))?;
        f.get(i).and_then(|v| v.parse().ok()).with_context(|| {
            format!(
                "{}: `all` row has no number in column {name}",
                path.display()
            )
        })
    };
    Ok((col("accuracy")?, col("loss")?))
}

/// Every experiment with a folds.csv under `results`, sorted by name.
pub fn discover(results: &Path) -> Result<Vec<ExperimentResults>> {
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(results).with_context(|| format!("cannot read {}", results.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("folds.csv").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let folds = read_folds(&dir.join("folds.csv"))?;
        if folds.is_empty() {
            continue;
        }
        let history = if dir.join("history.csv").is_file() {
            read_history(&dir.join("history.csv"))?
        } else {
            Vec::new()
        };
        let spec = std::fs::read_to_string(dir.join("spec.toml"))
            .ok()
            .and_then(|t| Experiment::from_resolved_toml(&name, &t).ok());
        let test_path = dir.join("final").join("test.csv");
        let test = if test_path.is_file() {
            Some(read_test_csv(&test_path)?)
        } else {
            None
        };
        out.push(ExperimentResults {
            name,
            history,
            folds,
            spec,
            test,
        });
    }
    Ok(out)
}

/// One line describing a network and its training.
pub fn describe(e: &Experiment) -> String {
    let act = |a: Activation| match a {
        Activation::Linear => "",
        Activation::Relu => " relu",
        Activation::Softmax => " softmax",
    };
    let layers: Vec<String> = e
        .model
        .layers
        .iter()
        .map(|l| match l {
            LayerSpec::Conv(c) => format!(
                "conv {}×{}×{}{}",
                c.kernel,
                c.kernel,
                c.filters,
                act(c.activation)
            ),
            LayerSpec::Maxpool(k) => format!("maxpool {k}"),
            LayerSpec::Flatten(_) => "flatten".into(),
            LayerSpec::Dense(d) => format!("dense {}{}", d.units, act(d.activation)),
            LayerSpec::Batchnorm(_) => "batchnorm".into(),
        })
        .collect();
    let t = &e.train;
    format!(
        "{} · SGD lr {} momentum {}, {} epochs × batch {} · scaling {:?}{}",
        layers.join(" → "),
        t.learning_rate,
        t.momentum,
        t.epochs,
        t.batch_size,
        e.data.scaling,
        e.data
            .limit
            .map(|l| format!(" · first {l} images"))
            .unwrap_or_default()
    )
    .replace("Unit", "unit")
    .replace("Center", "center")
    .replace("Standardize", "standardize")
}

/// summary.csv: one row per experiment, sorted by name, fixed precision.
pub fn summary_csv(exps: &[ExperimentResults]) -> String {
    let mut s = String::from("experiment,folds,mean,std,min,max,params,epochs,split,test_acc\n");
    for e in exps {
        let v = e.scores();
        let (mean, std) = mean_std(&v);
        let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let params = e
            .spec
            .as_ref()
            .and_then(|s| s.summary().ok())
            .map(|rows| rows.iter().map(|r| r.params).sum::<usize>());
        let epochs = e.spec.as_ref().map(|s| s.train.epochs);
        let mut splits: Vec<&str> = e.folds.iter().map(|f| f.split.as_str()).collect();
        splits.dedup();
        let _ = writeln!(
            s,
            "{},{},{mean:.3},{std:.3},{min:.3},{max:.3},{},{},{},{}",
            e.name,
            v.len(),
            params.map(|p| p.to_string()).unwrap_or_default(),
            epochs.map(|p| p.to_string()).unwrap_or_default(),
            splits.join("+"),
            e.test
                .map(|(a, _)| format!("{:.3}", a * 100.0))
                .unwrap_or_default()
        );
    }
    s
}

fn fmt_cmp(c: &Comparison) -> (String, String, String) {
    (
        format!("{:+.3} [{:+.3}, {:+.3}]", c.delta, c.ci.0, c.ci.1),
        if c.p < 0.001 {
            "<0.001".into()
        } else {
            format!("{:.3}", c.p)
        },
        c.verdict().words().into(),
    )
}

/// The anchor GitHub gives a heading: lower case, only letters, digits, '-' and '_'.
fn github_anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// README.md of results/.
pub fn readme(exps: &[ExperimentResults], baseline: &str, samples: bool) -> String {
    let base = exps.iter().find(|e| e.name == baseline);
    let mut s = String::new();
    let _ = writeln!(s, "# Results\n");
    let _ = writeln!(
        s,
        "Written by `mnist-lab report` from the CSV files in this folder; do not edit by hand.\n"
    );
    let _ = writeln!(s, "Validation accuracy over the cross-validation folds (mean ± population std, in %). Δ is the mean");
    let _ = writeln!(s, "per-fold difference from `{baseline}` with its 95% confidence interval and two-sided p-value from the");
    let _ = writeln!(s, "Nadeau–Bengio corrected resampled t-test (folds are shared, so scores are paired fold by fold);");
    let _ = writeln!(
        s,
        "\"better\" or \"worse\" only when the interval excludes zero.\n"
    );
    let _ = writeln!(s, "| experiment | folds | accuracy (%) | Δ vs {baseline} [95% CI] | p | verdict | test acc. (%) |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---|---:|");
    for e in exps {
        let (mean, std) = mean_std(&e.scores());
        let (delta, p, verdict) = match base {
            Some(b) if b.name != e.name => match compare(&e.folds, &b.folds, true) {
                Ok(c) => fmt_cmp(&c),
                Err(_) => (
                    "—".into(),
                    "—".into(),
                    "not comparable (different folds)".into(),
                ),
            },
            Some(_) => ("(reference)".into(), String::new(), String::new()),
            None => ("—".into(), "—".into(), format!("no `{baseline}` results")),
        };
        let test = e
            .test
            .map(|(a, _)| format!("{:.3}", a * 100.0))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "| [{0}](#{anchor}) | {1} | {mean:.3} ± {std:.3} | {delta} | {p} | {verdict} | {test} |",
            e.name,
            e.folds.len(),
            anchor = github_anchor(&e.name)
        );
    }
    let _ = writeln!(s, "\n![all experiments' fold accuracies](comparison.png)\n");
    let _ = writeln!(s, "Each box is one experiment's fold accuracies; thin lines join the same fold across experiments.\n");
    if samples {
        let _ = writeln!(
            s,
            "The first nine training images:\n\n![first nine training images](samples.png)\n"
        );
    }
    let _ = writeln!(s, "## Experiments\n");
    for e in exps {
        let _ = writeln!(s, "### {}\n", e.name);
        if let Some(spec) = &e.spec {
            let _ = writeln!(s, "{}\n\n`{}`\n", spec.description, describe(spec));
        }
        let scores: Vec<String> = e.scores().iter().map(|v| format!("{v:.3}")).collect();
        let _ = writeln!(s, "Fold accuracies: {}\n", scores.join(", "));
        if let Some((acc, loss)) = e.test {
            let _ = writeln!(
                s,
                "Final model (trained on all training images): **{:.3}%** on the test set (loss {loss:.4}); `{}/final/`\n\n![confusion]({}/final/confusion.png)\n",
                acc * 100.0,
                e.name,
                e.name
            );
        }
        let _ = writeln!(
            s,
            "![{0} learning curves]({0}/diagnostics.png) ![{0} box plot]({0}/boxplot.png)\n",
            e.name
        );
    }
    s
}

/// Writes every report file under `results` (samples.png only when the data is present).
pub fn write_report(
    results: &Path,
    data_root: &Path,
    baseline: &str,
) -> Result<Vec<ExperimentResults>> {
    let exps = discover(results)?;
    for e in &exps {
        let dir = results.join(&e.name);
        if !e.history.is_empty() {
            plots::diagnostics_png(&dir.join("diagnostics.png"), &e.history, &e.name)?;
        }
        plots::boxplot_png(
            &dir.join("boxplot.png"),
            &format!("{}: fold accuracies", e.name),
            &[(e.name.clone(), e.folds.clone())],
            false,
        )?;
    }
    let groups: Vec<(String, Vec<FoldRow>)> = exps
        .iter()
        .map(|e| (e.name.clone(), e.folds.clone()))
        .collect();
    plots::boxplot_png(
        &results.join("comparison.png"),
        "Validation accuracy by experiment",
        &groups,
        true,
    )?;
    let samples = match mnist::load(&mnist::dataset_dir(data_root, "mnist"), Split::Train) {
        Ok(ds) => {
            let images: Vec<&[u8]> = (0..9.min(ds.len())).map(|i| ds.image(i)).collect();
            plots::samples_png(
                &results.join("samples.png"),
                &images,
                &ds.labels[..images.len()],
                3,
            )?;
            true
        }
        Err(_) => results.join("samples.png").is_file(),
    };
    write_atomic(&results.join("summary.csv"), summary_csv(&exps).as_bytes())?;
    write_atomic(
        &results.join("README.md"),
        readme(&exps, baseline, samples).as_bytes(),
    )?;
    Ok(exps)
}
