//! `step`: the rate times `factor` every `every` epochs, held within each epoch (Keras'
//! ExponentialDecay with staircase = true and decay_steps = every epochs).

use serde::{Deserialize, Serialize};

use super::{Progress, ScheduleKind};

/// Step decay settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StepSpec {
    /// Epochs between drops.
    pub every: usize,
    /// Multiplies the rate at each drop.
    pub factor: f64,
}

impl Default for StepSpec {
    fn default() -> Self {
        StepSpec {
            every: 1,
            factor: 0.5,
        }
    }
}

impl ScheduleKind for StepSpec {
    fn rate(&self, base: f64, at: Progress) -> f64 {
        let epoch = at.step / at.steps_per_epoch.max(1);
        base * self.factor.powi((epoch / self.every) as i32)
    }

    fn validate(&self) -> Result<(), String> {
        if self.every == 0 {
            return Err("every is 0, expected at least 1 epoch".into());
        }
        if !(self.factor > 0.0 && self.factor <= 1.0) {
            return Err(format!("factor is {}, expected 0 < factor <= 1", self.factor));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("×{} every {} epochs", self.factor, self.every)
    }
}
