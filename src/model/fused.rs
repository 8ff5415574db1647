//! Fusion: the planning pass that turns a convolution and the batch norm and/or max-pool right
//! after it into one layer, [`ConvBlock`], and that layer's tape op.
//!
//! A block computes the same arithmetic as its layers one after the other (a test pins it bit
//! for bit), but the full-size activations between them live only inside the op: they are never
//! copied into a dfdx tensor and out again by the next layer, copied for ReLU's mask, or given
//! zero-filled gradient buffers of their own on the tape.

use std::sync::Arc;

use dfdx::prelude::*;

use super::activation::{Activation, Kept};
use super::affine::{add_column_sums, affine_append, affine_into};
use super::gemm::PIECE_MIN_MACS;
use super::geometry::ConvGeometry;
use super::layer::{Forward, Layer, LayerIo, Mode, StoredArray};
use super::layers::batchnorm::{add_channel_sums, BatchNorm, Normalized};
use super::layers::conv::Conv;
use super::layers::maxpool::{
    pool_forward, pool_mapped, relu_pooled, unpool, unpool_par, MaxPool, PoolMap,
};
use super::layers::LayerEntry;
use super::par;
use super::winograd::Winograd;
use super::{data_of, put_grad, take_grad, Act, Param};
use crate::optim::in_backward::ParamGrad;
use crate::rng::Rng;

/// What one built layer of a network is made of: indices into `model.layers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A layer on its own.
    Single(usize),
    /// A convolution with the batch norm and/or max-pool that follow it.
    Block {
        /// The convolution.
        conv: usize,
        /// A batch norm right after it.
        bn: Option<usize>,
        /// A max-pool right after it (or after that batch norm).
        pool: Option<usize>,
    },
}

/// Groups `layers` into the units a network is built of: every convolution starts a block that
/// takes a batch norm right after it, then a max-pool right after that.
pub fn plan(layers: &[LayerEntry]) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut i = 0;
    while i < layers.len() {
        if !matches!(layers[i], LayerEntry::Conv(_)) {
            units.push(Unit::Single(i));
            i += 1;
            continue;
        }
        let conv = i;
        i += 1;
        let bn = matches!(layers.get(i), Some(LayerEntry::Batchnorm(_))).then_some(i);
        i += bn.is_some() as usize;
        let pool = matches!(layers.get(i), Some(LayerEntry::Maxpool(_))).then_some(i);
        i += pool.is_some() as usize;
        units.push(Unit::Block { conv, bn, pool });
    }
    units
}

/// Builds one unit; `io[i]` are layer i's shapes. Weights are drawn in layer order.
pub fn build(
    unit: Unit,
    layers: &[LayerEntry],
    io: &[LayerIo],
    dev: &Cpu,
    rng: &mut Rng,
) -> Box<dyn Layer> {
    let (conv, bn, pool) = match unit {
        Unit::Single(i) => return layers[i].spec().build(&io[i], dev, rng),
        Unit::Block { conv, bn, pool } => (conv, bn, pool),
    };
    let LayerEntry::Conv(c) = &layers[conv] else {
        unreachable!("plan() starts blocks at convolutions")
    };
    let conv = c.build_conv(&io[conv], dev, rng);
    let bn = bn.map(|i| match &layers[i] {
        LayerEntry::Batchnorm(b) => b.build_bn(&io[i], dev),
        _ => unreachable!("plan() puts only batch norms here"),
    });
    let pool = pool.map(|i| match &layers[i] {
        LayerEntry::Maxpool(p) => p.build_pool(&io[i]),
        _ => unreachable!("plan() puts only max-pools here"),
    });
    Box::new(ConvBlock::new(conv, bn, pool))
}

/// A convolution, optionally followed by a batch norm and/or a max-pool, as one tape op.
#[derive(Debug, Clone)]
pub struct ConvBlock {
    /// The convolution (with its activation).
    pub conv: Conv,
    /// Batch normalization of the convolution's output.
    pub bn: Option<BatchNorm>,
    /// Max pooling of the (normalized) output.
    pub pool: Option<MaxPool>,
}

impl ConvBlock {
    /// A block of these layers.
    pub fn new(conv: Conv, bn: Option<BatchNorm>, pool: Option<MaxPool>) -> Self {
        ConvBlock { conv, bn, pool }
    }

