//! 2-D convolution (valid padding, stride 1) on NHWC batches: im2col over the whole batch and
//! one GEMM per pass, with bias and ReLU fused in.

use std::sync::Arc;

use dfdx::prelude::*;

use super::batchnorm::BatchNorm;
use super::dense::{add_column_sums, affine_forward, relu_mask};
use super::gemm::{matmul, View};
use super::pool::{pool_forward, relu_pooled, unpool, MaxPool};
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

/// Unfolds each output position's receptive field into one row of the returned matrix.
fn im2col(x: &[f32], batch: usize, inp: Shape3, out: Shape3, k: usize) -> Vec<f32> {
    let run = k * inp.c;
    let mut col = Vec::with_capacity(batch * out.h * out.w * k * run);
    for b in 0..batch {
        for oy in 0..out.h {
            for ox in 0..out.w {
                for ky in 0..k {
                    let s = ((b * inp.h + oy + ky) * inp.w + ox) * inp.c;
                    col.extend_from_slice(&x[s..s + run]);
                }
            }
        }
    }
    col
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
        self.forward_block(x, None, None, false)
    }

    /// The convolution and the batch norm and/or max-pool layers right after it, as one op on
    /// x's tape: the same arithmetic as the layers one after the other, but the full-size
    /// activations between them live only inside this op. They are never copied into a tensor
    /// and out again by the next layer, copied for ReLU's mask, or given zero-filled gradient
    /// buffers of their own on the tape.
    pub fn forward_block<T: Tape<f32, Cpu> + 'static>(
        &self,
        x: Act<T>,
        bn: Option<&mut BatchNorm>,
        pool: Option<&MaxPool>,
        training: bool,
    ) -> Act<T> {
        let (x, mut tape) = x.split_tape();
        let batch = x.shape().0;
        let (inp, out, k) = (self.input, self.output, self.kernel);
        let cout = out.c;
        let kd = k * k * inp.c;
        let m = batch * out.h * out.w;
        let mut col = im2col(&data_of(&x), batch, inp, out, k);
        // Pooled straight from the convolution, ReLU is applied after pooling (relu_pooled).
        let relu_after_pool = self.relu && pool.is_some() && bn.is_none();
        let mut z = affine_forward(
            &col,
            m,
            kd,
            &self.w.value,
            &self.b.value,
            self.relu && !relu_after_pool,
        );
        let bn_keys = bn
            .as_ref()
            .map(|bn| (bn.gamma.key.ghost(), bn.beta.key.ghost()));
        let norm = bn.map(|bn| bn.normalize(&z, training));
        // z is kept for the batch norm's backward pass and for ReLU's mask, unless the arg-max
        // carries that.
        let keep_z = T::OWNS_TAPE && (norm.is_some() || (self.relu && pool.is_none()));
        let (y, arg, y_len) = match (pool, &norm) {
            (Some(p), nm) => {
                let n_out = batch * p.output.len();
                let mut y = vec![f32::NEG_INFINITY; n_out];
                let mut arg = vec![0u32; n_out];
                match nm {
                    // Normalize one sample at a time into a buffer that stays in cache, and
                    // pool from there: the normalized batch is never stored whole.
                    Some(nm) => {
                        let (zi, yo) = (p.input.len(), p.output.len());
                        let mut buf = Vec::with_capacity(zi);
                        for b in 0..batch {
                            buf.clear();
                            nm.apply_into(&z[b * zi..(b + 1) * zi], &mut buf);
                            let (ys, args) =
                                (&mut y[b * yo..(b + 1) * yo], &mut arg[b * yo..(b + 1) * yo]);
                            pool_forward(p, &buf, b * zi, 1, ys, args);
                        }
                    }
                    None => {
                        pool_forward(p, &z, 0, batch, &mut y, &mut arg);
                        if relu_after_pool {
                            // ReLU's mask rides on the arg-max.
                            relu_pooled(p, &z, batch, &mut y, &mut arg);
                        }
                    }
                }
                (y, arg, p.output.len())
            }
            (None, Some(nm)) => (nm.apply(&z), Vec::new(), out.len()),
            (None, None) if keep_z => (z.clone(), Vec::new(), out.len()),
            (None, None) => (std::mem::take(&mut z), Vec::new(), out.len()),
        };
        let saved_z = if keep_z { z } else { Vec::new() };
        let pooled = pool.cloned();
        let out_t = x.device().tensor_from_vec(y, (batch, y_len));
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
                let mut gy = take_grad!(grads, yg);
                // The gradient before pooling (zero where no window's maximum was).
                let mut scattered;
                let g_pre: &mut [f32] = if let Some(p) = &pooled {
                    scattered = unpool(p, &gy, &arg, batch);
                    &mut scattered
                } else {
                    &mut gy
                };
                // The gradient at z, with ReLU's mask.
                let mut through_bn;
                let gz: &mut [f32] = match &norm {
                    Some(nm) => {
                        let mut g = vec![0.0f32; m * cout];
                        let (dgamma, dbeta) = nm.backward(g_pre, &saved_z, relu, &mut g);
                        let (gg, bg) = bn_keys.as_ref().expect("batch-norm keys");
                        add_column_sums(grads.get_or_alloc_mut(gg)?, &dgamma);
                        add_column_sums(grads.get_or_alloc_mut(bg)?, &dbeta);
                        through_bn = g;
                        &mut through_bn
                    }
                    None => {
                        if relu && pooled.is_none() {
                            relu_mask(g_pre, &saved_z);
                        }
                        g_pre
                    }
                };
                let gz: &[f32] = gz;
                let gw = grads.get_or_alloc_mut(&wg)?;
                matmul(
                    kd,
                    cout,
                    m,
                    gw,
                    true,
                    View::transposed(&col, kd),
                    View::rows(gz, cout),
                );
                add_column_sums(grads.get_or_alloc_mut(&bg)?, gz);
                if input_grad {
                    // Reuse the unfolded-input buffer for the unfolded-input gradient.
                    matmul(
                        m,
                        kd,
                        cout,
                        &mut col,
                        false,
                        View::rows(gz, cout),
                        View::transposed(&w, cout),
                    );
                    let gx = grads.get_or_alloc_mut(&xg)?;
                    col2im_add(&col, batch, inp, out, k, gx);
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

    /// Output, and gradients of `sum(block(x) ⊙ r)` for the input and every parameter, of a
    /// convolution followed by an optional batch norm and an optional 2×2 max-pool, run fused
    /// or layer by layer.
    fn run_block(
        c: &Conv,
        bn: bool,
        pool: bool,
        fused: bool,
        x: &[f32],
        batch: usize,
    ) -> Vec<Vec<f32>> {
        let dev = Cpu::default();
        let mut norm = bn.then(|| {
            let mut b = BatchNorm::new(&dev, c.output.c, 0.99, 1e-3);
            b.gamma.value = Arc::new(random(c.output.c, 8));
            b.beta.value = Arc::new(random(c.output.c, 9));
            b
        });
        let p = pool.then_some(MaxPool {
            input: c.output,
            output: Shape3 {
                h: c.output.h / 2,
                w: c.output.w / 2,
                c: c.output.c,
            },
            size: 2,
        });
        let xt: Act = dev.tensor_from_vec(x.to_vec(), (batch, x.len() / batch));
        let y = if fused {
            c.forward_block(xt.clone().leaky_traced(), norm.as_mut(), p.as_ref(), true)
        } else {
            let mut y = c.forward(xt.clone().leaky_traced());
            if let Some(b) = norm.as_mut() {
                y = b.forward(y, true);
            }
            if let Some(p) = &p {
                y = p.forward(y);
            }
            y
        };
        let r: Act = dev.tensor_from_vec(random(y.shape().0 * y.shape().1, 7), *y.shape());
        let mut out = vec![y.retaped::<NoneTape>().as_vec()];
        let grads = (y * r).sum::<(), _>().backward();
        out.push(grads.get(&xt).as_vec());
        out.push(grads.get(&c.w.key).as_vec());
        out.push(grads.get(&c.b.key).as_vec());
        if let Some(b) = &norm {
            out.push(grads.get(&b.gamma.key).as_vec());
            out.push(grads.get(&b.beta.key).as_vec());
            out.push(b.running_mean.clone());
            out.push(b.running_var.clone());
        }
        out
    }

    #[test]
    fn fused_blocks_match_the_layers_one_by_one_bit_for_bit() {
        let mut zero_windows = 0;
        for (seed, (h, w, ci, k, co, batch, relu)) in [
            // Windows that leave a row or column out, and (the last two) windows that tile.
            (7, 7, 1, 3, 4, 2, true),
            (8, 9, 3, 2, 5, 3, true),
            (9, 8, 2, 3, 3, 2, false),
            (10, 10, 1, 3, 6, 3, true),
            (6, 6, 2, 3, 4, 2, false),
        ]
        .into_iter()
        .enumerate()
        {
            let c = conv(Shape3 { h, w, c: ci }, k, co, relu);
            let x = random(batch * h * w * ci, 20 + seed as u64);
            for (bn, pool) in [(false, true), (true, true), (true, false)] {
                let fused = run_block(&c, bn, pool, true, &x, batch);
                if relu && pool && !bn {
                    // Windows where ReLU left only zeros (the case pooling before ReLU must
                    // reproduce) occur here.
                    zero_windows += fused[0].iter().filter(|v| **v == 0.0).count();
                }
                let apart = run_block(&c, bn, pool, false, &x, batch);
                assert_eq!(fused.len(), apart.len());
                for (i, (a, b)) in fused.iter().zip(&apart).enumerate() {
                    assert_eq!(a.len(), b.len());
                    assert!(
                        a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits()),
                        "case {seed}, bn {bn}, pool {pool}: output {i}"
                    );
                }
            }
        }
        assert!(zero_windows > 0, "no window was all non-positive");
    }
}
