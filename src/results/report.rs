//! The report: reads only results/ (never trains) and writes every plot, summary.csv and the
//! README.md a person reads on GitHub.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::data::{dataset, Split};
use crate::experiment::Experiment;
use crate::files::write_atomic;
use crate::results::csv::{read_folds, read_history, FoldRow, HistoryRow};
use crate::results::plots;
use crate::results::search::{read_search, SearchInfo, SearchRow};
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
    /// The dataset it was trained on (from spec.toml; "unknown" without one).
    pub dataset: String,
    /// Its number of parameters, when the spec and its dataset's shape are known.
    pub params: Option<usize>,
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

/// Every experiment with a folds.csv under `results`, sorted by name. `data_root` is only
/// asked for the image shape of datasets not known by name (to count parameters).
pub fn discover(results: &Path, data_root: &Path) -> Result<Vec<ExperimentResults>> {
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
        // Results made by hand may have no spec (their dataset is then "unknown"); a spec that
        // is there but unreadable is an error, not a reason to file the results elsewhere.
        let spec_path = dir.join("spec.toml");
        let spec = if spec_path.exists() {
            let text = std::fs::read_to_string(&spec_path)
                .with_context(|| format!("cannot read {}", spec_path.display()))?;
            let spec = Experiment::from_resolved_toml(&name, &text).with_context(|| {
                format!(
                    "{}: corrupt (re-run the experiment to rewrite it, or remove {} from the results)",
                    spec_path.display(),
                    dir.display()
                )
            })?;
            Some(spec)
        } else {
            None
        };
        let dataset = spec
            .as_ref()
            .map_or("unknown".to_string(), |s| s.data.dataset.clone());
        let params = spec.as_ref().and_then(|s| {
            let info = dataset::info(&data_root.join(&s.data.dataset), &s.data.dataset).ok()?;
            let rows = s.network(&info).ok()?;
            Some(rows.iter().map(|r| r.params).sum())
        });
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
            dataset,
            params,
            test,
        });
    }
    Ok(out)
}

/// One line describing a network and its training.
pub fn describe(e: &Experiment) -> String {
    let layers: Vec<String> = e.model.layers.iter().map(|l| l.spec().describe()).collect();
    let t = &e.train;
    let mut extra = e.describe_schedule_and_loss();
    for a in e.describe_augment() {
        extra += &format!(" · augment {a}");
    }
    format!(
        "{} · {}, {} epochs × batch {}{extra} · scaling {}{}",
        layers.join(" → "),
        t.optimizer.spec().describe(),
        t.epochs,
        t.batch_size,
        e.data.scaling.name(),
        e.data
            .limit
            .map(|l| format!(" · first {l} images"))
            .unwrap_or_default()
    )
}

/// summary.csv: one row per experiment, sorted by name, fixed precision.
pub fn summary_csv(exps: &[ExperimentResults]) -> String {
    let mut s =
        String::from("experiment,dataset,folds,mean,std,min,max,params,epochs,split,test_acc\n");
    for e in exps {
        let v = e.scores();
        let (mean, std) = mean_std(&v);
        let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let epochs = e.spec.as_ref().map(|s| s.train.epochs);
        let mut splits: Vec<&str> = e.folds.iter().map(|f| f.split.as_str()).collect();
        splits.dedup();
        let _ = writeln!(
            s,
            "{},{},{},{mean:.3},{std:.3},{min:.3},{max:.3},{},{},{},{}",
            e.name,
            e.dataset,
            v.len(),
            e.params.map(|p| p.to_string()).unwrap_or_default(),
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

/// The experiments of one dataset and the one they are compared with.
#[derive(Debug, Clone)]
pub struct DatasetGroup<'a> {
    /// The dataset.
    pub dataset: String,
    /// Its experiments, sorted by name.
    pub exps: Vec<&'a ExperimentResults>,
    /// The reference: the experiment named `baseline` (the option), or else the one named
    /// `<anything>-baseline`, if the dataset has exactly one such.
    pub baseline: Option<&'a ExperimentResults>,
}

/// Groups experiments by dataset: the group holding `baseline` first, then by dataset name.
/// Comparisons never cross datasets.
pub fn group_by_dataset<'a>(
    exps: &'a [ExperimentResults],
    baseline: &str,
) -> Vec<DatasetGroup<'a>> {
    let mut datasets: Vec<&str> = exps.iter().map(|e| e.dataset.as_str()).collect();
    datasets.sort_unstable();
    datasets.dedup();
    let mut groups: Vec<DatasetGroup> = datasets
        .into_iter()
        .map(|d| {
            let members: Vec<&ExperimentResults> = exps.iter().filter(|e| e.dataset == d).collect();
            let suffix = format!("-{baseline}");
            let named: Vec<&&ExperimentResults> = members
                .iter()
                .filter(|e| e.name.ends_with(&suffix))
                .collect();
            let reference = members
                .iter()
                .find(|e| e.name == baseline)
                .or(if named.len() == 1 {
                    Some(named[0])
                } else {
                    None
                })
                .copied();
            DatasetGroup {
                dataset: d.to_string(),
                exps: members,
                baseline: reference,
            }
        })
        .collect();
    groups.sort_by_key(|g| !g.exps.iter().any(|e| e.name == baseline));
    groups
}