    /// Whether ReLU is applied after pooling instead of before (exact: see `relu_pooled`):
    /// pooled straight from the convolution, the full-size output skips a ReLU pass.
    fn relu_after_pool(&self) -> bool {
        self.conv.act == Activation::Relu && self.pool.is_some() && self.bn.is_none()
    }
}

/// What a convolution keeps of its input for the backward pass.
enum Saved {
    /// The unfolded input (im2col): the weight gradient's operand, then the input gradient's
    /// buffer.
    Unfolded(Vec<f32>),
    /// The input and the transformed kernel, for Winograd.
    Input(Winograd, Vec<f32>, Vec<f32>),
}

/// A max-pool after a batch norm normalizes each value as it reads it.
impl PoolMap for Normalized {
    #[inline(always)]
    fn block(&self, ch: usize, xs: &[f32; 16]) -> [f32; 16] {
        self.normalize_block(ch, xs)
    }

    #[inline(always)]
    fn one(&self, ch: usize, x: f32) -> f32 {
        self.normalize_one(ch, x)
    }
}

/// Max-pools a normalized batch, normalizing each value as the pool reads it: the normalized
/// batch is never stored. Returns the pooled values and arg-max.
fn pool_normalized(p: &MaxPool, nm: &Normalized, z: &[f32], batch: usize) -> (Vec<f32>, Vec<u32>) {
    pool_pieces(p, Some(nm), z, batch, false)
}

/// Max-pools the convolution's output, then applies ReLU when `relu` (its mask then rides on
/// the arg-max). Returns the pooled values and arg-max.
fn pool_raw(p: &MaxPool, z: &[f32], batch: usize, relu: bool) -> (Vec<f32>, Vec<u32>) {
    pool_pieces(p, None, z, batch, relu)
}

/// The pooling of [`pool_normalized`] (with `norm`) or [`pool_raw`], by pieces of samples on
/// the threads (windows never span two samples).
fn pool_pieces(
    p: &MaxPool,
    norm: Option<&Normalized>,
    z: &[f32],
    batch: usize,
    relu: bool,
) -> (Vec<f32>, Vec<u32>) {
    let (zi, yo) = (p.input.len(), p.output.len());
    let mut y = vec![f32::NEG_INFINITY; batch * yo];
    let mut arg = vec![0u32; batch * yo];
    let pieces = par::row_ranges(batch, batch * zi);
    par::each_mut2(&mut y, yo, &mut arg, yo, &pieces, |r, y, arg| {
        let z = &z[r.start * zi..r.end * zi];
        match norm {
            Some(nm) => pool_mapped(p, z, r.start * zi, r.len(), y, arg, nm),
            None => pool_forward(p, z, r.start * zi, r.len(), y, arg),
        }
        if relu {
            relu_pooled(p, z, r.len(), y, arg);
        }
    });
    (y, arg)
}

/// Samples per chunk when a direct convolution's output is pooled as it is computed (about
/// 128 KB of output at a time: it stays in L2 between the product and the pool, where the
/// whole batch's output (2.7 MB for the baseline) went out to memory and back three times),
/// or `None` where chunks could round differently from the whole batch. Each output row is
/// then computed exactly as in one product over the batch: `gemm` sums a row's `field` terms in
/// one pass when `field` ≤ 512 whatever the number of rows, as long as a chunk is not so small
/// that it takes `gemm`'s special paths (one row or column, or at most 256 outputs).
fn stream_chunk(geo: &ConvGeometry) -> Option<usize> {
    let per_sample = geo.rows(1) * geo.output.c;
    let samples = ((32 << 10) / per_sample.max(1)).max(1);
    (geo.field() <= 512 && geo.output.c >= 2 && geo.rows(1) >= 2 && samples * per_sample > 256)
        .then_some(samples)
}

