//! Fully connected layer with bias and ReLU fused into the GEMM pass.

use std::sync::Arc;

use dfdx::prelude::*;

use super::gemm::{matmul, View};
use super::{data_of, put_grad, take_grad, Act, Param};

/// A dense layer. Weights are laid out `[input][unit]` (Keras' kernel order).
#[derive(Debug, Clone)]
pub struct Dense {
    /// Input size.
    pub inputs: usize,
    /// Output size.
    pub units: usize,
    /// Whether ReLU follows the bias.
    pub relu: bool,
    /// Whether the input needs a gradient.
    pub input_grad: bool,
    /// Weights.
    pub w: Param,
    /// Biases.
    pub b: Param,
}

/// `act(x·w + b)` for `rows` rows of `n_in` inputs: the forward kernel of dense layers and of
/// convolutions (on im2col rows). Bias and ReLU are fused around one GEMM.
pub(crate) fn affine_forward(
    x: &[f32],
    rows: usize,
    n_in: usize,
    w: &[f32],
    b: &[f32],
    relu: bool,
) -> Vec<f32> {
    let n_out = b.len();
    // Every row starts as the bias: copied in doubling blocks, not one short copy per row.
    let n = rows * n_out;
    let mut y = Vec::with_capacity(n);
    y.extend_from_slice(&b[..n_out.min(n)]);
    while y.len() < n {
        y.extend_from_within(..(n - y.len()).min(y.len()));
    }
    matmul(
        rows,
        n_out,
        n_in,
        &mut y,
        true,
        View::rows(x, n_in),
        View::rows(w, n_out),
    );
    if relu {
        y.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    y
}

/// Zeroes the gradient where ReLU's output was not positive.
pub(crate) fn relu_mask(gz: &mut [f32], y: &[f32]) {
    for (g, y) in gz.iter_mut().zip(y) {
        if *y <= 0.0 {
            *g = 0.0;
        }
    }
}

/// gb += the column sums of gz (the bias gradient).
pub(crate) fn add_column_sums(gb: &mut [f32], gz: &[f32]) {
    for row in gz.chunks_exact(gb.len()) {
        for (g, v) in gb.iter_mut().zip(row) {
            *g += v;
        }
    }
}

impl Dense {
    /// y = act(x·w + b), recorded on x's tape.
    pub fn forward<T: Tape<f32, Cpu> + 'static>(&self, x: Act<T>) -> Act<T> {
        let (x, mut tape) = x.split_tape();
        let batch = x.shape().0;
        let (n_in, n_out) = (self.inputs, self.units);
        let xv = data_of(&x);
        let y = affine_forward(&xv, batch, n_in, &self.w.value, &self.b.value, self.relu);
        let saved_y = if T::OWNS_TAPE && self.relu {
            y.clone()
        } else {
            Vec::new()
        };
        let out_t = x.device().tensor_from_vec(y, (batch, n_out));
        if T::OWNS_TAPE {
            let (xg, yg, wg, bg) = (
                x.ghost(),
                out_t.ghost(),
                self.w.key.ghost(),
                self.b.key.ghost(),
            );
            let w = Arc::clone(&self.w.value);
            let (relu, input_grad) = (self.relu, self.input_grad);
            tape.add_backward_op(move |grads| {
                let mut gz = take_grad!(grads, yg);
                if relu {
                    relu_mask(&mut gz, &saved_y);
                }
                let gw = grads.get_or_alloc_mut(&wg)?;
                matmul(
                    n_in,
                    n_out,
                    batch,
                    gw,
                    true,
                    View::transposed(&xv, n_in),
                    View::rows(&gz, n_out),
                );
                add_column_sums(grads.get_or_alloc_mut(&bg)?, &gz);
                if input_grad {
                    let gx = grads.get_or_alloc_mut(&xg)?;
                    matmul(
                        batch,
                        n_in,
                        n_out,
                        gx,
                        true,
                        View::rows(&gz, n_out),
                        View::transposed(&w, n_out),
                    );
                }
                put_grad!(grads, yg, gz);
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
    use crate::rng::Rng;

    impl TapeOp for Dense {
        fn apply<T: Tape<f32, Cpu> + 'static>(&mut self, x: Act<T>) -> Act<T> {
            self.forward(x)
        }
        fn params(&mut self) -> Vec<&mut Param> {
            vec![&mut self.w, &mut self.b]
        }
    }

    fn dense(n_in: usize, n_out: usize, relu: bool) -> Dense {
        let dev = Cpu::default();
        let mut rng = Rng::new(8, 0);
        Dense {
            inputs: n_in,
            units: n_out,
            relu,
            input_grad: true,
            w: Param::uniform(&dev, n_in * n_out, 0.5, &mut rng),
            b: Param::uniform(&dev, n_out, 0.5, &mut rng),
        }
    }

    #[test]
    fn forward_matches_naive_product() {
        let d = dense(7, 3, false);
        let x = random(2 * 7, 3);
        let y = d
            .forward(Cpu::default().tensor_from_vec(x.clone(), (2, 7)))
            .as_vec();
        for b in 0..2 {
            for u in 0..3 {
                let want = d.b.value[u]
                    + (0..7)
                        .map(|i| x[b * 7 + i] * d.w.value[i * 3 + u])
                        .sum::<f32>();
                assert!((y[b * 3 + u] - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        check(&mut dense(6, 4, false), random(3 * 6, 1), 3, 1e-2, 2e-3);
        check(&mut dense(5, 7, true), random(4 * 5, 2), 4, 1e-3, 5e-3);
    }
}
