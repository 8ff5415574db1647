//! Scheduling: longest folds first, one fold per worker thread, and the cores of idle workers
//! handed to the folds still running.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::cache::trained_rows;
use super::fold::run_fold;
use super::lock::{fold_lock, FileLock};
use super::merge::merge;
use super::plan::FoldJob;
use crate::experiment::Experiment;
use crate::files::Paths;
use crate::progress::Progress;

/// Orders jobs longest first (stable, so each experiment's folds keep their order): the last
/// fold standing is then a short one, not a deep model's that leaves a core idle for minutes.
/// Measured on the seed's three models with 2 workers: 907 s in file order, 887 s sorted.
pub fn longest_first(jobs: &mut [FoldJob]) {
    jobs.sort_by(|a, b| b.cost.total_cmp(&a.cost));
}

/// Runs `jobs` on `workers` threads, at most one per job (each with single-threaded matrix
/// products, so a fold's numbers never depend on the worker count), each fold under its lock
/// (see [`super::lock`]): a fold another process is training is taken last, after waiting for
/// it, and skipped when that process cached it (unless `force`). Once no fold is waiting, the
/// running folds share the threads idle workers left (the process's `--threads` budget, one
/// per core by default). Returns the jobs that failed with their errors.
pub fn run_jobs(
    jobs: Vec<FoldJob>,
    workers: usize,
    paths: &Paths,
    progress: &Progress,
    planned: &[(&Experiment, Vec<FoldJob>)],
    force: bool,
) -> Vec<(FoldJob, anyhow::Error)> {
    // An experiment's merged files are refreshed as each of its folds lands, so results (and
    // the report) are usable long before a long `run` of many experiments ends.
    let merging = Mutex::new(());
    let queue = Mutex::new(std::collections::VecDeque::from(jobs));
    // Folds another process is training (their lock is held): taken last, waiting for the lock.
    let deferred = Mutex::new(std::collections::VecDeque::new());
    let failures = Mutex::new(Vec::new());
    // Folds run one per worker on one thread each; once no fold is waiting, a worker's fold
    // takes the cores that idle workers left (checked each epoch).
    let budget = crate::model::par::budget();
    let workers = workers.min(queue.lock().expect("queue").len()).max(1);
    let busy = AtomicUsize::new(0);
    let threads = || {
        if queue.lock().expect("queue").is_empty() {
            let busy = busy.load(Ordering::SeqCst).max(1);
            (budget / busy).max(1)
        } else {
            1
        }
    };
    let merge_now = |job: &FoldJob| {
        if let Some((exp, all)) = planned.iter().find(|(e, _)| e.name == job.exp.name) {
            let _guard = merging.lock().expect("merge lock");
            if let Err(e) = merge(exp, all, paths) {
                failures.lock().expect("failures").push((job.clone(), e));
            }
        }
    };
    // The next job with its fold's lock held: a free one first, then (blocking) the folds
    // another process held when they came up.
    let next = || -> Option<Result<(FoldJob, FileLock), (FoldJob, anyhow::Error)>> {
        loop {
            let job = queue.lock().expect("queue").pop_front();
            if let Some(job) = job {
                let path = fold_lock(&paths.exp_dir(&job.exp.name), job.fold);
                match FileLock::try_acquire(&path) {
                    Ok(Some(lock)) => return Some(Ok((job, lock))),
                    Ok(None) => deferred.lock().expect("deferred").push_back(job),
                    Err(e) => return Some(Err((job, e))),
                }
                continue;
            }
            let job = deferred.lock().expect("deferred").pop_front()?;
            let path = fold_lock(&paths.exp_dir(&job.exp.name), job.fold);
            progress.eprintln(&format!(
                "{} fold {}: another mnist-lab process is training it; waiting for its lock ({})",
                job.exp.name,
                job.fold,
                path.display()
            ));
            return Some(match FileLock::acquire(&path) {
                Ok(lock) => Ok((job, lock)),
                Err(e) => Err((job, e)),
            });
        }
    };
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                crate::model::par::set_threads(1);
                while let Some(next) = next() {
                    let (job, _lock) = match next {
                        Ok(j) => j,
                        Err(failed) => {
                            failures.lock().expect("failures").push(failed);
                            continue;
                        }
                    };
                    // Trained by another process since this run planned it.
                    let dir = paths.exp_dir(&job.exp.name);
                    let epochs = job.exp.train.epochs;
                    if !force && trained_rows(&dir, job.fold, &job.key, epochs).len() >= job.until {
                        progress.fold_done_elsewhere(job.cost);
                        merge_now(&job);
                        continue;
                    }
                    busy.fetch_add(1, Ordering::SeqCst);
                    let result = run_fold(&job, paths, progress, &threads);
                    busy.fetch_sub(1, Ordering::SeqCst);
                    match result {
                        Ok(out) => {
                            merge_now(&job);
                            let last = out
                                .rows
                                .last()
                                .map(|r| r.row.val_acc * 100.0)
                                .unwrap_or(f64::NAN);
                            progress.println(&format!(
                                "> {last:.3}  ({} fold {}/{}{}, {:.0} s, {:.0} samples/s)",
                                job.exp.name,
                                job.fold,
                                job.exp.cv.folds,
                                job.note,
                                out.seconds,
                                out.samples_per_sec
                            ));
                        }
                        Err(e) => failures.lock().expect("failures").push((job, e)),
                    }
                    progress.print_overall();
                }
            });
        }
    });
    failures.into_inner().expect("failures")
}
