//! `sgd`: stochastic gradient descent with momentum, as Keras: v = m·v − lr·g; w += v, or with
//! `nesterov = true`, w += m·v − lr·g (the new v).

use serde::{Deserialize, Serialize};

use super::{Optimizer, OptimizerKind};

/// `[train.optimizer.sgd]` (or the flat `optimizer = "sgd"`, `learning_rate`, `momentum`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SgdSpec {
    /// Step size.
    pub learning_rate: f32,
    /// Momentum coefficient (0 for plain SGD).
    pub momentum: f32,
    /// Nesterov momentum (Keras' formulation).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub nesterov: bool,
    /// Decoupled weight decay: w −= w·weight_decay·lr before each update (Keras).
    #[serde(skip_serializing_if = "super::is_zero")]
    pub weight_decay: f32,
}

impl Default for SgdSpec {
    /// The seed tutorial's settings.
    fn default() -> Self {
        SgdSpec {
            learning_rate: 0.01,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

impl OptimizerKind for SgdSpec {
    fn learning_rate(&self) -> f32 {
        self.learning_rate
    }

    fn learning_rate_mut(&mut self) -> &mut f32 {
        &mut self.learning_rate
    }

    fn momentum_mut(&mut self) -> Option<&mut f32> {
        Some(&mut self.momentum)
    }

    fn flat(&self) -> Option<(f32, f32)> {
        (!self.nesterov && self.weight_decay == 0.0).then_some((self.learning_rate, self.momentum))
    }

    fn validate(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!(
                "momentum is {}, expected 0 <= momentum < 1",
                self.momentum
            ));
        }
        super::check_decay(self.weight_decay)
    }

    fn describe(&self) -> String {
        let mut d = format!("SGD lr {} momentum {}", self.learning_rate, self.momentum);
        if self.nesterov {
            d += " nesterov";
        }
        d + &super::describe_decay(self.weight_decay)
    }

    fn build(&self) -> Box<dyn Optimizer> {
        Box::new(Sgd {
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            velocity: Vec::new(),
        })
    }
}

/// SGD at work: one velocity buffer per parameter.
pub struct Sgd {
    momentum: f32,
    nesterov: bool,
    weight_decay: f32,
    velocity: Vec<Vec<f32>>,
}

impl Optimizer for Sgd {
    fn update(&mut self, index: usize, w: &mut [f32], g: &[f32], lr: f32) {
        if self.velocity.len() <= index {
            self.velocity.resize_with(index + 1, Vec::new);
        }
        let v = &mut self.velocity[index];
        if v.len() != w.len() {
            *v = vec![0.0; w.len()];
        }
        super::decay(w, self.weight_decay, lr);
        let m = self.momentum;
        if self.nesterov {
            for ((w, v), g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
                *v = m * *v - lr * g;
                *w += m * *v - lr * g;
            }
        } else {
            for ((w, v), g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
                *v = m * *v - lr * g;
                *w += *v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn momentum_steps_match_keras_update_rule() {
        // Keras SGD(learning_rate=0.1, momentum=0.9) on w = [1, -2] with the gradients
        // [0.5, 0.5] then [1, -1]: v1 = -0.1·g1 = [-0.05, -0.05], w1 = [0.95, -2.05];
        // v2 = 0.9·v1 - 0.1·g2 = [-0.145, 0.055], w2 = [0.805, -1.995].
        let mut opt = SgdSpec {
            learning_rate: 0.1,
            momentum: 0.9,
            ..SgdSpec::default()
        }
        .build();
        let mut w = vec![1.0f32, -2.0];
        opt.update(0, &mut w, &[0.5, 0.5], 0.1);
        assert_eq!(w, vec![0.95, -2.05]);
        opt.update(0, &mut w, &[1.0, -1.0], 0.1);
        assert!(
            (w[0] - 0.805).abs() < 1e-6 && (w[1] + 1.995).abs() < 1e-6,
            "{w:?}"
        );
        // A second parameter has state of its own.
        let mut u = vec![0.0f32];
        opt.update(1, &mut u, &[1.0], 0.1);
        assert_eq!(u, vec![-0.1]);
    }
}
