//! `rmsprop`: RMSprop as Keras computes it (defaults lr 0.001, ρ 0.9, ε 1e-7, momentum 0):
//! v = ρ·v + (1 − ρ)·g²; Δ = lr·g/√(v + ε); w −= Δ, or with momentum, s = momentum·s + Δ and
//! w −= s. `weight_decay` as in `adam`.

use serde::{Deserialize, Serialize};

use super::{Optimizer, OptimizerKind};

/// RMSprop settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RmsPropSpec {
    /// Step size.
    pub learning_rate: f32,
    /// Decay of the squared gradient's running mean.
    pub rho: f32,
    /// Momentum of the steps (0: none).
    pub momentum: f32,
    /// Added to v under the root.
    pub epsilon: f32,
    /// Decoupled weight decay.
    #[serde(skip_serializing_if = "super::is_zero")]
    pub weight_decay: f32,
}

impl Default for RmsPropSpec {
    fn default() -> Self {
        RmsPropSpec {
            learning_rate: 0.001,
            rho: 0.9,
            momentum: 0.0,
            epsilon: 1e-7,
            weight_decay: 0.0,
        }
    }
}

impl OptimizerKind for RmsPropSpec {
    fn learning_rate(&self) -> f32 {
        self.learning_rate
    }

    fn learning_rate_mut(&mut self) -> &mut f32 {
        &mut self.learning_rate
    }

    fn momentum_mut(&mut self) -> Option<&mut f32> {
        Some(&mut self.momentum)
    }

    fn validate(&self) -> Result<(), String> {
        for (name, b) in [("rho", self.rho), ("momentum", self.momentum)] {
            if !(0.0..1.0).contains(&b) {
                return Err(format!("{name} is {b}, expected 0 <= {name} < 1"));
            }
        }
        if self.epsilon <= 0.0 {
            return Err(format!("epsilon is {}, expected > 0", self.epsilon));
        }
        super::check_decay(self.weight_decay)
    }

    fn describe(&self) -> String {
        let mut d = format!("RMSprop lr {} rho {}", self.learning_rate, self.rho);
        if self.momentum != 0.0 {
            d += &format!(" momentum {}", self.momentum);
        }
        d + &super::describe_decay(self.weight_decay)
    }

    fn build(&self) -> Box<dyn Optimizer> {
        Box::new(RmsProp {
            spec: self.clone(),
            v: Vec::new(),
            s: Vec::new(),
        })
    }
}

/// RMSprop's state: the running mean of g² and the momentum of each parameter.
pub struct RmsProp {
    spec: RmsPropSpec,
    v: Vec<Vec<f32>>,
    s: Vec<Vec<f32>>,
}

impl Optimizer for RmsProp {
    fn update(&mut self, index: usize, w: &mut [f32], g: &[f32], lr: f32) {
        let RmsPropSpec {
            rho,
            momentum,
            epsilon,
            weight_decay,
            ..
        } = self.spec;
        super::decay(w, weight_decay, lr);
        let v = super::slot(&mut self.v, index, w.len());
        if momentum == 0.0 {
            for ((w, v), g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
                *v = rho * *v + (1.0 - rho) * g * g;
                *w -= lr * g / (*v + epsilon).sqrt();
            }
            return;
        }
        let s = super::slot(&mut self.s, index, w.len());
        for (((w, v), s), g) in w.iter_mut().zip(v.iter_mut()).zip(s.iter_mut()).zip(g) {
            *v = rho * *v + (1.0 - rho) * g * g;
            *s = momentum * *s + lr * g / (*v + epsilon).sqrt();
            *w -= *s;
        }
    }
}
