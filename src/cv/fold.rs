//! Training one fold and writing its files.

use std::time::Instant;

use anyhow::Result;

use super::cache::{fold_file, remove_partial, write_fold, write_partial};
use super::plan::FoldJob;
use crate::checkpoint;
use crate::data::prep::Scaler;
use crate::data::transform::pipeline;
use crate::files::Paths;
use crate::model::Network;
use crate::optim::Optimizer;
use crate::progress::Progress;
use crate::results::csv::HistoryRow;
use crate::rng::{Run, Streams};
use crate::train::{train_with, EpochRow, Event, Stretch, TrainData};

/// Result of one trained fold.
pub struct FoldOutcome {
    /// Its history rows.
    pub rows: Vec<HistoryRow>,
    /// Wall seconds of the whole fold.
    pub seconds: f64,
    /// Training samples per second (validation excluded).
    pub samples_per_sec: f64,
}

/// Trains one fold and writes its files.
///
/// `threads` is asked at each epoch's start how many threads the matrix products may use
/// (results do not depend on it: the GEMM's arithmetic is the same for any thread count).
pub fn run_fold(
    job: &FoldJob,
    paths: &Paths,
    progress: &Progress,
    threads: &(dyn Fn() -> usize + Sync),
) -> Result<FoldOutcome> {
    let exp = &job.exp;
    let f0 = job.fold - 1;
    let train_idx = job.split.train(f0);
    let val_idx = &job.split.test[f0];
    let scaler = Scaler::fit(exp.data.scaling, &job.data, &train_idx);
    let streams = Streams::new(exp.train.seed, Run::Fold(job.fold));
    let mut net = Network::build(&exp.model.layers, &job.data.info, &mut streams.init())?;
    let dir = paths.exp_dir(&exp.name);
    let ckpt = fold_file(&dir, job.fold, "ckpt");
    let mut from = checkpoint::load(&ckpt, &job.key, &mut net)?;
    if from.as_ref().is_some_and(|r| r.rows.len() > job.until) {
        // Saved beyond this stretch's end: train it from the first epoch instead.
        from = None;
        net = Network::build(&exp.model.layers, &job.data.info, &mut streams.init())?;
    }
    let resumed = from.as_ref().map_or(0, |r| r.rows.len());
    if resumed > 0 {
        progress.eprintln(&format!(
            "{} fold {}: going on after epoch {resumed} of {}, from {}",
            exp.name,
            job.fold,
            exp.train.epochs,
            ckpt.display()
        ));
    }
    let mut task = progress.task_with_cost(
        format!(
            "{} fold {}/{}{}",
            exp.name, job.fold, exp.cv.folds, job.note
        ),
        exp.train.epochs,
        job.cost,
    );
    let batches = train_idx.len().div_ceil(exp.train.batch_size);
    let mut train_secs = 0.0;
    let mut epoch_start = Instant::now();
    // Saved after every epoch but the last (the fold's files then hold the result).
    let stretch = Stretch {
        from,
        until: job.until,
        save: Box::new(
            |net: &mut Network, opt: &dyn Optimizer, rows: &[EpochRow]| {
                if rows.len() < exp.train.epochs {
                    checkpoint::save(&ckpt, &job.key, net, opt, rows)?;
                }
                Ok(())
            },
        ),
    };
    let history = train_with(
        &mut net,
        exp,
        &TrainData {
            ds: &job.data,
            scaler: &scaler,
            train: &train_idx,
            val: val_idx,
        },
        &pipeline(&exp.data.augment),
        &streams,
        stretch,
        &mut |e| {
            match &e {
                Event::EpochStart { .. } => {
                    crate::model::par::set_threads(threads());
                    epoch_start = Instant::now();
                }
                Event::Batch { done, .. } if *done == batches => {
                    train_secs += epoch_start.elapsed().as_secs_f64();
                }
                _ => {}
            }
            task.event(e)
        },
    );
    let seconds = task.elapsed().as_secs_f64();
    task.finish(history.is_ok());
    let history = history?;
    let rows: Vec<HistoryRow> = history
        .into_iter()
        .map(|row| HistoryRow {
            fold: job.fold,
            row,
        })
        .collect();
    let trained = job.until - resumed;
    let samples_per_sec = (train_idx.len() * trained) as f64 / train_secs.max(1e-9);
    if job.until < exp.train.epochs {
        // Paused by a search: the rows so far, and the checkpoint to go on from.
        write_partial(&dir, job.fold, &rows, &job.key)?;
    } else {
        write_fold(&dir, job.fold, &rows, seconds, samples_per_sec, &job.key)?;
        // The fold is done: its checkpoint and partial rows have served.
        remove_partial(&dir, job.fold)?;
        if let Err(e) = crate::files::remove_if_present(&ckpt) {
            progress.eprintln(&format!("warning: {e}"));
        }
    }
    Ok(FoldOutcome {
        rows,
        seconds,
        samples_per_sec,
    })
}
