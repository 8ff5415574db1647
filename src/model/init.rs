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

#[cfg(test)]
mod tests {
    use crate::experiment::Experiment;
    use crate::model::Network;
    use crate::rng::Rng;

    #[test]
    fn layers_draw_their_weights_within_keras_limits_of_their_fans() {
        // Keras' limits, with its fans: a Conv2D kernel (kh, kw, in, out) has fan_in
        // kh·kw·in and fan_out kh·kw·out; a Dense kernel (in, out) fan_in in, fan_out out.
        // he_uniform: sqrt(6 / fan_in); glorot_uniform: sqrt(6 / (fan_in + fan_out)).
        let exp = Experiment::from_resolved_toml(
            "init",
            r#"
[[model.layers]]
conv = { filters = 32, kernel = 3, init = "he_uniform" }
[[model.layers]]
conv = { filters = 16, kernel = 5 }
[[model.layers]]
maxpool = 2
[[model.layers]]
flatten = true
[[model.layers]]
dense = { units = 64, init = "he_uniform" }
[[model.layers]]
dense = { units = 10, activation = "softmax" }
"#,
        )
        .unwrap();
        let info = crate::data::dataset::info(std::path::Path::new(""), "mnist").unwrap();
        let mut net = Network::build(&exp.model.layers, &info, &mut Rng::new(1, 0)).unwrap();
        let limits = [
            ("layers.0.weight", 0.816_496_6), // sqrt(6 / 9)
            ("layers.1.weight", 0.070_710_7), // sqrt(6 / (800 + 400))
            ("layers.4.weight", 0.055_669_7), // sqrt(6 / 1936)
            ("layers.5.weight", 0.284_747_3), // sqrt(6 / (64 + 10))
        ];
        let mut seen = 0;
        for a in net.arrays() {
            let key = a.key();
            if a.name == "bias" {
                assert!(
                    a.values.iter().all(|&b| b == 0.0),
                    "{key}: biases start at 0"
                );
                continue;
            }
            let (_, limit) = limits.iter().find(|(k, _)| *k == key).unwrap();
            let max = a.values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let mean = a.values.iter().map(|v| v.abs()).sum::<f32>() / a.values.len() as f32;
            assert!(
                max <= *limit && max > 0.97 * limit,
                "{key}: max {max}, limit {limit}"
            );
            assert!(
                (mean / limit - 0.5).abs() < 0.05,
                "{key}: mean |w| {mean}, limit {limit}"
            );
            seen += 1;
        }
        assert_eq!(seen, 4);
    }
}
