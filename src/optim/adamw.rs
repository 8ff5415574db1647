//! `adamw`: Adam with decoupled weight decay, Keras' AdamW (weight_decay default 0.004): the
//! same update as `adam` (see there), with w −= w·wd·lr before each step.

use serde::{Deserialize, Serialize};

use super::adam::AdamSpec;
use super::{Optimizer, OptimizerKind};

/// AdamW settings: Adam's, with a weight decay of 0.004 unless set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWSpec {
    /// Step size.
    pub learning_rate: f32,
    /// Decay of the gradient's running mean.
    pub beta_1: f32,
    /// Decay of the squared gradient's running mean.
    pub beta_2: f32,
    /// Added to √v.
    pub epsilon: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
}

impl Default for AdamWSpec {
    fn default() -> Self {
        let a = AdamSpec::default();
        AdamWSpec {
            learning_rate: a.learning_rate,
            beta_1: a.beta_1,
            beta_2: a.beta_2,
            epsilon: a.epsilon,
            weight_decay: 0.004,
        }
    }
}

impl AdamWSpec {
    fn adam(&self) -> AdamSpec {
        AdamSpec {
            learning_rate: self.learning_rate,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
        }
    }
}

impl OptimizerKind for AdamWSpec {
    fn learning_rate(&self) -> f32 {
        self.learning_rate
    }

    fn learning_rate_mut(&mut self) -> &mut f32 {
        &mut self.learning_rate
    }

    fn validate(&self) -> Result<(), String> {
        self.adam().check()
    }

    fn describe(&self) -> String {
        format!(
            "AdamW lr {} weight decay {}",
            self.learning_rate, self.weight_decay
        )
    }

    fn build(&self) -> Box<dyn Optimizer> {
        Box::new(self.adam().optimizer())
    }
}