impl ConvBlock {
    /// The pooled output (and arg-max) of a direct convolution, normalized first by `norm`
    /// (fixed statistics: evaluation) if given, its output computed `chunk` samples at a time
    /// and pooled while in cache.
    fn pool_streamed(
        &self,
        p: &MaxPool,
        col: &[f32],
        batch: usize,
        chunk: usize,
        act: Activation,
        norm: Option<&Normalized>,
    ) -> (Vec<f32>, Vec<u32>) {
        let geo = self.conv.geo;
        let (rows, field, zi, yo) = (geo.rows(1), geo.field(), p.input.len(), p.output.len());
        let mut y = vec![f32::NEG_INFINITY; batch * yo];
        let mut arg = vec![0u32; batch * yo];
        // Samples are independent: pieces of them on the threads, each in chunks of its own.
        let pieces = self.sample_pieces(batch);
        par::each_mut2(&mut y, yo, &mut arg, yo, &pieces, |r, y, arg| {
            let mut z = Vec::new();
            for s in (r.start..r.end).step_by(chunk) {
                let n = chunk.min(r.end - s);
                let cols = &col[s * rows * field..(s + n) * rows * field];
                let (w, b) = (&self.conv.w.value, &self.conv.b.value);
                z.clear();
                affine_append(cols, n * rows, field, w, b, act, &mut z);
                let at = (s - r.start) * yo;
                let (ys, args) = (&mut y[at..at + n * yo], &mut arg[at..at + n * yo]);
                match norm {
                    Some(nm) => pool_mapped(p, &z, s * zi, n, ys, args, nm),
                    None => pool_forward(p, &z, s * zi, n, ys, args),
                }
                if self.relu_after_pool() {
                    relu_pooled(p, &z, n, ys, args);
                }
            }
        });
        (y, arg)
    }

    /// The batch's samples cut for the threads, each piece worth a thread (see
    /// [`PIECE_MIN_MACS`]).
    fn sample_pieces(&self, batch: usize) -> Vec<std::ops::Range<usize>> {
        let geo = self.conv.geo;
        let macs = geo.rows(1) * geo.field() * geo.output.c;
        par::ranges(batch, PIECE_MIN_MACS.div_ceil(macs.max(1)))
    }

    /// A direct convolution's output for a batch norm in training, computed `chunk` samples
    /// at a time, with the per-channel sums of its rows (the batch mean's first pass, in row
    /// order: `add_channel_sums` over the whole output) taken from each chunk while it is in
    /// cache instead of in a pass of their own.
    fn conv_summed(
        &self,
        col: &[f32],
        batch: usize,
        chunk: usize,
        act: Activation,
    ) -> (Vec<f32>, Vec<f64>) {
        let geo = self.conv.geo;
        let (rows, field, c) = (geo.rows(1), geo.field(), geo.output.c);
        let mut sums = vec![0.0f64; c];
        let pieces = self.sample_pieces(batch);
        if pieces.len() > 1 {
            // On several threads: the output by pieces of samples, then the sums by pieces of
            // channels, each in row order as below.
            let (w, b) = (&self.conv.w.value, &self.conv.b.value);
            let f = |r: std::ops::Range<usize>, z: &mut [std::mem::MaybeUninit<f32>]| {
                let cols = &col[r.start * rows * field..r.end * rows * field];
                affine_into(cols, r.len() * rows, field, w, b, act, z);
            };
            // SAFETY: `affine_into` writes every value of its part.
            let z = unsafe { par::build(batch, rows * c, &pieces, f) };
            add_channel_sums(&mut sums, &z);
            return (z, sums);
        }
        let mut z = Vec::with_capacity(batch * rows * c);
        for s in (0..batch).step_by(chunk) {
            let n = chunk.min(batch - s);
            let cols = &col[s * rows * field..(s + n) * rows * field];
            let (w, b) = (&self.conv.w.value, &self.conv.b.value);
            let at = z.len();
            affine_append(cols, n * rows, field, w, b, act, &mut z);
            add_channel_sums(&mut sums, &z[at..]);
        }
        (z, sums)
    }
}

