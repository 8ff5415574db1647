//! `batchnorm = {}` (optionally `momentum`, `epsilon`, `activation`): batch normalization over
//! the channel (last) axis, Keras semantics: batch statistics (biased variance) while training,
//! running statistics r = m·r + (1 − m)·batch in evaluation. `activation` is applied to the
//! normalized output (Keras: a BatchNormalization then an Activation layer), for the
//! conv → batch norm → ReLU order.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::activation::{Activation, Kept};
use crate::model::affine::add_column_sums;
use crate::model::layer::{Forward, Layer, LayerIo, LayerSpec, Mode, Place, Shape, StoredArray};
use crate::model::par;
use crate::model::{data_of, put_grad, take_grad, Act, Param};
use crate::optim::in_backward::ParamGrad;
use crate::rng::Rng;

/// Batch normalization settings (Keras defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchNormSpec {
    /// Running statistics: r = momentum·r + (1 − momentum)·batch.
    pub momentum: f32,
    /// Added to the variance.
    pub epsilon: f32,
    /// Applied to the normalized output (default linear).
    #[serde(skip_serializing_if = "is_linear")]
    pub activation: Activation,
}

fn is_linear(a: &Activation) -> bool {
    *a == Activation::Linear
}

impl Default for BatchNormSpec {
    fn default() -> Self {
        BatchNormSpec {
            momentum: 0.99,
            epsilon: 1e-3,
            activation: Activation::Linear,
        }
    }
}

impl BatchNormSpec {
    /// A fresh layer for these shapes.
    pub fn build_bn(&self, io: &LayerIo, dev: &Cpu) -> BatchNorm {
        let mut bn = BatchNorm::new(dev, io.input.c, self.momentum, self.epsilon);
        bn.path = io.path.clone();
        bn.act = self.activation;
        bn
    }
}

impl LayerSpec for BatchNormSpec {
    fn keras_name(&self) -> &'static str {
        "batch_normalization"
    }

    fn output_shape(&self, input: Shape, _place: Place) -> Result<Shape, String> {
        if !(0.0..1.0).contains(&self.momentum) || self.epsilon <= 0.0 {
            return Err("expected 0 <= momentum < 1 and epsilon > 0".into());
        }
        if self.activation == Activation::Softmax {
            return Err("softmax is only allowed on the last dense layer".into());
        }
        Ok(input)
    }

    fn param_count(&self, input: Shape) -> usize {
        4 * input.c
    }

    /// Its passes over memory, about what the seed's batchnorm model measures over the
    /// baseline: 20 per normalized value.
    fn cost(&self, _input: Shape, output: Shape) -> f64 {
        20.0 * output.len() as f64
    }

    fn describe(&self) -> String {
        match self.activation {
            Activation::Linear => "batchnorm".into(),
            a => format!("batchnorm {}", a.name()),
        }
    }

    fn build(&self, io: &LayerIo, dev: &Cpu, _rng: &mut Rng) -> Box<dyn Layer> {
        Box::new(self.build_bn(io, dev))
    }
}

/// A batch-normalization layer.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// Where it sits in the network ([`LayerIo::path`]).
    pub path: String,
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
    /// Applied to the normalized output.
    pub act: Activation,
}

impl BatchNorm {
    /// A fresh layer over `channels` channels.
    pub fn new(dev: &Cpu, channels: usize, momentum: f32, epsilon: f32) -> Self {
        BatchNorm {
            path: "0".into(),
            channels,
            momentum,
            epsilon,
            gamma: Param::new(dev, vec![1.0; channels]),
            beta: Param::new(dev, vec![0.0; channels]),
            running_mean: vec![0.0; channels],
            running_var: vec![1.0; channels],
            act: Activation::Linear,
        }
    }

    /// The statistics that normalize the rows of `v` (channels last): the batch's in training
    /// (which also updates the running ones), else the running ones. Shared by this layer's op and
    /// the fused convolution block.
    pub(crate) fn normalize(&mut self, v: &[f32], training: bool) -> Normalized {
        self.normalize_summed(v, training, None)
    }

