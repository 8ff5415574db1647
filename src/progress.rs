//! Progress display: indicatif bars on a terminal, plain lines otherwise.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::train::{EpochRow, Event};

/// Shared progress display for all running folds.
#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
    terminal: bool,
    /// Terminal columns when the display started (bars are laid out to fit them).
    width: usize,
    overall: Option<Arc<Overall>>,
}

/// The whole run: folds done of all folds, and the time left estimated from the folds' costs
/// (the work done so far, finished folds and the finished part of running ones, took the time
/// elapsed; the rest is expected at the same rate).
struct Overall {
    bar: ProgressBar,
    folds: usize,
    cost: f64,
    started: Instant,
    state: Mutex<OverallState>,
}

#[derive(Default)]
struct OverallState {
    folds_done: usize,
    folds_failed: usize,
    cost_done: f64,
    /// Cost of the folds that failed: no longer expected, and not work done either.
    cost_dropped: f64,
    /// Cost done so far by each running task.
    running: BTreeMap<u64, f64>,
}

/// "1h 05m", "12m 30s", "45s".
fn duration_text(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

impl Overall {
    /// "3/25 folds done, 12m 30s elapsed, about 1h 05m left".
    fn line(&self, st: &OverallState) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let done = st.cost_done + st.running.values().sum::<f64>();
        let ended = st.folds_done + st.folds_failed;
        let expected = self.cost - st.cost_dropped;
        let left = if done > 0.0 && expected > done && ended < self.folds {
            format!(
                ", about {} left",
                duration_text(elapsed * (expected - done) / done)
            )
        } else {
            String::new()
        };
        let failed = match st.folds_failed {
            0 => String::new(),
            n => format!(" ({n} failed)"),
        };
        format!(
            "{}/{} folds done{failed}, {} elapsed{left}",
            st.folds_done,
            self.folds,
            duration_text(elapsed)
        )
    }
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
            width: console::Term::stderr().size().1 as usize,
            overall: None,
        }
    }

    /// Adds the line of the whole run: `folds` folds whose relative costs add up to `cost`
    /// (a bar below the folds' bars on a terminal; a line after each fold otherwise).
    pub fn with_overall(mut self, folds: usize, cost: f64) -> Self {
        let bar = self.multi.add(ProgressBar::new(folds as u64));
        bar.set_style(ProgressStyle::with_template("{msg}").expect("static template"));
        let overall = Overall {
            bar,
            folds,
            cost,
            started: Instant::now(),
            state: Mutex::new(OverallState::default()),
        };
        overall
            .bar
            .set_message(format!("all: {}", overall.line(&OverallState::default())));
        self.overall = Some(Arc::new(overall));
        self
    }

    /// Records how far task `id` is: `Some(done)` of its cost while it runs, or `None` once
    /// it ended (`trained` or failed: a failed fold's cost is no longer expected either).
    /// Redraws the overall line, or prints it after each fold when there are no bars.
    fn update_overall(&self, id: u64, cost: f64, running: Option<f64>, trained: bool) {
        let Some(o) = &self.overall else { return };
        let line = {
            let mut st = o.state.lock().expect("progress state");
            match running {
                Some(done) => {
                    st.running.insert(id, done);
                }
                None => {
                    st.running.remove(&id);
                    if trained {
                        st.folds_done += 1;
                        st.cost_done += cost;
                    } else {
                        st.folds_failed += 1;
                        st.cost_dropped += cost;
                    }
                }
            }
            o.line(&st)
        };
        if self.terminal {
            o.bar.set_message(format!("all: {line}"));
        }
    }

    /// Prints the overall line when there are no bars (after each fold's result line).
    pub fn print_overall(&self) {
        if let (Some(o), false) = (&self.overall, self.terminal) {
            let line = o.line(&o.state.lock().expect("progress state"));
            self.eprintln(&format!("all: {line}"));
        }
    }

    /// Counts a fold of cost `cost` as done without training it here (another process did).
    pub fn fold_done_elsewhere(&self, cost: f64) {
        static ELSEWHERE: AtomicU64 = AtomicU64::new(u64::MAX / 2);
        self.update_overall(ELSEWHERE.fetch_add(1, Ordering::Relaxed), cost, None, true);
    }

    /// Removes the overall line.
    pub fn finish(&self) {
        if let Some(o) = &self.overall {
            o.bar.finish_and_clear();
            self.multi.remove(&o.bar);
        }
    }

    /// Prints a line to stdout without tearing the bars.
    pub fn println(&self, line: &str) {
        self.multi.suspend(|| crate::output::println(line));
    }

    /// Prints a line to stderr without tearing the bars.
    pub fn eprintln(&self, line: &str) {
        self.multi.suspend(|| crate::output::eprintln(line));
    }

    /// A tracker for one training run (`label` such as "baseline fold 2/5").
    pub fn task(&self, label: String, epochs: usize) -> Task {
        self.task_with_cost(label, epochs, 0.0)
    }

    /// A tracker for one fold of relative cost `cost` (counted in the overall line).
    pub fn task_with_cost(&self, label: String, epochs: usize, cost: f64) -> Task {
        let bar = match &self.overall {
            // The folds' bars above the overall line.
            Some(o) => self.multi.insert_before(&o.bar, ProgressBar::new(0)),
            None => self.multi.add(ProgressBar::new(0)),
        };
        // Fitted to the terminal: names and messages are cut, not wrapped, and the bar takes
        // what is left (`wide_bar`); a narrow terminal drops the words around the counts.
        let template = if self.width >= 100 {
            "{prefix:28!} {msg:30!} [{wide_bar:.cyan/blue}] {pos:>5}/{len} batches, ETA {eta:4}"
        } else {
            "{prefix:20!} {msg:14!} {wide_bar:.cyan/blue} {pos:>5}/{len} {eta:4}"
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.clone());
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Task {
            bar,
            label,
            epochs,
            progress: self.clone(),
            started: Instant::now(),
            epoch_started: Instant::now(),
            epoch: 0,
            samples: 0,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            cost,
            batches: 1,
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
    id: u64,
    cost: f64,
    batches: usize,
}

impl Task {
    /// Feeds one training event.
    pub fn event(&mut self, e: Event) {
        match e {
            Event::EpochStart { epoch, batches } => {
                self.epoch = epoch;
                self.batches = batches.max(1);
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
                    let part = (self.epoch - 1) as f64 + done as f64 / self.batches as f64;
                    let cost_done = self.cost * part / self.epochs.max(1) as f64;
                    self.progress
                        .update_overall(self.id, self.cost, Some(cost_done), false);
                    let rate =
                        samples as f64 / self.epoch_started.elapsed().as_secs_f64().max(1e-9);
                    self.bar.set_message(format!(
                        "epoch {}/{} {rate:.0} samples/s",
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

    /// Removes the bar; counts the fold in the overall line as trained or (not `trained`)
    /// failed.
    pub fn finish(self, trained: bool) {
        self.bar.finish_and_clear();
        self.progress.multi.remove(&self.bar);
        self.progress
            .update_overall(self.id, self.cost, None, trained);
    }
}