/// The file names of a dataset's comparison plot and sample images.
fn comparison_file(dataset: &str) -> String {
    format!("comparison-{dataset}.png")
}

fn samples_file(dataset: &str) -> String {
    format!("samples-{dataset}.png")
}

/// README.md of results/. `samples` lists the datasets that have a samples image.
pub fn readme(exps: &[ExperimentResults], baseline: &str, samples: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Results\n");
    let _ = writeln!(
        s,
        "Written by `mnist-lab report` from the CSV files in this folder; do not edit by hand.\n"
    );
    let _ = writeln!(s, "Validation accuracy over the cross-validation folds (mean ± population std, in %), one table");
    let _ = writeln!(s, "per dataset. Δ is the mean per-fold difference from that dataset's baseline (`{baseline}`, or its");
    let _ = writeln!(s, "one experiment named `…-{baseline}`) with its 95% confidence interval and two-sided p-value from");
    let _ = writeln!(s, "the Nadeau–Bengio corrected resampled t-test (folds are shared, so scores are paired fold by");
    let _ = writeln!(
        s,
        "fold); \"better\" or \"worse\" only when the interval excludes zero. Datasets are never compared.\n"
    );
    for g in group_by_dataset(exps, baseline) {
        let base_name = g.baseline.map_or(baseline.to_string(), |b| b.name.clone());
        let _ = writeln!(s, "## {}\n", g.dataset);
        let _ = writeln!(s, "| experiment | folds | accuracy (%) | Δ vs {base_name} [95% CI] | p | verdict | test acc. (%) |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---|---:|");
        for e in &g.exps {
            let (mean, std) = mean_std(&e.scores());
            let (delta, p, verdict) = match g.baseline {
                Some(b) if b.name != e.name => match compare(&e.folds, &b.folds, true) {
                    Ok(c) => fmt_cmp(&c),
                    Err(_) => (
                        "—".into(),
                        "—".into(),
                        "not comparable (different folds)".into(),
                    ),
                },
                Some(_) => ("(reference)".into(), String::new(), String::new()),
                None => (
                    "—".into(),
                    "—".into(),
                    format!("no `{baseline}` results for {}", g.dataset),
                ),
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
        let _ = writeln!(
            s,
            "\n![{0}: fold accuracies of each experiment]({1})\n",
            g.dataset,
            comparison_file(&g.dataset)
        );
        let _ = writeln!(s, "Each box is one experiment's fold accuracies; thin lines join the same fold across experiments.\n");
        if samples.contains(&g.dataset) {
            let _ = writeln!(
                s,
                "The first nine training images of {0}:\n\n![first nine training images of {0}]({1})\n",
                g.dataset,
                samples_file(&g.dataset)
            );
        }
    }
    let _ = writeln!(s, "## Experiments\n");
    for e in exps {
        let _ = writeln!(s, "### {}\n", e.name);
        if let Some(spec) = &e.spec {
            let _ = writeln!(
                s,
                "{}\n\n`{}` · dataset {}\n",
                spec.description,
                describe(spec),
                e.dataset
            );
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
        if e.spec.as_ref().is_some_and(|x| !x.data.augment.is_empty()) {
            let _ = writeln!(
                s,
                "Training images (left) and augmented versions:\n\n![{0} augmentation]({0}/augment.png)\n",
                e.name
            );
        }
    }
    s
}

/// Draws the first nine training images of `name` into `path`, if its data is there.
fn write_samples(path: &Path, data_root: &Path, name: &str) -> Result<bool> {
    let Ok(ds) = dataset::load(&data_root.join(name), name, Split::Train) else {
        return Ok(false);
    };
    let images: Vec<&[u8]> = (0..9.min(ds.len())).map(|i| ds.image(i)).collect();
    let names: Vec<String> = ds.labels[..images.len()]
        .iter()
        .map(|&l| format!("label {}", ds.info.class_names[l as usize]))
        .collect();
    plots::samples_png(path, ds.info.image, &images, &names, 3)?;
    Ok(true)
}

/// Versions of each sample drawn beside its original in augment.png.
const AUGMENTED: usize = 5;

/// Draws the first four training images of the experiment's dataset, each beside
/// [`AUGMENTED`] versions made by its `[data.augment]` transforms (a fixed stream seeded by the
/// experiment's seed), into `path`; false when there is nothing to draw or no data.
fn write_augment(path: &Path, data_root: &Path, exp: &Experiment) -> Result<bool> {
    let transforms = crate::data::transform::pipeline(&exp.data.augment);
    let name = &exp.data.dataset;
    if transforms.is_empty() {
        return Ok(false);
    }
    let Ok(ds) = dataset::load(&data_root.join(name), name, Split::Train) else {
        return Ok(false);
    };
    let shape = ds.info.image;
    let info = crate::data::transform::BatchInfo {
        image: shape,
        background: 0.0,
        foreground: 1.0,
    };
    let mut rng = crate::rng::Rng::new(exp.train.seed, 0xa11_6e47);
    let (mut images, mut captions) = (Vec::new(), Vec::new());
    for i in 0..4.min(ds.len()) {
        let label = &ds.info.class_names[ds.labels[i] as usize];
        images.push(ds.image(i).to_vec());
        captions.push(format!("label {label}"));
        let x: Vec<f32> = ds.image(i).iter().map(|&p| p as f32 / 255.0).collect();
        for k in 1..=AUGMENTED {
            let mut v = x.clone();
            for t in &transforms {
                t.apply(&mut v, &info, &mut rng);
            }
            images.push(
                v.iter()
                    .map(|p| (p * 255.0).round().clamp(0.0, 255.0) as u8)
                    .collect(),
            );
            captions.push(format!("augmented {k}"));
        }
    }
    let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    plots::samples_png(path, shape, &refs, &captions, AUGMENTED + 1)?;
    Ok(true)
}

/// Writes every report file under `results` (a dataset's samples image only when its data is
/// present, or kept from an earlier report).
pub fn write_report(
    results: &Path,
    data_root: &Path,
    baseline: &str,
) -> Result<Vec<ExperimentResults>> {
    let exps = discover(results, data_root)?;
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
        if let Some(spec) = &e.spec {
            write_augment(&dir.join("augment.png"), data_root, spec)?;
        }
    }
    let mut samples = Vec::new();
    for g in group_by_dataset(&exps, baseline) {
        let folds: Vec<(String, Vec<FoldRow>)> = g
            .exps
            .iter()
            .map(|e| (e.name.clone(), e.folds.clone()))
            .collect();
        plots::boxplot_png(
            &results.join(comparison_file(&g.dataset)),
            &format!("{}: validation accuracy by experiment", g.dataset),
            &folds,
            true,
        )?;
        let path = results.join(samples_file(&g.dataset));
        if write_samples(&path, data_root, &g.dataset)? || path.is_file() {
            samples.push(g.dataset.clone());
        }
    }
    let searches = discover_searches(results)?;
    for (info, rows) in &searches {
        plots::search_png(
            &results.join(&info.name).join("search.png"),
            &format!("{}: validation accuracy of every variant", info.name),
            &search_curves(results, info, rows)?,
            &info.rungs,
        )?;
    }
    write_atomic(&results.join("summary.csv"), summary_csv(&exps).as_bytes())?;
    let mut text = readme(&exps, baseline, &samples);
    if !searches.is_empty() {
        let at = text.find("## Experiments\n").unwrap_or(text.len());
        text.insert_str(at, &searches_section(&searches, &exps, baseline));
    }
    write_atomic(&results.join("README.md"), text.as_bytes())?;
    Ok(exps)
}

/// Every search under `results` (a folder with a `search.toml`), by name.
pub fn discover_searches(results: &Path) -> Result<Vec<(SearchInfo, Vec<SearchRow>)>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(results)
        .with_context(|| format!("cannot read {}", results.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("search.toml").is_file())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| read_search(d)).collect()
}

/// Each variant's validation accuracy by epoch on the search's first rung fold, read from its
/// fold file (whole) or its partial one (a run the search stopped).
fn search_curves(
    results: &Path,
    info: &SearchInfo,
    rows: &[SearchRow],
) -> Result<Vec<plots::SearchCurve>> {
    let fold = info.rung_folds.first().copied().unwrap_or(1);
    rows.iter()
        .map(|r| {
            let folds = results.join(&r.variant).join("folds");
            let whole = folds.join(format!("fold-{fold}.csv"));
            let partial = folds.join(format!("fold-{fold}.partial.csv"));
            let history = if whole.is_file() {
                read_history(&whole)?
            } else if partial.is_file() {
                read_history(&partial)?
            } else {
                Vec::new()
            };
            Ok(plots::SearchCurve {
                name: r.variant.clone(),
                val_acc: history.iter().map(|h| h.row.val_acc).collect(),
                survivor: r.status == "survivor",
            })
        })
        .collect()
}

/// The README's section on searches: per search, its space and pruning, the compute it used
/// against the same search unpruned, its winner with the winner's CV and Δ against its
/// dataset's baseline, a table of every variant (stopped ones never with a CV score), and its
/// plot.
pub fn searches_section(
    searches: &[(SearchInfo, Vec<SearchRow>)],
    exps: &[ExperimentResults],
    baseline: &str,
) -> String {
    let mut s = String::from("## Searches\n\n");
    let _ = writeln!(s, "Variants are pruned from scores alone (ties by name), so a search makes the same decisions on any machine. A stopped variant's accuracy is its validation accuracy on the rung fold at the epoch it stopped; only survivors are cross-validated.\n");
    for (info, rows) in searches {
        let _ = writeln!(s, "### {}\n", info.name);
        let space: Vec<String> = info
            .space
            .iter()
            .map(|(k, d)| format!("`{k}` {d}"))
            .collect();
        let _ = write!(s, "{} variants over {}.", info.variants, space.join("; "));
        if let Some(h) = &info.halving {
            let rungs: Vec<String> = info.rungs.iter().map(|r| r.to_string()).collect();
            let _ = write!(
                s,
                " Successive halving ({h}): rungs at {} epochs.",
                rungs.join(", ")
            );
        }
        if let Some(r) = &info.race {
            let _ = write!(s, " Racing over folds ({r}).");
        }
        let _ = writeln!(
            s,
            " Compute: {} fold-epochs, {:.1}% of the {} the same search would train unpruned ({} variants × {} folds × {} epochs).{}\n",
            info.fold_epochs,
            100.0 * info.fold_epochs as f64 / info.unpruned_fold_epochs.max(1) as f64,
            info.unpruned_fold_epochs,
            info.variants,
            info.folds,
            info.epochs,
            if info.done { "" } else { " **Not finished**: `make all` goes on from here." }
        );
        let cv = |name: &str| exps.iter().find(|e| e.name == name);
        let winner = crate::results::search::winner(rows, |v| {
            cv(v).map(|e| {
                let f = &e.folds;
                f.iter().map(|r| r.val_acc).sum::<f64>() / f.len().max(1) as f64
            })
        })
        .and_then(cv);
        if let Some(w) = winner {
            let (mean, std) = mean_std(&w.scores());
            let base = group_by_dataset(exps, baseline)
                .into_iter()
                .find(|g| g.dataset == w.dataset)
                .and_then(|g| g.baseline);
            let delta = match base {
                Some(b) => match compare(&w.folds, &b.folds, true) {
                    Ok(c) => {
                        let (d, p, v) = fmt_cmp(&c);
                        format!("; Δ vs {} {d}, p {p} ({v})", b.name)
                    }
                    Err(_) => format!("; not comparable with {} (different folds)", b.name),
                },
                None => String::new(),
            };
            let _ = writeln!(
                s,
                "Winner: [{0}](#{1}), {mean:.3} ± {std:.3} in {2}-fold CV{delta}.\n",
                w.name,
                github_anchor(&w.name),
                w.folds.len()
            );
        }
        let _ = writeln!(s, "| variant | values | epochs | folds | accuracy at each rung (%) | CV accuracy (%) | status |");
        let _ = writeln!(s, "|---|---|---:|---:|---|---:|---|");
        let mut order: Vec<&SearchRow> = rows.iter().collect();
        order.sort_by(|a, b| {
            let last = |r: &SearchRow| r.rung_acc.last().copied().unwrap_or(0.0);
            (b.status == "survivor")
                .cmp(&(a.status == "survivor"))
                .then(b.rung_acc.len().cmp(&a.rung_acc.len()))
                .then(last(b).total_cmp(&last(a)))
                .then(a.variant.cmp(&b.variant))
        });
        for r in order {
            let accs: Vec<String> = r
                .rung_acc
                .iter()
                .map(|a| format!("{:.2}", a * 100.0))
                .collect();
            let cv_acc = match (r.status == "survivor", cv(&r.variant)) {
                (true, Some(e)) => {
                    let (m, sd) = mean_std(&e.scores());
                    format!("{m:.3} ± {sd:.3}")
                }
                _ => "—".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {cv_acc} | {} |",
                r.variant,
                r.values,
                r.epochs,
                r.folds_done,
                accs.join(" → "),
                r.status
            );
        }
        let _ = writeln!(
            s,
            "\n![{0}: every variant's validation accuracy]({0}/search.png)\n",
            info.name
        );
        let _ = writeln!(
            s,
            "Gray: stopped variants; in colour: survivors; vertical lines: the rungs.\n"
        );
    }
    s
}