    /// [`BatchNorm::normalize`], given in training the per-channel sums of `v`'s rows (from
    /// [`add_channel_sums`], which a fused block runs on each chunk of its convolution's output
    /// while it is in cache); `None` sums them here.
    pub(crate) fn normalize_summed(
        &mut self,
        v: &[f32],
        training: bool,
        sums: Option<Vec<f64>>,
    ) -> Normalized {
        let c = self.channels;
        let n = (v.len() / c) as f32;
        let (mean, var) = if training {
            let mean = sums.unwrap_or_else(|| {
                let mut sums = vec![0.0f64; c];
                add_channel_sums(&mut sums, v);
                sums
            });
            let mean: Vec<f32> = mean.iter().map(|m| (m / n as f64) as f32).collect();
            let mut var = vec![0.0f64; c];
            par::by_channels(&mut var, v.len(), |r, var| {
                for row in v.chunks_exact(c) {
                    for ((s, x), m) in var.iter_mut().zip(&row[r.clone()]).zip(&mean[r.clone()]) {
                        *s += ((x - m) as f64).powi(2);
                    }
                }
            });
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
        Normalized {
            mean,
            inv,
            n,
            training,
            gamma: self.gamma.value.to_vec(),
            beta: self.beta.value.to_vec(),
        }
    }
}

impl Forward for BatchNorm {
    /// Normalizes `x`; in training also updates the running statistics.
    fn forward<T: Tape<f32, Cpu> + 'static>(&mut self, x: Act<T>, mode: &mut Mode) -> Act<T> {
        let (x, mut tape) = x.split_tape();
        let shape = *x.shape();
        let v = data_of(&x);
        let norm = self.normalize(&v, mode.training());
        let act = self.act;
        let mut y = norm.apply(&v);
        act.apply(&mut y);
        let saved_y = match T::OWNS_TAPE {
            true => act.keep(&y),
            false => Kept::Nothing,
        };
        let out_t = x.device().tensor_from_vec(y, shape);
        if T::OWNS_TAPE {
            let (xg, yg) = (x.ghost(), out_t.ghost());
            let (gk, bk) = (self.gamma.grad_key(), self.beta.grad_key());
            tape.add_backward_op(move |grads| {
                // In place: no op reads this output's gradient after this one.
                let mut gy = take_grad!(grads, yg);
                act.backward_kept(&mut gy, &saved_y);
                let (dgamma, dbeta) = norm.backward(&gy, &v, grads.get_or_alloc_mut(&xg)?);
                ParamGrad::add(&gk, grads, &dgamma)?;
                ParamGrad::add(&bk, grads, &dbeta)?;
                put_grad!(grads, yg, gy);
                Ok(())
            });
        }
        out_t.put_tape(tape)
    }
}

impl Layer for BatchNorm {
    fn params(&mut self) -> Vec<&mut Param> {
        vec![&mut self.gamma, &mut self.beta]
    }

    fn arrays(&mut self) -> Vec<StoredArray<'_>> {
        let (layer, c) = (&self.path, self.channels);
        vec![
            StoredArray {
                layer: layer.clone(),
                name: "gamma",
                shape: vec![c],
                values: std::sync::Arc::make_mut(&mut self.gamma.value),
            },
            StoredArray {
                layer: layer.clone(),
                name: "beta",
                shape: vec![c],
                values: std::sync::Arc::make_mut(&mut self.beta.value),
            },
            StoredArray {
                layer: layer.clone(),
                name: "running_mean",
                shape: vec![c],
                values: &mut self.running_mean,
            },
            StoredArray {
                layer: layer.clone(),
                name: "running_var",
                shape: vec![c],
                values: &mut self.running_var,
            },
        ]
    }
}

/// Adds each row of `v` (one pixel's channels) to the per-channel sums, in row order, in f64:
/// the first pass of a batch's mean.
pub(crate) fn add_channel_sums(sums: &mut [f64], v: &[f32]) {
    let c = sums.len();
    par::by_channels(sums, v.len(), |r, sums| {
        for row in v.chunks_exact(c) {
            for (m, x) in sums.iter_mut().zip(&row[r.clone()]) {
                *m += *x as f64;
            }
        }
    });
}

