//! Scheduling: longest folds first, one fold per worker thread, and the cores of idle workers
//! handed to the folds still running.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::fold::run_fold;
use super::merge::merge;
use super::plan::FoldJob;
use crate::experiment::Experiment;
use crate::files::Paths;
use crate::model::gemm;
use crate::progress::Progress;

/// Orders jobs longest first (stable, so each experiment's folds keep their order): the last
/// fold standing is then a short one, not a deep model's that leaves a core idle for minutes.
/// Measured on the seed's three models with 2 workers: 907 s in file order, 887 s sorted.
pub fn longest_first(jobs: &mut [FoldJob]) {
    jobs.sort_by(|a, b| b.cost.total_cmp(&a.cost));
}

/// Runs `jobs` on `workers` threads (each with single-threaded matrix products, so a fold's
/// numbers never depend on the worker count). Returns the jobs that failed with their errors.
pub fn run_jobs(
    jobs: Vec<FoldJob>,
    workers: usize,
    paths: &Paths,
    progress: &Progress,
    planned: &[(&Experiment, Vec<FoldJob>)],
) -> Vec<(FoldJob, anyhow::Error)> {
    // An experiment's merged files are refreshed as each of its folds lands, so results (and
    // the report) are usable long before a long `run` of many experiments ends.
    let merging = Mutex::new(());
    let queue = Mutex::new(std::collections::VecDeque::from(jobs));
    let failures = Mutex::new(Vec::new());
    // Folds run one per worker on one thread each; once no fold is waiting, a worker's fold
    // takes the cores that idle workers left (checked each epoch).
    let workers = workers.max(1);
    let busy = AtomicUsize::new(0);
    let threads = || {
        if queue.lock().expect("queue").is_empty() {
            let busy = busy.load(Ordering::SeqCst).max(1);
            (workers / busy).max(1)
        } else {
            1
        }
    };
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                gemm::set_threads(1);
                loop {
                    let Some(job) = queue.lock().expect("queue").pop_front() else {
                        break;
                    };
                    busy.fetch_add(1, Ordering::SeqCst);
                    let result = run_fold(&job, paths, progress, &threads);
                    busy.fetch_sub(1, Ordering::SeqCst);
                    match result {
                        Ok(out) => {
                            if let Some((exp, all)) =
                                planned.iter().find(|(e, _)| e.name == job.exp.name)
                            {
                                let _guard = merging.lock().expect("merge lock");
                                if let Err(e) = merge(exp, all, paths) {
                                    failures.lock().expect("failures").push((job.clone(), e));
                                }
                            }
                            let last = out
                                .rows
                                .last()
                                .map(|r| r.row.val_acc * 100.0)
                                .unwrap_or(f64::NAN);
                            progress.println(&format!(
                                "> {last:.3}  ({} fold {}/{}, {:.0} s, {:.0} samples/s)",
                                job.exp.name,
                                job.fold,
                                job.exp.cv.folds,
                                out.seconds,
                                out.samples_per_sec
                            ));
                        }
                        Err(e) => failures.lock().expect("failures").push((job, e)),
                    }
                }
            });
        }
    });
    failures.into_inner().expect("failures")
}