impl Forward for ConvBlock {
    fn forward<T: Tape<f32, Cpu> + 'static>(&mut self, x: Act<T>, mode: &mut Mode) -> Act<T> {
        let (x, mut tape) = x.split_tape();
        let batch = x.shape().0;
        let geo = self.conv.geo;
        let act = self.conv.act;
        let relu_after_pool = self.relu_after_pool();
        let gemm_act = if relu_after_pool {
            Activation::Linear
        } else {
            act
        };
        // What the backward pass needs of the input: its unfolding (direct), or the input and
        // the transformed kernel (Winograd transforms the input again, a chunk at a time).
        // Pooled straight from the convolution with nothing else of its output needed: it
        // is computed a few samples at a time into a buffer that stays in cache, and pooled
        // from there (see `stream_chunk`).
        let streamed = self.pool.as_ref().filter(|_| {
            self.bn.is_none() && !(T::OWNS_TAPE && act.needs_output() && !relu_after_pool)
        });
        // With a batch norm: in training its mean's sums are taken from each chunk of the
        // output as it is computed; in evaluation (fixed statistics, nothing kept for a
        // backward pass) a pooled output is normalized and pooled chunk by chunk too.
        let training = mode.training();
        let mut norm = None;
        let (mut z, mut saved, pooled) = match self.conv.winograd {
            None => {
                let col = geo.unfold(&data_of(&x), batch);
                let chunk = stream_chunk(&geo);
                let eval_pool = self
                    .pool
                    .as_ref()
                    .filter(|_| !training && !T::OWNS_TAPE && self.bn.is_some());
                match (streamed.or(eval_pool), chunk) {
                    // No batch norm (`streamed`), or evaluation's fixed statistics, which
                    // read nothing of the batch (`eval_pool`).
                    (Some(p), Some(chunk)) => {
                        norm = self.bn.as_mut().map(|bn| bn.normalize(&[], false));
                        let pooled =
                            self.pool_streamed(p, &col, batch, chunk, gemm_act, norm.as_ref());
                        (Vec::new(), Saved::Unfolded(col), Some(pooled))
                    }
                    (_, Some(chunk)) if self.bn.is_some() && training => {
                        let (z, sums) = self.conv_summed(&col, batch, chunk, gemm_act);
                        norm = self
                            .bn
                            .as_mut()
                            .map(|bn| bn.normalize_summed(&z, true, Some(sums)));
                        (z, Saved::Unfolded(col), None)
                    }
                    _ => (
                        self.conv.affine(&col, batch, gemm_act),
                        Saved::Unfolded(col),
                        None,
                    ),
                }
            }
            Some(wg) => {
                let input = data_of(&x);
                let u = wg.kernel(&self.conv.w.value);
                let z = wg.forward(&input, batch, &u, &self.conv.b.value, gemm_act);
                (z, Saved::Input(wg, input, u), None)
            }
        };
        let bn_keys = self
            .bn
            .as_ref()
            .map(|bn| (bn.gamma.grad_key(), bn.beta.grad_key()));
        if norm.is_none() {
            norm = self.bn.as_mut().map(|bn| bn.normalize(&z, training));
        }
        let pool = self.pool.clone();
        // z is kept for the batch norm's backward pass; without one, what the activation's
        // backward pass needs of it (a mask for ReLU), unless the arg-max carries that.
        let act_in_backward = act.needs_output() && !relu_after_pool && norm.is_none();
        let keep_z = T::OWNS_TAPE && norm.is_some();
        let act_kept = match T::OWNS_TAPE && act_in_backward {
            true => act.keep(&z),
            false => Kept::Nothing,
        };
        let (mut y, arg) = match (&pool, &norm) {
            _ if pooled.is_some() => pooled.expect("just checked"),
            (Some(p), Some(nm)) => pool_normalized(p, nm, &z, batch),
            (Some(p), None) => pool_raw(p, &z, batch, relu_after_pool),
            (None, Some(nm)) => (nm.apply(&z), Vec::new()),
            (None, None) => (std::mem::take(&mut z), Vec::new()),
        };
        // The batch norm's activation, after pooling (it is non-decreasing, so this is exact).
        let post = self.bn.as_ref().map_or(Activation::Linear, |b| b.act);
        post.apply(&mut y);
        let saved_y = match T::OWNS_TAPE {
            true => post.keep(&y),
            false => Kept::Nothing,
        };
        let y_len = pool.as_ref().map_or(geo.output.len(), |p| p.output.len());
        let out_t = x.device().tensor_from_vec(y, (batch, y_len));
        if !T::OWNS_TAPE {
            return out_t.put_tape(tape);
        }
        let saved_z = if keep_z { z } else { Vec::new() };
        let (xg, yg) = (x.ghost(), out_t.ghost());
        let (wk, bk) = (self.conv.w.grad_key(), self.conv.b.grad_key());
        let w = Arc::clone(&self.conv.w.value);
        let input_grad = self.conv.input_grad;
        tape.add_backward_op(move |grads| {
            // The output's gradient is turned into the input's in place, as every pass below
            // does: no op reads it after this one (its consumers all ran before).
            let mut gy = take_grad!(grads, yg);
            post.backward_kept(&mut gy, &saved_y);
            let g_in: &mut [f32] = &mut gy;
            // The gradient before pooling (zero where no window's maximum was). Sums over its
            // rows are taken while un-pooling, each row while it is in cache: the bias
            // gradient (its column sums) when it is the convolution's output gradient as it
            // is, or the batch norm's sums.
            let bias_in_unpool = norm.is_none() && !act_in_backward;
            // The bias's gradient, its sums taken on the way below.
            let mut gb = ParamGrad::open(&bk, grads, false)?;
            let mut bn_sums = None;
            let mut scattered;
            let g_pre: &mut [f32] = match &pool {
                Some(p) => {
                    scattered = match (unpool_par(p, g_in, &arg, batch), &norm) {
                        // On several threads: un-pooled by pieces of samples, the sums taken
                        // after it by pieces of channels (the batch norm's in its backward
                        // pass): the same sums, each in row order.
                        (Some(g), _) => {
                            if norm.is_none() && bias_in_unpool {
                                add_column_sums(gb.values(), &g);
                            }
                            g
                        }
                        (None, Some(nm)) => {
                            let (sums, c) = (bn_sums.insert(nm.grad_sums()), p.input.c);
                            unpool(p, g_in, &arg, batch, |i, row| {
                                nm.add_grad_row(sums, row, &saved_z[i * c..(i + 1) * c])
                            })
                        }
                        (None, None) if bias_in_unpool => {
                            let sums = gb.values();
                            unpool(p, g_in, &arg, batch, |_, row| add_column_sums(sums, row))
                        }
                        (None, None) => unpool(p, g_in, &arg, batch, |_, _| {}),
                    };
                    &mut scattered
                }
                None => g_in,
            };
            // A batch norm adds the bias gradient in its own last pass.
            let bias_done = (bias_in_unpool && pool.is_some()) || norm.is_some();
            // The gradient at the convolution's output, through the batch norm and the
            // activation.
            let gz: &[f32] = match (&norm, &bn_keys) {
                (Some(nm), Some((gamma, beta))) => {
                    let bias = Some(gb.values());
                    let (dgamma, dbeta) = nm.backward_in_place(g_pre, &saved_z, act, bn_sums, bias);
                    ParamGrad::add(gamma, grads, &dgamma)?;
                    ParamGrad::add(beta, grads, &dbeta)?;
                    g_pre
                }
                _ => {
                    act.backward_kept(g_pre, &act_kept);
                    g_pre
                }
            };
            match &mut saved {
                Saved::Unfolded(col) => {
                    let mut gw = ParamGrad::open(&wk, grads, false)?;
                    geo.add_weight_grad(gw.values(), gz, col, batch);
                    if !bias_done {
                        add_column_sums(gb.values(), gz);
                    }
                    if input_grad {
                        // The unfolded input is no longer needed: its buffer takes the
                        // unfolded input gradient.
                        geo.add_input_grad(grads.get_or_alloc_mut(&xg)?, gz, &w, col, batch);
                    }
                    // The weights are updated in place as their gradient closes.
                    drop(w);
                    gw.close(grads)?;
                }
                Saved::Input(winograd, input, u) => {
                    let gx = match input_grad {
                        true => Some(&mut grads.get_or_alloc_mut(&xg)?[..]),
                        false => None,
                    };
                    let g_kernel = winograd.backward(input, gz, u, batch, gx);
                    drop(w);
                    ParamGrad::add(&wk, grads, &g_kernel)?;
                    if !bias_done {
                        add_column_sums(gb.values(), gz);
                    }
                }
            }
            gb.close(grads)?;
            put_grad!(grads, yg, gy);
            Ok(())
        });
        out_t.put_tape(tape)
    }
}

