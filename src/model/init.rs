//! Weight initializers (Keras' uniform variants).

use dfdx::prelude::Cpu;
use serde::{Deserialize, Serialize};

use super::Param;
use crate::rng::Rng;

/// Weight initializers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// U(±sqrt(6 / (fan_in + fan_out))), Keras' default.
    #[default]
    GlorotUniform,
    /// U(±sqrt(6 / fan_in)).
    HeUniform,
}

impl Init {
    /// The bound of the uniform distribution for a layer with these fans.
    pub fn limit(self, fan_in: usize, fan_out: usize) -> f32 {
        match self {
            Init::HeUniform => (6.0 / fan_in as f64).sqrt() as f32,
            Init::GlorotUniform => (6.0 / (fan_in + fan_out) as f64).sqrt() as f32,
        }
    }

    /// `n` weights of a layer with these fans, drawn from `rng`.
    pub fn weights(
        self,
        dev: &Cpu,
        n: usize,
        fan_in: usize,
        fan_out: usize,
        rng: &mut Rng,
    ) -> Param {
        Param::uniform(dev, n, self.limit(fan_in, fan_out), rng)
    }
}