/// The per-channel maps of one normalized batch: x̂ = (x − mean)·inv, y = γ·x̂ + β. x̂ is
/// recomputed from x wherever it is needed (the same two roundings each time) rather than stored:
/// one full-size buffer less to write and read back.
pub(crate) struct Normalized {
    mean: Vec<f32>,
    /// 1/√(var + ε).
    inv: Vec<f32>,
    /// Values per channel.
    n: f32,
    /// Whether batch statistics were used (they then depend on the input).
    training: bool,
    /// γ and β at the forward pass.
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl Normalized {
    /// y for the rows of `x`, by pieces of rows on the threads.
    pub(crate) fn apply(&self, x: &[f32]) -> Vec<f32> {
        let c = self.inv.len();
        let rows = x.len() / c;
        let (mean, inv, gamma, beta) = (&self.mean, &self.inv, &self.gamma, &self.beta);
        let f = |r: std::ops::Range<usize>, y: &mut [std::mem::MaybeUninit<f32>]| {
            let x = &x[r.start * c..r.end * c];
            for (xrow, yrow) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
                let per_channel = mean.iter().zip(inv).zip(gamma.iter().zip(beta));
                for ((x, y), ((m, i), (g, b))) in xrow.iter().zip(yrow).zip(per_channel) {
                    y.write(g * ((x - m) * i) + b);
                }
            }
        };
        // SAFETY: `f` writes each row of its part in full.
        unsafe { par::build(rows, c, &par::row_ranges(rows, x.len()), f) }
    }

    /// Adds the input gradient for output gradient `gy` at input `x` to `gx`; returns (dγ, dβ).
    pub(crate) fn backward(&self, gy: &[f32], x: &[f32], gx: &mut [f32]) -> (Vec<f32>, Vec<f32>) {
        let mut g = gy.to_vec();
        let sums = self.backward_in_place(&mut g, x, Activation::Linear, None, None);
        for (a, b) in gx.iter_mut().zip(&g) {
            *a += b;
        }
        sums
    }

    /// Zeroed sums for [`Normalized::add_grad_row`].
    pub(crate) fn grad_sums(&self) -> GradSums {
        let c = self.inv.len();
        GradSums {
            dgamma: vec![0.0; c],
            dbeta: vec![0.0; c],
        }
    }

    /// Adds one row (one pixel's channels) of the output gradient `grow` at input `xrow` to
    /// the sums: the input gradient's first pass, row by row in order (a fused block runs it
    /// while un-pooling, on each row just written).
    #[inline(always)]
    pub(crate) fn add_grad_row(&self, sums: &mut GradSums, grow: &[f32], xrow: &[f32]) {
        // Zips over one row's channels, not indexed loops: no bounds checks, so the
        // per-channel sums vectorize across channels (each channel's sum in the same order).
        for ((((db, dg), &g), &x), (&m, &i)) in sums
            .dbeta
            .iter_mut()
            .zip(sums.dgamma.iter_mut())
            .zip(grow)
            .zip(xrow)
            .zip(self.mean.iter().zip(&self.inv))
        {
            let h = (x - m) * i;
            *db += g;
            *dg += g * h;
        }
    }

