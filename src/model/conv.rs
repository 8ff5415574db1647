//! 2-D convolution (valid padding, stride 1) on NHWC batches: im2col over the whole batch and
//! one GEMM per pass, with bias and ReLU fused in.

use dfdx::prelude::*;

use super::dense::{add_column_sums, affine_forward, relu_mask};
use super::gemm::{matmul, View};
use super::{data_of, put_grad, take_grad, Act, Param};
use crate::experiment::Shape3;

/// A convolution layer. Weights are laid out `[ky][kx][c_in][c_out]` (Keras' kernel order).
#[derive(Debug, Clone)]
pub struct Conv {
    /// Input shape per sample.
    pub input: Shape3,
    /// Output shape per sample.
    pub output: Shape3,
    /// Kernel side.
    pub kernel: usize,
    /// Whether ReLU follows the bias.
    pub relu: bool,
    /// Whether the input needs a gradient (false for the first layer: nothing to train there).
    pub input_grad: bool,
    /// Kernel weights.
    pub w: Param,
    /// Biases, one per output channel.
    pub b: Param,
}

/// Unfolds each output position's receptive field into one row of `col`.
fn im2col(x: &[f32], batch: usize, inp: Shape3, out: Shape3, k: usize, col: &mut [f32]) {
    let run = k * inp.c;
    let kd = k * run;
    let mut r = 0;
    for b in 0..batch {
        for oy in 0..out.h {
            for ox in 0..out.w {
                let row = &mut col[r * kd..(r + 1) * kd];
                for ky in 0..k {
                    let s = ((b * inp.h + oy + ky) * inp.w + ox) * inp.c;
                    row[ky * run..(ky + 1) * run].copy_from_slice(&x[s..s + run]);
                }
                r += 1;
            }
        }
    }
}

/// Adds each row of `col` back onto the input positions it came from (adjoint of im2col).
fn col2im_add(col: &[f32], batch: usize, inp: Shape3, out: Shape3, k: usize, gx: &mut [f32]) {
    let run = k * inp.c;
    let kd = k * run;
    let mut r = 0;
    for b in 0..batch {
        for oy in 0..out.h {
            for ox in 0..out.w {
                let row = &col[r * kd..(r + 1) * kd];
                for ky in 0..k {
                    let s = ((b * inp.h + oy + ky) * inp.w + ox) * inp.c;
                    for (g, v) in gx[s..s + run]
                        .iter_mut()
                        .zip(&row[ky * run..(ky + 1) * run])
                    {
                        *g += v;
                    }
                }
                r += 1;
            }
        }
    }
}