/// A convolution on its own: a block of one (what the plan builds for it; this is the tape op
/// of one built outside the plan, as a layer's tests do).
impl Forward for Conv {
    fn forward<T: Tape<f32, Cpu> + 'static>(&mut self, x: Act<T>, mode: &mut Mode) -> Act<T> {
        // Cloning a convolution shares its weights (`Arc`) and their tape keys.
        ConvBlock::new(self.clone(), None, None).forward(x, mode)
    }
}

impl Layer for ConvBlock {
    fn params(&mut self) -> Vec<&mut Param> {
        let mut out = self.conv.params();
        if let Some(bn) = &mut self.bn {
            out.extend(bn.params());
        }
        out
    }

    fn arrays(&mut self) -> Vec<StoredArray<'_>> {
        let mut out = self.conv.arrays();
        if let Some(bn) = &mut self.bn {
            out.extend(bn.arrays());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gradcheck::random;
    use crate::model::layer::Shape;
    use crate::model::layers::conv::tests::conv;

    /// A plain 2×2 max-pool over the output `o` of a convolution.
    fn pool2(o: Shape) -> MaxPool {
        MaxPool {
            input: o,
            output: Shape::image(o.h / 2, o.w / 2, o.c),
            size: 2,
            general: None,
        }
    }

    #[test]
    fn plan_fuses_a_conv_with_the_batch_norm_and_pool_after_it() {
        let exp = crate::experiment::Experiment::from_resolved_toml(
            "p",
            "[[model.layers]]\nconv = { filters = 2, kernel = 3 }\n[[model.layers]]\nbatchnorm = {}\n[[model.layers]]\nmaxpool = 2\n[[model.layers]]\nconv = { filters = 2, kernel = 3 }\n[[model.layers]]\nconv = { filters = 2, kernel = 3 }\n[[model.layers]]\nmaxpool = 2\n[[model.layers]]\nmaxpool = 1\n[[model.layers]]\nflatten = true\n[[model.layers]]\nbatchnorm = {}\n[[model.layers]]\ndense = { units = 10, activation = \"softmax\" }\n",
        )
        .unwrap();
        assert_eq!(
            plan(&exp.model.layers),
            vec![
                Unit::Block {
                    conv: 0,
                    bn: Some(1),
                    pool: Some(2)
                },
                Unit::Block {
                    conv: 3,
                    bn: None,
                    pool: None
                },
                Unit::Block {
                    conv: 4,
                    bn: None,
                    pool: Some(5)
                },
                Unit::Single(6),
                Unit::Single(7),
                Unit::Single(8),
                Unit::Single(9),
            ]
        );
    }

    /// Output, and gradients of `sum(block(x) ⊙ r)` for the input and every parameter, of a
    /// convolution followed by an optional batch norm and an optional 2×2 max-pool, run fused
    /// or layer by layer.
    fn run_block(
        c: &Conv,
        bn: Option<Activation>,
        pool: bool,
        fused: bool,
        x: &[f32],
        batch: usize,
    ) -> Vec<Vec<f32>> {
        let dev = Cpu::default();
        let norm = bn.map(|post| {
            let mut b = BatchNorm::new(&dev, c.geo.output.c, 0.99, 1e-3);
            b.act = post;
            b.gamma.value = Arc::new(random(c.geo.output.c, 8));
            b.beta.value = Arc::new(random(c.geo.output.c, 9));
            b
        });
        let o = c.geo.output;
        let p = pool.then_some(pool2(o));
        let xt: Act = dev.tensor_from_vec(x.to_vec(), (batch, x.len() / batch));
        let mut rng = Rng::new(0, 0);
        let mut mode = Mode::Train(&mut rng);
        let (y, conv_keys, bn_after) = if fused {
            let mut block = ConvBlock::new(c.clone(), norm, p);
            let y = block.forward(xt.clone().leaky_traced(), &mut mode);
            (
                y,
                (block.conv.w.key.clone(), block.conv.b.key.clone()),
                block.bn,
            )
        } else {
            let mut alone = ConvBlock::new(c.clone(), None, None);
            let mut y = alone.forward(xt.clone().leaky_traced(), &mut mode);
            let mut norm = norm;
            if let Some(b) = norm.as_mut() {
                y = b.forward(y, &mut mode);
            }
            if let Some(mut p) = p {
                y = p.forward(y, &mut mode);
            }
            (
                y,
                (alone.conv.w.key.clone(), alone.conv.b.key.clone()),
                norm,
            )
        };
        let r: Act = dev.tensor_from_vec(random(y.shape().0 * y.shape().1, 7), *y.shape());
        let mut out = vec![y.retaped::<NoneTape>().as_vec()];
        let grads = (y * r).sum::<(), _>().backward();
        out.push(grads.get(&xt).as_vec());
        out.push(grads.get(&conv_keys.0).as_vec());
        out.push(grads.get(&conv_keys.1).as_vec());
        if let Some(b) = &bn_after {
            out.push(grads.get(&b.gamma.key).as_vec());
            out.push(grads.get(&b.beta.key).as_vec());
            out.push(b.running_mean.clone());
            out.push(b.running_var.clone());
        }
        out
    }

    #[test]
    fn blocks_with_smooth_activations_match_finite_differences() {
        use crate::model::gradcheck::check;
        // The activation's backward pass after unpooling (conv → ELU → pool), and a batch norm
        // with its own activation after pooling.
        let c = conv(Shape::image(6, 6, 2), 3, 3, Activation::Elu(1.0));
        let o = c.geo.output;
        let pool = pool2(o);
        let mut block = ConvBlock::new(c.clone(), None, Some(pool.clone()));
        check(&mut block, random(2 * 72, 30), 2, 1e-3, 5e-3);
        let mut bn = BatchNorm::new(&Cpu::default(), o.c, 0.99, 1e-3);
        bn.act = Activation::LeakyRelu(0.2);
        let mut block = ConvBlock::new(c, Some(bn), Some(pool));
        check(&mut block, random(2 * 72, 31), 2, 1e-3, 5e-3);
    }

    #[test]
    fn streamed_pooling_matches_the_whole_batch_bit_for_bit() {
        // 20 channels: the pool's 16-lane blocks and its remainder; ReLU after the pool (with
        // negative biases, so some windows hold no positive value) and a linear convolution.
        for (seed, act) in [(1, Activation::Relu), (2, Activation::Linear)] {
            let mut c = conv(Shape::image(11, 12, 1), 3, 20, act);
            c.b.value = Arc::new(random(20, seed).iter().map(|b| b - 0.3).collect());
            let o = c.geo.output;
            let p = pool2(o);
            let block = ConvBlock::new(c.clone(), None, Some(p.clone()));
            let batch = 5;
            let col = c.geo.unfold(&random(batch * 11 * 12, 10 + seed), batch);
            let relu = block.relu_after_pool();
            let gemm_act = if relu { Activation::Linear } else { act };
            let whole = pool_raw(&p, &c.affine(&col, batch, gemm_act), batch, relu);
            assert!(!relu || whole.1.contains(&super::super::layers::maxpool::NO_GRAD));
            for chunk in [1, 2, 5] {
                let streamed = block.pool_streamed(&p, &col, batch, chunk, gemm_act, None);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&streamed.0), bits(&whole.0), "chunk {chunk}");
                assert_eq!(streamed.1, whole.1, "chunk {chunk}");
            }
        }
        // The seed models' first layer is streamed one sample at a time.
        let geo = conv(Shape::image(28, 28, 1), 3, 32, Activation::Relu).geo;
        assert_eq!(stream_chunk(&geo), Some(1));
    }

    #[test]
    fn batch_norm_blocks_computed_in_chunks_match_the_layers_bit_for_bit() {
        // The seed's batchnorm layer (26×26×32 outputs, one sample per chunk), and 20 channels
        // (a 16-channel block and 4 more in the pool; 2 samples per chunk); 3 samples.
        for (filters, chunk) in [(32, 1), (20, 2)] {
            let c = conv(Shape::image(28, 28, 1), 3, filters, Activation::Relu);
            assert_eq!(stream_chunk(&c.geo), Some(chunk));
            let (batch, o) = (3, c.geo.output);
            let x = random(batch * 28 * 28, 40);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            // Training (the mean's sums taken chunk by chunk; the batch norm's gradient sums
            // and the bias gradient taken while un-pooling and in its last pass).
            for (bn, pool) in [(Activation::Linear, true), (Activation::Relu, false)] {
                let fused = run_block(&c, Some(bn), pool, true, &x, batch);
                let apart = run_block(&c, Some(bn), pool, false, &x, batch);
                for (i, (a, b)) in fused.iter().zip(&apart).enumerate() {
                    assert_eq!(
                        bits(a),
                        bits(b),
                        "{filters}: bn {bn:?}, pool {pool}: output {i}"
                    );
                }
            }
            // Evaluation (running statistics; normalized and pooled chunk by chunk).
            let dev = Cpu::default();
            let mut bn = BatchNorm::new(&dev, o.c, 0.99, 1e-3);
            bn.gamma.value = Arc::new(random(o.c, 41));
            bn.beta.value = Arc::new(random(o.c, 42));
            bn.running_mean = random(o.c, 43);
            bn.running_var = random(o.c, 44).iter().map(|v| v.abs() + 0.1).collect();
            let xt: Act<NoneTape> = dev.tensor_from_vec(x, (batch, 28 * 28));
            let mut block = ConvBlock::new(c.clone(), Some(bn.clone()), Some(pool2(o)));
            let fused = block.forward(xt.clone(), &mut Mode::Eval).as_vec();
            let mut alone = ConvBlock::new(c, None, None);
            let y = alone.forward(xt, &mut Mode::Eval);
            let apart = pool2(o).forward(bn.forward(y, &mut Mode::Eval), &mut Mode::Eval);
            assert_eq!(bits(&fused), bits(&apart.as_vec()), "{filters}");
        }
    }

    /// The parallel paths of a fused block (the convolution and its pooling by pieces of
    /// samples, the un-pooling by samples with its sums taken by channels after it, Winograd's
    /// tiles written back by each piece) give the bits of one thread.
    #[test]
    fn fused_blocks_give_the_same_bits_on_1_2_and_3_threads() {
        use crate::model::geometry::Padding;
        use crate::model::layers::conv::tests::strided;
        use crate::model::par;
        use crate::model::winograd::Winograd;
        use Activation::{Linear, Relu};
        let bits = |v: &[Vec<f32>]| -> Vec<Vec<u32>> {
            v.iter()
                .map(|a| a.iter().map(|x| x.to_bits()).collect())
                .collect()
        };
        // The seed's first layer (18 samples: three pieces of six, each worth a thread).
        let seed = conv(Shape::image(28, 28, 1), 3, 32, Relu);
        let mut wide = strided(Shape::image(14, 14, 16), 3, 16, Linear, 1, Padding::Same);
        wide.winograd = Some(Winograd::new(wide.geo, 3));
        let x_seed = random(18 * 28 * 28, 50);
        let x_wide = random(18 * 14 * 14 * 16, 51);
        for (c, x, bn, pool) in [
            (&seed, &x_seed, None, true),
            (&seed, &x_seed, Some(Linear), true),
            (&seed, &x_seed, Some(Relu), false),
            (&wide, &x_wide, Some(Relu), true),
            (&wide, &x_wide, None, false),
        ] {
            let mut runs = Vec::new();
            for threads in [1, 2, 3] {
                par::set_threads(threads);
                runs.push(bits(&run_block(c, bn, pool, true, x, 18)));
            }
            par::set_threads(1);
            for (threads, run) in [(2, &runs[1]), (3, &runs[2])] {
                for (i, (a, b)) in run.iter().zip(&runs[0]).enumerate() {
                    assert!(
                        a == b,
                        "{:?}, bn {bn:?}, pool {pool}, {threads} threads: output {i}",
                        c.geo
                    );
                }
            }
        }
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
            let act = if relu {
                Activation::Relu
            } else {
                Activation::Linear
            };
            let c = conv(Shape::image(h, w, ci), k, co, act);
            let x = random(batch * h * w * ci, 20 + seed as u64);
            use Activation::{LeakyRelu, Linear, Relu};
            for (bn, pool) in [
                (None, true),
                (Some(Linear), true),
                (Some(Linear), false),
                (Some(Relu), true),
                (Some(Relu), false),
                (Some(LeakyRelu(0.2)), true),
            ] {
                let fused = run_block(&c, bn, pool, true, &x, batch);
                if relu && pool && bn.is_none() {
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
                        "case {seed}, bn {bn:?}, pool {pool}: output {i}"
                    );
                }
            }
        }
        assert!(zero_windows > 0, "no window was all non-positive");
    }
}