    /// Turns `g`, the output gradient at input `x`, into the input gradient (exactly what
    /// adding it to zeros gives); returns (dγ, dβ). `before` is the activation that produced
    /// `x` inside a fused block: when it zeroes gradients at non-positive outputs (ReLU), that
    /// is done in the same pass; any other activation's backward is applied after. In place,
    /// the fused block's backward pass needs no second full-size buffer (2.7 MB per batchnorm
    /// batch, zero-filled each step). `sums` are `g`'s [`Normalized::add_grad_row`] sums over
    /// all rows when the caller has them (else they are summed here); with `bias`, the input
    /// gradient's column sums are added to it (`add_column_sums` on the result), each row
    /// right after it is computed where `before` needs no pass of its own.
    pub(crate) fn backward_in_place(
        &self,
        g: &mut [f32],
        x: &[f32],
        before: Activation,
        sums: Option<GradSums>,
        mut bias: Option<&mut [f32]>,
    ) -> (Vec<f32>, Vec<f32>) {
        let relu_mask = before.zero_grad_at_nonpositive();
        let c = self.inv.len();
        if par::channel_ranges(c, g.len()).len() > 1 {
            return self.backward_in_place_par(g, x, before, sums, bias);
        }
        let (mean, gamma, inv, n) = (&self.mean, &self.gamma, &self.inv, self.n);
        let GradSums { dgamma, dbeta } = sums.unwrap_or_else(|| {
            let mut sums = self.grad_sums();
            for (grow, xrow) in g.chunks_exact(c).zip(x.chunks_exact(c)) {
                self.add_grad_row(&mut sums, grow, xrow);
            }
            sums
        });
        // γ·inv/n (or γ·inv) per channel, computed once: the same rounding as inline.
        let k: Vec<f32> = if self.training {
            gamma.iter().zip(inv).map(|(g, i)| g * i / n).collect()
        } else {
            gamma.iter().zip(inv).map(|(g, i)| g * i).collect()
        };
        let per_channel = || {
            k.iter()
                .zip(mean)
                .zip(inv)
                .zip(dbeta.iter().zip(&dgamma))
        };
        let row_bias = relu_mask || !before.needs_output();
        // `0.0 + d`: what adding to a zero-filled buffer gave (a −0 becomes +0).
        for (grow, xrow) in g.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            let cells = grow.iter_mut().zip(xrow);
            if self.training {
                for ((g, &x), (((&k, &m), &i), (&db, &dg))) in cells.zip(per_channel()) {
                    let h = (x - m) * i;
                    let d = 0.0 + k * (n * *g - db - h * dg);
                    *g = if relu_mask && x <= 0.0 { 0.0 } else { d };
                }
            } else {
                // Fixed statistics: a per-channel affine map.
                for ((g, &x), (((&k, _), _), _)) in cells.zip(per_channel()) {
                    let d = 0.0 + k * *g;
                    *g = if relu_mask && x <= 0.0 { 0.0 } else { d };
                }
            }
            if let Some(b) = bias.as_deref_mut().filter(|_| row_bias) {
                add_column_sums(b, grow);
            }
        }
        if !relu_mask {
            before.backward(g, x);
        }
        if let Some(b) = bias.filter(|_| !row_bias) {
            add_column_sums(b, g);
        }
        (dgamma, dbeta)
    }
}

impl Normalized {
    /// [`Normalized::backward_in_place`] on the threads, each value computed as there: the
    /// sums by pieces of channels (each channel's in row order), the element-wise pass by
    /// pieces of rows, then the bias's sums by channels.
    fn backward_in_place_par(
        &self,
        g: &mut [f32],
        x: &[f32],
        before: Activation,
        sums: Option<GradSums>,
        bias: Option<&mut [f32]>,
    ) -> (Vec<f32>, Vec<f32>) {
        let relu_mask = before.zero_grad_at_nonpositive();
        let c = self.inv.len();
        let (mean, gamma, inv, n) = (&self.mean, &self.gamma, &self.inv, self.n);
        let channels = par::channel_ranges(c, g.len());
        let GradSums { dgamma, dbeta } = sums.unwrap_or_else(|| {
            let mut sums = self.grad_sums();
            let gr: &[f32] = g;
            par::each_mut2(&mut sums.dgamma, 1, &mut sums.dbeta, 1, &channels, |r, dgs, dbs| {
                // Summed in copies of its own, as `par::by_channels` does.
                let (mut dg, mut db) = (dgs.to_vec(), dbs.to_vec());
                for (grow, xrow) in gr.chunks_exact(c).zip(x.chunks_exact(c)) {
                    let (grow, xrow) = (&grow[r.clone()], &xrow[r.clone()]);
                    let stats = mean[r.clone()].iter().zip(&inv[r.clone()]);
                    for ((((db, dg), &g), &x), (&m, &i)) in
                        db.iter_mut().zip(dg.iter_mut()).zip(grow).zip(xrow).zip(stats)
                    {
                        let h = (x - m) * i;
                        *db += g;
                        *dg += g * h;
                    }
                }
                dgs.copy_from_slice(&dg);
                dbs.copy_from_slice(&db);
            });
            sums
        });
        let k: Vec<f32> = if self.training {
            gamma.iter().zip(inv).map(|(g, i)| g * i / n).collect()
        } else {
            gamma.iter().zip(inv).map(|(g, i)| g * i).collect()
        };
        let rows = g.len() / c;
        par::each_mut(g, c, &par::row_ranges(rows, rows * c), |r, g| {
            let xs = &x[r.start * c..r.end * c];
            for (grow, xrow) in g.chunks_exact_mut(c).zip(xs.chunks_exact(c)) {
                let per_channel = k.iter().zip(mean).zip(inv).zip(dbeta.iter().zip(&dgamma));
                let cells = grow.iter_mut().zip(xrow);
                if self.training {
                    for ((g, &x), (((&k, &m), &i), (&db, &dg))) in cells.zip(per_channel) {
                        let h = (x - m) * i;
                        let d = 0.0 + k * (n * *g - db - h * dg);
                        *g = if relu_mask && x <= 0.0 { 0.0 } else { d };
                    }
                } else {
                    for ((g, &x), (((&k, _), _), _)) in cells.zip(per_channel) {
                        let d = 0.0 + k * *g;
                        *g = if relu_mask && x <= 0.0 { 0.0 } else { d };
                    }
                }
            }
            if !relu_mask {
                before.backward(g, xs);
            }
        });
        if let Some(b) = bias {
            let gr: &[f32] = g;
            par::each_mut(b, 1, &channels, |r, b| {
                for row in gr.chunks_exact(c) {
                    for (b, v) in b.iter_mut().zip(&row[r.clone()]) {
                        *b += v;
                    }
                }
            });
        }
        (dgamma, dbeta)
    }
}