impl Conv {
    /// y = act(conv(x, w) + b), recorded on x's tape.
    pub fn forward<T: Tape<f32, Cpu> + 'static>(&self, x: Act<T>) -> Act<T> {
        let (x, mut tape) = x.split_tape();
        let batch = x.shape().0;
        let xv = data_of(&x);
        let (inp, out, k) = (self.input, self.output, self.kernel);
        let cout = out.c;
        let kd = k * k * inp.c;
        let m = batch * out.h * out.w;
        let mut col = vec![0.0f32; m * kd];
        im2col(&xv, batch, inp, out, k, &mut col);
        drop(xv);
        let y = affine_forward(&col, m, kd, &self.w.value, &self.b.value, self.relu);
        let saved_y = if T::OWNS_TAPE && self.relu {
            y.clone()
        } else {
            Vec::new()
        };
        let out_t = x.device().tensor_from_vec(y, (batch, out.len()));
        if T::OWNS_TAPE {
            let (xg, yg, wg, bg) = (
                x.ghost(),
                out_t.ghost(),
                self.w.key.ghost(),
                self.b.key.ghost(),
            );
            let w = if self.input_grad {
                self.w.value.clone()
            } else {
                Vec::new()
            };
            let (relu, input_grad) = (self.relu, self.input_grad);
            tape.add_backward_op(move |grads| {
                let mut gz = take_grad!(grads, yg);
                if relu {
                    relu_mask(&mut gz, &saved_y);
                }
                let gw = grads.get_or_alloc_mut(&wg)?;
                matmul(
                    kd,
                    cout,
                    m,
                    gw,
                    true,
                    View::transposed(&col, kd),
                    View::rows(&gz, cout),
                );
                add_column_sums(grads.get_or_alloc_mut(&bg)?, &gz);
                if input_grad {
                    // Reuse the unfolded-input buffer for the unfolded-input gradient.
                    matmul(
                        m,
                        kd,
                        cout,
                        &mut col,
                        false,
                        View::rows(&gz, cout),
                        View::transposed(&w, cout),
                    );
                    let gx = grads.get_or_alloc_mut(&xg)?;
                    col2im_add(&col, batch, inp, out, k, gx);
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

    impl TapeOp for Conv {
        fn apply<T: Tape<f32, Cpu> + 'static>(&mut self, x: Act<T>) -> Act<T> {
            self.forward(x)
        }
        fn params(&mut self) -> Vec<&mut Param> {
            vec![&mut self.w, &mut self.b]
        }
    }

    fn conv(inp: Shape3, k: usize, cout: usize, relu: bool) -> Conv {
        let dev = Cpu::default();
        let mut rng = Rng::new(5, 0);
        let output = Shape3 {
            h: inp.h - k + 1,
            w: inp.w - k + 1,
            c: cout,
        };
        Conv {
            input: inp,
            output,
            kernel: k,
            relu,
            input_grad: true,
            w: Param::uniform(&dev, k * k * inp.c * cout, 0.5, &mut rng),
            b: Param::uniform(&dev, cout, 0.5, &mut rng),
        }
    }

    /// Direct 7-loop convolution, the reference the GEMM path must match.
    pub(crate) fn reference(c: &Conv, x: &[f32], batch: usize) -> Vec<f32> {
        let (i, o, k) = (c.input, c.output, c.kernel);
        let mut y = vec![0.0; batch * o.len()];
        for b in 0..batch {
            for oy in 0..o.h {
                for ox in 0..o.w {
                    for co in 0..o.c {
                        let mut s = c.b.value[co] as f64;
                        for ky in 0..k {
                            for kx in 0..k {
                                for ci in 0..i.c {
                                    let xv = x[((b * i.h + oy + ky) * i.w + ox + kx) * i.c + ci];
                                    let wv = c.w.value[((ky * k + kx) * i.c + ci) * o.c + co];
                                    s += xv as f64 * wv as f64;
                                }
                            }
                        }
                        let s = s as f32;
                        y[((b * o.h + oy) * o.w + ox) * o.c + co] =
                            if c.relu { s.max(0.0) } else { s };
                    }
                }
            }
        }
        y
    }

    #[test]
    fn forward_matches_direct_convolution_on_random_shapes() {
        for (seed, (h, w, ci, k, co, batch)) in [
            (5, 6, 1, 3, 4, 2),
            (7, 7, 3, 2, 5, 3),
            (9, 8, 2, 4, 3, 1),
            (4, 4, 6, 4, 2, 2),
        ]
        .into_iter()
        .enumerate()
        {
            let c = conv(Shape3 { h, w, c: ci }, k, co, seed % 2 == 0);
            let x = random(batch * h * w * ci, seed as u64);
            let dev = Cpu::default();
            let y = c
                .forward(dev.tensor_from_vec(x.clone(), (batch, h * w * ci)))
                .as_vec();
            let want = reference(&c, &x, batch);
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut c = conv(Shape3 { h: 6, w: 5, c: 2 }, 3, 3, false);
        check(&mut c, random(2 * 6 * 5 * 2, 1), 2, 1e-2, 2e-3);
        let mut c = conv(Shape3 { h: 5, w: 5, c: 1 }, 2, 4, true);
        check(&mut c, random(3 * 25, 2), 3, 1e-3, 5e-3);
    }
}
