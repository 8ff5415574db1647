//! `exponential`: the rate times `rate` per epoch, decayed smoothly batch by batch: base ·
//! rate^(step / batches per epoch) (Keras' ExponentialDecay with decay_steps = one epoch).

use serde::{Deserialize, Serialize};

use super::{Progress, ScheduleKind};

/// Exponential decay settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExponentialSpec {
    /// Factor per epoch.
    pub rate: f64,
}

impl Default for ExponentialSpec {
    fn default() -> Self {
        ExponentialSpec { rate: 0.9 }
    }
}

impl ScheduleKind for ExponentialSpec {
    fn rate(&self, base: f64, at: Progress) -> f64 {
        base * self
            .rate
            .powf(at.step as f64 / at.steps_per_epoch.max(1) as f64)
    }

    fn validate(&self) -> Result<(), String> {
        if !(self.rate > 0.0 && self.rate <= 1.0) {
            return Err(format!("rate is {}, expected 0 < rate <= 1", self.rate));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("×{} per epoch", self.rate)
    }
}
