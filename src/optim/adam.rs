//! `adam`: Adam as Keras computes it (defaults lr 0.001, β₁ 0.9, β₂ 0.999, ε 1e-7):
//! m += (g − m)(1 − β₁); v += (g² − v)(1 − β₂); w −= lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m/(√v + ε).
//! `weight_decay` (default 0) is Keras' decoupled decay, w −= w·wd·lr before the update.

use serde::{Deserialize, Serialize};

use super::{Optimizer, OptimizerKind};

/// Adam settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamSpec {
    /// Step size.
    pub learning_rate: f32,
    /// Decay of the gradient's running mean.
    pub beta_1: f32,
    /// Decay of the squared gradient's running mean.
    pub beta_2: f32,
    /// Added to √v.
    pub epsilon: f32,
    /// Decoupled weight decay.
    #[serde(skip_serializing_if = "super::is_zero")]
    pub weight_decay: f32,
}

impl Default for AdamSpec {
    fn default() -> Self {
        AdamSpec {
            learning_rate: 0.001,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
            weight_decay: 0.0,
        }
    }
}

impl AdamSpec {
    /// Checks the settings.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (name, b) in [("beta_1", self.beta_1), ("beta_2", self.beta_2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(format!("{name} is {b}, expected 0 <= {name} < 1"));
            }
        }
        if self.epsilon <= 0.0 {
            return Err(format!("epsilon is {}, expected > 0", self.epsilon));
        }
        super::check_decay(self.weight_decay)
    }

    /// The optimizer for these settings.
    pub(crate) fn optimizer(&self) -> Adam {
        Adam {
            spec: self.clone(),
            m: Vec::new(),
            v: Vec::new(),
            steps: Vec::new(),
        }
    }
}

impl OptimizerKind for AdamSpec {
    fn learning_rate(&self) -> f32 {
        self.learning_rate
    }

    fn learning_rate_mut(&mut self) -> &mut f32 {
        &mut self.learning_rate
    }

    fn validate(&self) -> Result<(), String> {
        self.check()
    }

    fn describe(&self) -> String {
        format!("Adam lr {}", self.learning_rate) + &super::describe_decay(self.weight_decay)
    }

    fn build(&self) -> Box<dyn Optimizer> {
        Box::new(self.optimizer())
    }
}

/// Adam's state: both running means and the step count of each parameter.
pub struct Adam {
    spec: AdamSpec,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    steps: Vec<u32>,
}

impl Optimizer for Adam {
    fn update(&mut self, index: usize, w: &mut [f32], g: &[f32], lr: f32) {
        let AdamSpec {
            beta_1: b1,
            beta_2: b2,
            epsilon: eps,
            weight_decay,
            ..
        } = self.spec;
        if self.steps.len() <= index {
            self.steps.resize(index + 1, 0);
        }
        self.steps[index] += 1;
        let t = self.steps[index] as f32;
        let alpha = lr * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t));
        super::decay(w, weight_decay, lr);
        let m = super::slot(&mut self.m, index, w.len());
        let v = super::slot(&mut self.v, index, w.len());
        for (((w, m), v), g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            *m += (g - *m) * (1.0 - b1);
            *v += (g * g - *v) * (1.0 - b2);
            *w -= alpha * *m / (v.sqrt() + eps);
        }
    }
}
