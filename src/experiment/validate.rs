//! Checking a resolved experiment: its settings on their own, and its network against a
//! dataset's image shape, classes and the size limits.

use anyhow::{bail, Result};

use super::Experiment;
use crate::data::DatasetInfo;
use crate::model::{limits, step_bytes, summarize, LayerSummary, EVAL_BATCH};

/// The most epochs an experiment may train (a history row each; 10,000 epochs of MNIST would
/// take weeks of the seed's model).
pub const MAX_EPOCHS: usize = 10_000;

impl Experiment {
    /// Checks the network against the dataset's image shape and classes: every layer's output
    /// shape and parameter count, or which layer cannot take its input and why.
    ///
    /// Also refuses what could not fit in memory (see [`crate::model::limits`]): the estimate
    /// of one training step at `train.batch_size` and the layer that holds the most.
    pub fn network(&self, info: &DatasetInfo) -> Result<Vec<LayerSummary>> {
        let rows = summarize(&self.model.layers, info).map_err(|e| {
            anyhow::anyhow!(
                "{}{e:#} (dataset {:?}, images {})",
                self.origin(),
                self.data.dataset,
                info.image
            )
        })?;
        let batch = self.train.batch_size;
        let (bytes, largest) = step_bytes(&rows, batch, EVAL_BATCH);
        if bytes > limits::STEP_BYTES {
            bail!(
                "{}a training step needs about {:.1} GB (batch {batch}; most per image in model.layers[{largest}] ({}), output {}), above the limit of {:.1} GB; lower train.batch_size or the layer sizes",
                self.origin(),
                bytes / 1e9,
                self.model.layers[largest].key(),
                rows[largest].output,
                limits::STEP_BYTES / 1e9
            );
        }
        Ok(rows)
    }

    /// How many of `available` training images it uses: the first `data.limit`, or all. A limit
    /// above what the dataset has is a warning (on stderr), not silently clamped.
    pub fn images_used(&self, available: usize) -> usize {
        match self.data.limit {
            Some(l) if l > available => {
                crate::output::eprintln(&format!(
                    "warning: {}data.limit is {l}, but dataset {:?} has {available} training images; using all {available}",
                    self.origin(),
                    self.data.dataset
                ));
                available
            }
            Some(l) => l,
            None => available,
        }
    }

    /// Checks every setting outside the layer list.
    pub(super) fn validate_settings(&self) -> Result<()> {
        let t = &self.train;
        if t.epochs == 0 || t.epochs > MAX_EPOCHS {
            bail!("train.epochs is {}, expected 1..={MAX_EPOCHS}", t.epochs);
        }
        if t.batch_size == 0 {
            bail!("train.batch_size is 0, expected at least 1");
        }
        let opt = t.optimizer.spec();
        let lr = opt.learning_rate();
        if !(lr > 0.0 && lr.is_finite()) {
            bail!("train.learning_rate is {lr}, expected a positive number");
        }
        opt.validate()
            .map_err(|e| anyhow::anyhow!("train.optimizer.{}: {e}", t.optimizer.key()))?;
        if let Some(s) = &t.schedule {
            let key = s.key();
            s.spec()
                .validate()
                .and_then(|()| s.spec().validate_for(t.epochs))
                .map_err(|e| anyhow::anyhow!("train.schedule.{key}: {e}"))?;
        }
        if !(0.0..1.0).contains(&t.label_smoothing) {
            bail!(
                "train.label_smoothing is {}, expected 0 <= label_smoothing < 1",
                t.label_smoothing
            );
        }
        if self.cv.folds < 2 {
            bail!("cv.folds is {}, expected at least 2", self.cv.folds);
        }
        if let Some(limit) = self.data.limit {
            if limit < self.cv.folds {
                bail!(
                    "data.limit is {limit}, expected at least cv.folds ({})",
                    self.cv.folds
                );
            }
        }
        for (key, spec) in self.data.augment.specs() {
            spec.validate()
                .map_err(|e| anyhow::anyhow!("data.augment.{key}: {e}"))?;
        }
        crate::data::catalog::check_name(&self.data.dataset)
            .map_err(|e| anyhow::anyhow!("data.dataset: {e}"))?;
        Ok(())
    }
}
