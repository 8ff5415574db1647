//! Progress display: indicatif bars on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::train::{EpochRow, Event};

/// Shared progress display for all running folds.
#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
    terminal: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Bars when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        let terminal = std::io::stderr().is_terminal();
        let target = if terminal {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Progress {
            multi: MultiProgress::with_draw_target(target),
            terminal,
        }
    }

    /// Prints a line to stdout without tearing the bars.
    pub fn println(&self, line: &str) {
        self.multi.suspend(|| println!("{line}"));
    }

    /// Prints a line to stderr without tearing the bars.
    pub fn eprintln(&self, line: &str) {
        self.multi.suspend(|| eprintln!("{line}"));
    }

    /// A tracker for one training run (`label` such as "baseline fold 2/5").
    pub fn task(&self, label: String, epochs: usize) -> Task {
        let bar = self.multi.add(ProgressBar::new(0));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:<28} {msg:<32} [{bar:30.cyan/blue}] {pos:>5}/{len:5} batches ETA {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.clone());
        Task {
            bar,
            label,
            epochs,
            progress: self.clone(),
            started: Instant::now(),
            epoch_started: Instant::now(),
            epoch: 0,
            samples: 0,
        }
    }
}

/// Progress of one training run.
pub struct Task {
    bar: ProgressBar,
    label: String,
    epochs: usize,
    progress: Progress,
    started: Instant,
    epoch_started: Instant,
    epoch: usize,
    samples: usize,
}

impl Task {
    /// Feeds one training event.
    pub fn event(&mut self, e: Event) {
        match e {
            Event::EpochStart { epoch, batches } => {
                self.epoch = epoch;
                self.epoch_started = Instant::now();
                self.samples = 0;
                self.bar.set_length(batches as u64);
                self.bar.set_position(0);
                self.bar.reset_eta();
                self.bar
                    .set_message(format!("epoch {epoch}/{}", self.epochs));
            }
            Event::Batch { done, samples } => {
                self.samples = samples;
                self.bar.set_position(done as u64);
                if done % 25 == 0 {
                    let rate =
                        samples as f64 / self.epoch_started.elapsed().as_secs_f64().max(1e-9);
                    self.bar.set_message(format!(
                        "epoch {}/{} {rate:>7.0} samples/s",
                        self.epoch, self.epochs
                    ));
                }
            }
            Event::EpochEnd(row) => {
                if !self.progress.terminal {
                    self.progress.eprintln(&self.epoch_line(row));
                }
            }
        }
    }

    fn epoch_line(&self, r: &EpochRow) -> String {
        let secs = self.epoch_started.elapsed().as_secs_f64();
        let mut line = format!(
            "{} epoch {}/{}: loss {:.4} acc {:.3}",
            self.label,
            r.epoch,
            self.epochs,
            r.train_loss,
            r.train_acc * 100.0
        );
        if !r.val_acc.is_nan() {
            line += &format!(
                " val_loss {:.4} val_acc {:.3}",
                r.val_loss,
                r.val_acc * 100.0
            );
        }
        line + &format!(
            " ({secs:.1} s, {:.0} samples/s)",
            self.samples as f64 / secs.max(1e-9)
        )
    }

    /// Time since the task started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Removes the bar.
    pub fn finish(self) {
        self.bar.finish_and_clear();
        self.progress.multi.remove(&self.bar);
    }
}
