//! The `mnist-lab` command line: parsing and dispatch; each subcommand calls library functions.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use mnist_lab::data::fetch;
use mnist_lab::experiment::load_files;
use mnist_lab::files::Paths;
use mnist_lab::{bench, check, cv, final_model, output, predict, results};

/// Declarative CNN experiments on MNIST-format data.
#[derive(Parser)]
#[command(name = "mnist-lab", version, about)]
struct Cli {
    /// Folder holding the datasets (one subfolder each, e.g. data/mnist).
    #[arg(long, global = true, default_value = "data")]
    data_dir: PathBuf,
    /// Folder the results are written to.
    #[arg(long, global = true, default_value = "results")]
    results: PathBuf,
    /// Threads this process may use in all (default: one per core). Folds running at once
    /// share them, and one model alone uses them all (up to 32); results do not depend on the
    /// number.
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch or verify datasets.
    Data {
        #[command(subcommand)]
        action: DataAction,
    },
    /// Validate experiment files and print each network's layers, shapes and parameters.
    Check {
        /// Experiment files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Cross-validate experiments (only folds not already cached).
    Run {
        #[command(flatten)]
        args: RunArgs,
        /// Run line INDEX (0-based) of a file written by `plan` instead (for job arrays).
        #[arg(
            long,
            value_name = "FILE",
            requires = "index",
            conflicts_with = "files"
        )]
        from_plan: Option<PathBuf>,
        /// The line of --from-plan to run.
        #[arg(long, requires = "from_plan")]
        index: Option<usize>,
        /// Folds trained at once (default: --threads, one per core); a fold left alone takes
        /// the threads the others left.
        #[arg(long)]
        jobs: Option<usize>,
        /// Re-run folds even when their cached results match.
        #[arg(long)]
        force: bool,
    },
    /// Measure training/evaluation speed of the experiments' models and the GEMM peak.
    Bench {
        /// Experiment files (default: the seed's three models and modern).
        files: Vec<PathBuf>,
        /// Training steps timed per model.
        #[arg(long, default_value_t = 300)]
        steps: usize,
        /// Parallel workers for the aggregate measurement, and the threads of the last column's
        /// one model (default: number of cores).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Print one `run` argument line per (experiment, fold) that still needs training.
    Plan {
        /// Experiment files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Train the final model of experiments on all training images and save it.
    Final {
        /// Experiment files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Only the experiments marked `final = true`.
        #[arg(long)]
        marked: bool,
        /// Re-train even when an up-to-date model exists.
        #[arg(long)]
        force: bool,
        /// Models trained at once (default: --threads, one per core); a model left alone takes
        /// the threads the others left.
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Score saved models on the test set; writes test.csv and confusion.png beside each.
    Evaluate {
        /// Final folders (results/<exp>/final) or model files.
        #[arg(required = true)]
        models: Vec<PathBuf>,
    },
    /// Predict the class of image files (PNG, JPEG, BMP; any size, colour or background).
    Predict {
        /// Final folder or model file.
        model: PathBuf,
        /// Image files.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Show the N most probable classes.
        #[arg(long, default_value_t = 1)]
        top: usize,
        /// Print JSON lines instead of text.
        #[arg(long)]
        json: bool,
        /// Write the image the network saw into this folder.
        #[arg(long)]
        save_preprocessed: Option<PathBuf>,
    },
    /// Write plots, summary.csv and README.md from results/ (never trains).
    Report {
        /// The experiment every other one is compared with.
        #[arg(long, default_value = "baseline")]
        baseline: String,
    },
    /// Compare each experiment's fold scores at git revision REV with the working tree.
    Diff {
        /// A git revision (commit, tag, branch, HEAD~1, ...).
        rev: String,
        /// Exit 1 when any experiment got significantly worse.
        #[arg(long)]
        fail_on_regression: bool,
    },
}

/// What to run: experiment files, optionally narrowed to variants and folds.
#[derive(Args, Debug)]
struct RunArgs {
    /// Experiment files.
    files: Vec<PathBuf>,
    /// Run only these folds (1-based; repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    fold: Vec<usize>,
    /// Run only the experiment (sweep variant) with this name.
    #[arg(long)]
    experiment: Option<String>,
}

/// A line of a plan file, parsed like `run`'s arguments.
#[derive(Parser, Debug)]
#[command(no_binary_name = true)]
struct PlanLine {
    #[command(flatten)]
    args: RunArgs,
}

/// Reads line `index` (0-based) of a plan file as `run` arguments.
fn plan_line(file: &std::path::Path, index: usize) -> Result<RunArgs> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let line = lines.get(index).ok_or_else(|| {
        anyhow::anyhow!(
            "{} has {} jobs (0..{}); --index {index} is out of range",
            file.display(),
            lines.len(),
            lines.len()
        )
    })?;
    let words = cv::plan::split_words(line)
        .map_err(|e| anyhow::anyhow!("{}: line {}: {e}", file.display(), index + 1))?;
    PlanLine::try_parse_from(words)
        .map(|p| p.args)
        .map_err(|e| anyhow::anyhow!("{}: line {}: {e}", file.display(), index + 1))
}

#[derive(Subcommand)]
enum DataAction {
    /// Put the four IDX files in <data-dir>/<dataset> and verify them (sha256 where known).
    Fetch {
        /// Dataset name (folder under the data dir).
        #[arg(long, default_value = "mnist")]
        dataset: String,
        /// Where to put the files (default: <data-dir>/<dataset>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// A folder that already holds the files (raw or .gz), tried before the mirrors.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Do not try the public mirrors.
        #[arg(long)]
        offline: bool,
    },
    /// Verify the files of a dataset.
    Verify {
        /// Dataset name.
        #[arg(long, default_value = "mnist")]
        dataset: String,
    },
}

/// `--dataset` follows the rule `data.dataset` does.
fn check_dataset_name(name: &str) -> Result<()> {
    mnist_lab::data::catalog::check_name(name).map_err(|e| anyhow::anyhow!("--dataset: {e}"))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most worker threads `--jobs` and `bench --workers` take (or the number of cores, on a
/// machine with more): beyond that a count is a typo, not a plan.
const MAX_WORKERS: usize = 1024;

/// Checks a worker count given as `flag`: at least 1, at most [`MAX_WORKERS`] (or the cores);
/// more than the cores is said, since workers then share them.
fn check_workers(flag: &str, n: usize, what: &str) -> Result<()> {
    let max = MAX_WORKERS.max(cores());
    if n == 0 {
        anyhow::bail!("{flag} is 0, expected at least 1 ({what})");
    }
    if n > max {
        anyhow::bail!("{flag} {n} is more workers than mnist-lab starts, expected 1..={max} (this machine has {} cores)", cores());
    }
    if n > cores() {
        output::eprintln(&format!(
            "note: {flag} {n} is more than this machine's {} cores; the workers will share them",
            cores()
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    // A closed stdout or stderr (`mnist-lab run … | head -1`) ends the process quietly, as it
    // does other command-line tools (exit 141 in a shell), instead of a print panicking: the
    // folds finished so far are already on disk (each is written before its line is printed).
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition at startup, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    output::note_closed_stdout();
    mnist_lab::alloc::keep_freed_memory();
    let cli = Cli::parse();
    let result = run(cli).and_then(|()| match output::failure() {
        // Everything else was done (results are in files); say that stdout lost lines.
        Some(e) => Err(anyhow::anyhow!(
            "could not write to stdout ({e}); results and models are in their files all the same"
        )),
        None => Ok(()),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::eprintln(&format!("error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let paths = Paths {
        data: cli.data_dir.clone(),
        results: cli.results.clone(),
    };
    if let Some(t) = cli.threads {
        check_workers("--threads", t, "threads in all")?;
        mnist_lab::model::par::set_budget(t);
    }
    match cli.command {
        Command::Data {
            action:
                DataAction::Fetch {
                    dataset,
                    dir,
                    from,
                    offline,
                },
        } => {
            check_dataset_name(&dataset)?;
            let dir = dir.unwrap_or_else(|| paths.dataset_dir(&dataset));
            let verified = fetch::fetch(&dir, &dataset, from.as_deref(), !offline)?;
            output::println(&verified.message(&dir));
        }
        Command::Data {
            action: DataAction::Verify { dataset },
        } => {
            check_dataset_name(&dataset)?;
            let dir = paths.dataset_dir(&dataset);
            output::println(&fetch::verify(&dir, &dataset)?.message(&dir));
        }
        Command::Check { files } => check::check(&files, &paths)?,
        Command::Run {
            args,
            from_plan,
            index,
            jobs,
            force,
        } => {
            // Checked here too: clap's `requires` between these two is not enforced when the
            // other run arguments are given (measured with clap 4.6).
            let args = match (from_plan, index) {
                (Some(file), Some(i)) => plan_line(&file, i)?,
                (None, Some(i)) => anyhow::bail!(
                    "--index {i} needs --from-plan FILE (it picks line {i} of that plan file)"
                ),
                (Some(file), None) => anyhow::bail!(
                    "--from-plan {} needs --index K (the 0-based line to run)",
                    file.display()
                ),
                (None, None) => args,
            };
            if args.files.is_empty() {
                anyhow::bail!("name at least one experiment file (or --from-plan FILE --index K)");
            }
            // Every variant: a search's state needs its other variants' results too.
            let only_exp = args.experiment.as_deref();
            if only_exp.is_some() {
                load_files(&args.files, only_exp)?;
            }
            let exps = load_files(&args.files, None)?;
            let only = (!args.fold.is_empty()).then_some(&args.fold[..]);
            let jobs = jobs.unwrap_or_else(mnist_lab::model::par::budget);
            check_workers("--jobs", jobs, "one fold per job")?;
            cv::run(&exps, &paths, only, only_exp, force, jobs)?;
        }
        Command::Bench {
            files,
            steps,
            workers,
        } => {
            let files = if files.is_empty() {
                ["baseline", "batchnorm", "deeper", "modern"]
                    .iter()
                    .map(|n| PathBuf::from(format!("experiments/{n}.toml")))
                    .collect()
            } else {
                files
            };
            let workers = workers.unwrap_or_else(cores);
            check_workers("--workers", workers, "models trained at once")?;
            if !(bench::MIN_STEPS..=bench::MAX_STEPS).contains(&steps) {
                anyhow::bail!(
                    "--steps {steps}: expected {}..={} training steps per model (fewer cannot be timed honestly)",
                    bench::MIN_STEPS,
                    bench::MAX_STEPS
                );
            }
            let exps = load_files(&files, None)?;
            output::print(&bench::run(&exps, &paths, steps, workers)?);
        }
        Command::Plan { files } => {
            for line in cv::plan::plan_lines(&load_files(&files, None)?, &paths)? {
                output::println(&line);
            }
        }
        Command::Final {
            files,
            marked,
            force,
            jobs,
        } => {
            let jobs = jobs.unwrap_or_else(mnist_lab::model::par::budget);
            check_workers("--jobs", jobs, "one model per job")?;
            let exps = load_files(&files, None)?;
            let chosen: Vec<_> = exps.iter().filter(|e| !marked || e.final_model).collect();
            if chosen.is_empty() {
                output::eprintln(&format!(
                    "final --marked: none of the {} experiments is marked `final = true`; no final model to train",
                    exps.len()
                ));
            }
            let mut said = std::collections::BTreeSet::new();
            let mut todo = Vec::new();
            for e in chosen {
                // Of a search, only its winner gets a final model.
                if let Some(g) = &e.search {
                    let winner =
                        mnist_lab::results::search::winner_on_disk(&paths.results, &g.name)?;
                    if said.insert(g.name.clone()) {
                        output::eprintln(&match &winner {
                            Some(w) => format!("{}: the final model of its winner, {w}", g.name),
                            None => format!(
                                "{}: no winner yet (run the search first); no final model",
                                g.name
                            ),
                        });
                    }
                    if winner.as_deref() != Some(e.name.as_str()) {
                        continue;
                    }
                }
                todo.push(e);
            }
            let failures = final_model::train_finals(&todo, &paths, force, jobs);
            if !failures.is_empty() {
                let lines: Vec<String> = failures
                    .iter()
                    .map(|(name, e)| format!("{name}: {e:#}"))
                    .collect();
                anyhow::bail!(
                    "{} of {} final model(s) failed:\n  {}",
                    failures.len(),
                    todo.len(),
                    lines.join("\n  ")
                );
            }
        }
        Command::Evaluate { models } => {
            for m in &final_model::evaluation_targets(&models)? {
                let score = final_model::evaluate(m, &paths.data)?;
                output::println(&format!(
                    "> {:.3}  ({}, test loss {:.4})",
                    score.accuracy * 100.0,
                    m.display(),
                    score.loss
                ));
            }
        }
        Command::Predict {
            model,
            images,
            top,
            json,
            save_preprocessed,
        } => predict::predict_files(&model, &images, top, json, save_preprocessed.as_deref())?,
        Command::Report { baseline } => {
            let exps = results::report::write_report(&paths.results, &paths.data, &baseline)?;
            output::println(&format!(
                "wrote {}/README.md ({} experiments)",
                paths.results.display(),
                exps.len()
            ));
        }
        Command::Diff {
            rev,
            fail_on_regression,
        } => {
            let (text, regressed) = results::diff::diff(&paths.results, &rev)?;
            output::print(&text);
            if regressed && fail_on_regression {
                anyhow::bail!("at least one experiment got significantly worse than at {rev}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definitions_are_consistent() {
        Cli::command().debug_assert();
        PlanLine::command().debug_assert();
    }
}
