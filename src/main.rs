//! The `mnist-lab` command line: parsing only; each subcommand calls one library function.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use mnist_lab::cv::{self, Paths};
use mnist_lab::data::mnist;
use mnist_lab::experiment;

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
        /// Experiment files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Run only these folds (1-based; repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        fold: Vec<usize>,
        /// Worker threads, one fold each (default: number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Re-run folds even when their cached results match.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum DataAction {
    /// Put the four IDX files in DIR/<dataset> and verify their sha256.
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

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let paths = Paths {
        data: cli.data_dir.clone(),
        results: cli.results.clone(),
    };
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
            let dir = dir.unwrap_or_else(|| mnist::dataset_dir(&paths.data, &dataset));
            mnist::fetch(&dir, &dataset, from.as_deref(), !offline)?;
            println!("{}: verified", dir.display());
        }
        Command::Data {
            action: DataAction::Verify { dataset },
        } => {
            let dir = mnist::dataset_dir(&paths.data, &dataset);
            mnist::verify(&dir, &dataset)?;
            println!("{}: verified", dir.display());
        }
        Command::Check { files } => {
            let mut failed = 0;
            for f in &files {
                match experiment::load(f).and_then(|e| Ok((e.summary()?, e))) {
                    Ok((rows, e)) => {
                        println!("{}: {}", f.display(), e.description);
                        println!(
                            "  {:<4} {:<20} {:<16} {:>10}",
                            "#", "layer", "output shape", "params"
                        );
                        for (i, r) in rows.iter().enumerate() {
                            println!("  {i:<4} {r}");
                        }
                        let total: usize = rows.iter().map(|r| r.params).sum();
                        println!("  total params: {total}");
                    }
                    Err(err) => {
                        eprintln!("error: {err:#}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} experiment files are invalid", files.len());
            }
        }
        Command::Run {
            files,
            fold,
            jobs,
            force,
        } => {
            let exps = files
                .iter()
                .map(|f| experiment::load(f))
                .collect::<Result<Vec<_>>>()?;
            let only = (!fold.is_empty()).then_some(&fold[..]);
            cv::run(&exps, &paths, only, force, jobs.unwrap_or_else(cores))?;
        }
    }
    Ok(())
}