/// y = γ·((x − mean)·inv) + β as [`Normalized::apply`] computes it, a value or 16 channels at
/// a time (for a kernel that normalizes values as it reads them).
impl Normalized {
    /// Channels `ch..ch + 16` of one cell, normalized.
    #[inline(always)]
    pub(crate) fn normalize_block(&self, ch: usize, xs: &[f32; 16]) -> [f32; 16] {
        let at = |v: &[f32]| -> [f32; 16] { v[ch..ch + 16].try_into().expect("16") };
        let (m, i, g, b) = (at(&self.mean), at(&self.inv), at(&self.gamma), at(&self.beta));
        std::array::from_fn(|l| g[l] * ((xs[l] - m[l]) * i[l]) + b[l])
    }

    /// Channel `ch` of one cell, normalized.
    #[inline(always)]
    pub(crate) fn normalize_one(&self, ch: usize, x: f32) -> f32 {
        self.gamma[ch] * ((x - self.mean[ch]) * self.inv[ch]) + self.beta[ch]
    }
}

/// Per-channel sums of an output gradient: Σg (dβ) and Σg·x̂ (dγ).
pub(crate) struct GradSums {
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::gradcheck::{check, random};

    #[test]
    fn training_output_has_zero_mean_unit_variance_and_updates_running_stats() {
        let dev = Cpu::default();
        let mut bn = BatchNorm::new(&dev, 2, 0.99, 1e-3);
        let x = vec![1.0, 10.0, 3.0, 20.0, 5.0, 30.0];
        let mut rng = Rng::new(0, 0);
        let y = bn
            .forward(dev.tensor_from_vec(x, (3, 2)), &mut Mode::Train(&mut rng))
            .as_vec();
        let m0 = (y[0] + y[2] + y[4]) / 3.0;
        assert!(m0.abs() < 1e-6);
        let v0 = (y[0] * y[0] + y[2] * y[2] + y[4] * y[4]) / 3.0;
        assert!((v0 - 8.0 / (8.0 / 3.0 + 1e-3) / 3.0).abs() < 1e-4, "{v0}");
        assert!((bn.running_mean[0] - 0.03).abs() < 1e-6);
        assert!((bn.running_var[1] - (0.99 + 0.01 * 200.0 / 3.0)).abs() < 1e-4);
    }

