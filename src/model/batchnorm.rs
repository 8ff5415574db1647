//! Batch normalization over the channel (last) axis, Keras semantics: batch statistics (biased
//! variance) while training, running statistics r = m·r + (1 − m)·batch in evaluation.

use dfdx::prelude::*;

use super::{data_of, put_grad, take_grad, Act, Param};

/// A batch-normalization layer.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// Channels normalized separately (the input's last axis).
    pub channels: usize,
    /// Running-statistics momentum.
    pub momentum: f32,
    /// Added to the variance.
    pub epsilon: f32,
    /// Scale, starts at 1.
    pub gamma: Param,
    /// Shift, starts at 0.
    pub beta: Param,
    /// Running mean (not trained; used in evaluation).
    pub running_mean: Vec<f32>,
    /// Running variance (not trained; used in evaluation).
    pub running_var: Vec<f32>,
}

impl BatchNorm {
    /// A fresh layer over `channels` channels.
    pub fn new(dev: &Cpu, channels: usize, momentum: f32, epsilon: f32) -> Self {
        BatchNorm {
            channels,
            momentum,
            epsilon,
            gamma: Param::new(dev, vec![1.0; channels]),
            beta: Param::new(dev, vec![0.0; channels]),
            running_mean: vec![0.0; channels],
            running_var: vec![1.0; channels],
        }
    }

    /// Normalizes `x`; in training also updates the running statistics.
    pub fn forward<T: Tape<f32, Cpu> + 'static>(&mut self, x: Act<T>, training: bool) -> Act<T> {
        let (x, mut tape) = x.split_tape();
        let (batch, feats) = *x.shape();
        let c = self.channels;
        let mut v = data_of(&x);
        let n = (batch * feats / c) as f32;
        let (mean, var) = if training {
            let mut mean = vec![0.0f64; c];
            for row in v.chunks_exact(c) {
                for (m, x) in mean.iter_mut().zip(row) {
                    *m += *x as f64;
                }
            }
            let mean: Vec<f32> = mean.iter().map(|m| (m / n as f64) as f32).collect();
            let mut var = vec![0.0f64; c];
            for row in v.chunks_exact(c) {
                for ((s, x), m) in var.iter_mut().zip(row).zip(&mean) {
                    *s += ((x - m) as f64).powi(2);
                }
            }
            let var: Vec<f32> = var.iter().map(|s| (s / n as f64) as f32).collect();
            let m = self.momentum;
            for i in 0..c {
                self.running_mean[i] = m * self.running_mean[i] + (1.0 - m) * mean[i];
                self.running_var[i] = m * self.running_var[i] + (1.0 - m) * var[i];
            }
            (mean, var)
        } else {
            (self.running_mean.clone(), self.running_var.clone())
        };
        let inv: Vec<f32> = var
            .iter()
            .map(|v| 1.0 / (v + self.epsilon).sqrt())
            .collect();
        // v becomes x̂ = (x − mean)·inv, then y = γ·x̂ + β.
        for row in v.chunks_exact_mut(c) {
            for i in 0..c {
                row[i] = (row[i] - mean[i]) * inv[i];
            }
        }
        let mut y = v.clone();
        let (gamma, beta) = (&self.gamma.value, &self.beta.value);
        for row in y.chunks_exact_mut(c) {
            for i in 0..c {
                row[i] = gamma[i] * row[i] + beta[i];
            }
        }
        let out_t = x.device().tensor_from_vec(y, (batch, feats));
        if T::OWNS_TAPE {
            let xhat = v;
            let (xg, yg, gg, bg) = (
                x.ghost(),
                out_t.ghost(),
                self.gamma.key.ghost(),
                self.beta.key.ghost(),
            );
            let gamma = self.gamma.value.clone();
            tape.add_backward_op(move |grads| {
                let gy = take_grad!(grads, yg);
                let mut dbeta = vec![0.0f32; c];
                let mut dgamma = vec![0.0f32; c];
                for (grow, hrow) in gy.chunks_exact(c).zip(xhat.chunks_exact(c)) {
                    for i in 0..c {
                        dbeta[i] += grow[i];
                        dgamma[i] += grow[i] * hrow[i];
                    }
                }
                let gx = grads.get_or_alloc_mut(&xg)?;
                if training {
                    for ((xrow, grow), hrow) in gx
                        .chunks_exact_mut(c)
                        .zip(gy.chunks_exact(c))
                        .zip(xhat.chunks_exact(c))
                    {
                        for i in 0..c {
                            xrow[i] += gamma[i] * inv[i] / n
                                * (n * grow[i] - dbeta[i] - hrow[i] * dgamma[i]);
                        }
                    }
                } else {
                    // Fixed statistics: a per-channel affine map.
                    for (xrow, grow) in gx.chunks_exact_mut(c).zip(gy.chunks_exact(c)) {
                        for i in 0..c {
                            xrow[i] += gamma[i] * inv[i] * grow[i];
                        }
                    }
                }
                for (g, d) in grads.get_or_alloc_mut(&gg)?.iter_mut().zip(&dgamma) {
                    *g += d;
                }
                for (g, d) in grads.get_or_alloc_mut(&bg)?.iter_mut().zip(&dbeta) {
                    *g += d;
                }
                put_grad!(grads, yg, gy);
                Ok(())
            });
        }
        out_t.put_tape(tape)
    }
}

#[cfg(test)]
mod tests {
    use super::super::gradcheck::{check, random, TapeOp};
    use super::*;

    impl TapeOp for BatchNorm {
        fn apply<T: Tape<f32, Cpu> + 'static>(&mut self, x: Act<T>) -> Act<T> {
            self.forward(x, true)
        }
        fn params(&mut self) -> Vec<&mut Param> {
            vec![&mut self.gamma, &mut self.beta]
        }
    }

    #[test]
    fn training_output_has_zero_mean_unit_variance_and_updates_running_stats() {
        let dev = Cpu::default();
        let mut bn = BatchNorm::new(&dev, 2, 0.99, 1e-3);
        let x = vec![1.0, 10.0, 3.0, 20.0, 5.0, 30.0];
        let y = bn.forward(dev.tensor_from_vec(x, (3, 2)), true).as_vec();
        let m0 = (y[0] + y[2] + y[4]) / 3.0;
        assert!(m0.abs() < 1e-6);
        let v0 = (y[0] * y[0] + y[2] * y[2] + y[4] * y[4]) / 3.0;
        assert!((v0 - 8.0 / (8.0 / 3.0 + 1e-3) / 3.0).abs() < 1e-4, "{v0}");
        assert!((bn.running_mean[0] - 0.03).abs() < 1e-6);
        assert!((bn.running_var[1] - (0.99 + 0.01 * 200.0 / 3.0)).abs() < 1e-4);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let dev = Cpu::default();
        let mut bn = BatchNorm::new(&dev, 3, 0.99, 1e-3);
        bn.gamma.value = vec![0.5, 1.5, -1.0];
        bn.beta.value = vec![0.1, -0.2, 0.3];
        // 4 samples of 2 positions × 3 channels.
        check(&mut bn, random(4 * 6, 11), 4, 1e-2, 5e-3);
    }
}
