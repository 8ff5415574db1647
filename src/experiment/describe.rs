//! How an experiment introduces itself: where it came from (for messages) and how it trains,
//! in a few words (for `check` and the report).

use super::Experiment;

impl Experiment {
    /// Where this experiment came from, to start an error message: `path: ` (and `variant
    /// NAME: ` for a sweep variant).
    pub(super) fn origin(&self) -> String {
        if self.source.as_os_str().is_empty() {
            return String::new();
        }
        let stem = self.source.file_stem().and_then(|s| s.to_str());
        if stem == Some(self.name.as_str()) {
            format!("{}: ", self.source.display())
        } else {
            format!("{}: variant {}: ", self.source.display(), self.name)
        }
    }

    /// Where it came from, for messages: the file, and the variant for a sweep variant.
    pub(super) fn origin_or_path(&self) -> String {
        let o = self.origin();
        o.strip_suffix(": ").unwrap_or(&o).to_string()
    }

    /// How it trains, in a few words per line: epochs, batch, optimizer, schedule, label
    /// smoothing, then the augmentation (if any).
    pub fn describe_training(&self) -> Vec<String> {
        let t = &self.train;
        let mut lines = vec![format!(
            "train: {} epochs, batch {}, {}{}",
            t.epochs,
            t.batch_size,
            t.optimizer.spec().describe(),
            self.describe_schedule_and_loss()
        )];
        let augment = self.describe_augment();
        if !augment.is_empty() {
            lines.push(format!("augment: {}", augment.join("; ")));
        }
        lines
    }

    /// ", <schedule> schedule, label smoothing ε" for what is set, else nothing.
    pub fn describe_schedule_and_loss(&self) -> String {
        let t = &self.train;
        let mut s = String::new();
        if let Some(schedule) = &t.schedule {
            s += &format!(", {} schedule", schedule.spec().describe());
        }
        if t.label_smoothing != 0.0 {
            s += &format!(", label smoothing {}", t.label_smoothing);
        }
        s
    }

    /// A few words for each `[data.augment]` transform, in the order they run.
    pub fn describe_augment(&self) -> Vec<String> {
        self.data
            .augment
            .specs()
            .iter()
            .map(|(_, s)| s.describe())
            .collect()
    }
}