    /// Keras 3.15.1's numbers (bench/reference_numbers.py, section batchnorm).
    #[allow(clippy::excessive_precision)]
    #[test]
    fn matches_keras_in_training_and_inference() {
        // keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3) on 4 samples of 1×2
        // positions × 3 channels, γ, β and the moving statistics set; the gradients of
        // sum(y ⊙ r) by tf.GradientTape.
        let x: Vec<f32> = (0..24).map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.3).collect();
        let r: Vec<f32> = (0..24).map(|i| ((i * 5) % 13) as f32 / 13.0 - 0.5).collect();
        let y_train = [
            -0.921948075, 2.06533146, 0.841907978, 0.746538639, 1.4180938, 1.11286187, 0.57968986,
            0.770856261, 1.38381588, 0.41284129, 0.123618722, 1.6547699, 0.245992571, -0.523618817,
            -1.05476975, 0.0791439414, -1.17085636, -0.783815742, -0.0877047181, -1.81809378,
            -0.512861848, -0.254553407, -2.46533132, -0.241907835,
        ];
        let dx = [
            -0.510591507, -1.16603887, -0.744105041, -0.633536816, 0.184202731, -1.25945067,
            -0.310647041, 1.53444421, 1.20569754, 0.0122426674, 2.88468552, 0.690352082,
            0.33513236, -2.88468552, 0.79989481, 0.658022106, -1.53444409, 0.284549266,
            0.980911911, -0.184202671, -0.230796218, -0.531533659, 1.16603899, -0.746141732,
        ];
        let dgamma = [0.529423654, 0.663833439, 0.562750578];
        let dbeta = [-0.692307711, -0.615384638, 0.461538494];
        let moving_mean = [0.101568177, 0.198181823, 0.29854548];
        let moving_var = [1.4857322, 0.495433897, 1.9811157];
        let y_eval = [
            -0.0646694154, 0.0941788554, 0.531425297, 0.308117777, -0.09935987, 0.595997095,
            0.270839036, -0.292898566, 0.660568893, 0.233560324, -0.486437291, 0.725140691,
            0.196281612, -0.679975986, 0.0794228017, 0.1590029, -0.873514712, 0.1439946,
            0.121724173, -1.06705344, 0.208566368, 0.0844454616, -1.26059222, 0.273138165,
        ];
        let close = |got: &[f32], want: &[f32], what: &str| {
            assert_eq!(got.len(), want.len(), "{what}");
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() <= 2e-6 * (1.0 + w.abs()), "{what}: {got:?}");
            }
        };
        let dev = Cpu::default();
        let mut bn = BatchNorm::new(&dev, 3, 0.99, 1e-3);
        bn.gamma.value = Arc::new(vec![0.5, 1.5, -1.0]);
        bn.beta.value = Arc::new(vec![0.1, -0.2, 0.3]);
        bn.running_mean = vec![0.1, 0.2, 0.3];
        bn.running_var = vec![1.5, 0.5, 2.0];
        let xt: Act = dev.tensor_from_vec(x.clone(), (4, 6));
        let mut rng = Rng::new(0, 0);
        let y = bn.forward(xt.clone().leaky_traced(), &mut Mode::Train(&mut rng));
        close(&y.as_vec(), &y_train, "training output");
        let rt: Act = dev.tensor_from_vec(r, (4, 6));
        let grads = (y * rt).sum::<(), _>().backward();
        close(&grads.get(&xt).as_vec(), &dx, "d/dx");
        close(&grads.get(&bn.gamma.key).as_vec(), &dgamma, "d/dγ");
        close(&grads.get(&bn.beta.key).as_vec(), &dbeta, "d/dβ");
        close(&bn.running_mean, &moving_mean, "moving mean");
        close(&bn.running_var, &moving_var, "moving variance");
        let y = bn.forward(dev.tensor_from_vec(x, (4, 6)) as Act, &mut Mode::Eval);
        close(&y.as_vec(), &y_eval, "inference output");
    }

    #[test]
    fn gradients_match_finite_differences() {
        let dev = Cpu::default();
        let mut bn = BatchNorm::new(&dev, 3, 0.99, 1e-3);
        bn.gamma.value = Arc::new(vec![0.5, 1.5, -1.0]);
        bn.beta.value = Arc::new(vec![0.1, -0.2, 0.3]);
        // 4 samples of 2 positions × 3 channels.
        check(&mut bn, random(4 * 6, 11), 4, 1e-2, 5e-3);
        // With an activation after the normalization (smooth ones: finite differences need
        // no kink nearby).
        for act in [Activation::Elu(1.0), Activation::LeakyRelu(0.2)] {
            bn.act = act;
            check(&mut bn, random(4 * 6, 12), 4, 1e-3, 5e-3);
        }
    }
}
