//! The network, built at run time from the experiment's layer list.
//!
//! Activations are dfdx tensors of shape `(batch, features)` (images flattened NHWC, as Keras
//! lays them out) and gradients flow through dfdx's tape. Each layer is one custom op on that
//! tape with its own CPU kernel (dfdx's conv and pooling are nightly-only); see [`layer`] for
//! the seam a layer kind implements and [`layers`] for the registry. Weights live in
//! [`Param`]s: our kernels read `value`, and `key` is the dfdx tensor under whose id the tape
//! accumulates the weight's gradient.

pub mod activation;
pub mod affine;
pub mod fused;
pub mod gemm;
pub mod geometry;
pub mod init;
pub mod io;
pub mod layer;
pub mod layers;
pub mod loss;
pub mod par;
pub mod scratch;
pub mod team;
pub mod winograd;

use std::fmt;
use std::sync::Arc;

use anyhow::{bail, Result};
use dfdx::prelude::*;

use crate::data::DatasetInfo;
use crate::rng::Rng;
use activation::Activation;
use layer::{Layer, LayerIo, Mode, NetTape, Place, Shape, StoredArray};
use layers::LayerEntry;

/// Batch size used for evaluation (does not change any result, only speed and memory).
pub const EVAL_BATCH: usize = 128;

/// An activation batch: `(batch, features)` on the CPU with tape `T`.
pub type Act<T = NoneTape> = Tensor<(usize, usize), f32, Cpu, T>;

/// Takes the gradient buffer of ghost `$g` out of `$grads` (allocating zeros if absent); give it
/// back with `put_grad!` so dfdx's allocation cache can reuse it.
macro_rules! take_grad {
    ($grads:expr, $g:expr) => {
        std::mem::take(&mut **$grads.get_or_alloc_mut(&$g)?)
    };
}
/// Returns a buffer taken with `take_grad!`.
macro_rules! put_grad {
    ($grads:expr, $g:expr, $v:expr) => {
        **$grads.get_or_alloc_mut(&$g)? = $v
    };
}
pub(crate) use put_grad;
pub(crate) use take_grad;

/// A trainable tensor: the values our kernels read, its tape key, and its gradient buffer.
/// (Optimizer state, such as momentum, belongs to the optimizer.)
#[derive(Debug, Clone)]
pub struct Param {
    /// Current weights, in the layout the layer's kernel expects. Shared, copy-on-write, with
    /// the backward ops of the current step (which need the weights of their forward pass):
    /// sharing instead of a copy per step saved copying deep models' largest weights (2 MB for
    /// the baseline's dense layer) every step; `Arc::make_mut` copies only if a tape still
    /// holds them when they change (a backward op drops its copy before the update).
    pub value: Arc<Vec<f32>>,
    /// dfdx tensor whose id keys this parameter's gradient on the tape (outside a training
    /// step: the gradient checks).
    pub key: Tensor<(usize,), f32, Cpu>,
    /// Names this parameter to a training step's update (copies of it share it, as they share
    /// the tape key).
    pub id: u64,
    /// Its gradient in a training step, written by its layer's backward op and consumed there
    /// by the optimizer (see [`crate::optim::in_backward`]); kept for the next step.
    pub grad: Vec<f32>,
}

/// What a backward op holds to hand over a parameter's gradient (see
/// [`crate::optim::in_backward::ParamGrad`]).
#[derive(Debug, Clone)]
pub struct GradKey {
    /// [`Param::id`].
    pub id: u64,
    /// [`Param::key`].
    pub tape: Tensor<(usize,), f32, Cpu>,
}

impl Param {
    /// A parameter holding `value`.
    pub fn new(dev: &Cpu, value: Vec<f32>) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Param {
            key: dev.zeros_like(&(value.len(),)),
            value: Arc::new(value),
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            grad: Vec::new(),
        }
    }

    /// `n` values drawn from U(±limit).
    pub fn uniform(dev: &Cpu, n: usize, limit: f32, rng: &mut Rng) -> Self {
        Param::new(dev, (0..n).map(|_| rng.uniform(limit)).collect())
    }

    /// What a backward op holds to hand over this parameter's gradient.
    pub fn grad_key(&self) -> GradKey {
        GradKey {
            id: self.id,
            tape: self.key.clone(),
        }
    }
}

/// Sizes `check` (and so `run`, `final` and `bench`) refuses, so that a network that cannot fit
/// is named with its estimate instead of aborting a run on an allocation. Documented in the
/// README ("Limits").
pub mod limits {
    /// Values in one layer's output per image (2²⁴: a 28×28 image with 21,400 channels), the
    /// limit an input image has too.
    pub const VALUES_PER_IMAGE: f64 = crate::data::dataset::MAX_IMAGE_VALUES;
    /// Forward FLOPs of one layer per image (10¹¹: ~1,000× the deepest committed model).
    pub const FLOPS_PER_IMAGE: f64 = 1e11;
    /// Parameters of the whole network (100 M: 400 MB of weights, ~1.6 GB with gradients and
    /// optimizer state).
    pub const PARAMS: usize = 100_000_000;
    /// Estimated memory of one training step (or evaluation batch) of one worker: 8 GiB.
    pub const STEP_BYTES: f64 = 8.0 * 1024.0 * 1024.0 * 1024.0;
}

/// One row of the network summary (`mnist-lab check`).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSummary {
    /// Where it sits: its index in `model.layers` ("3"), or inside a block, the block's path,
    /// the repetition and the inner index ("3.0.1"; the shortcut's layers "3.0.s0").
    pub path: String,
    /// Layer kind as Keras names it.
    pub kind: &'static str,
    /// Input shape per sample.
    pub input: Shape,
    /// Output shape per sample.
    pub output: Shape,
    /// Number of parameters (Keras counts batch-norm's running statistics too).
    pub params: usize,
    /// Forward FLOPs per sample of its matrix products.
    pub flops: f64,
    /// Relative training cost per sample (see [`layer::LayerSpec::cost`]).
    pub cost: f64,
    /// Values per sample a training step holds besides the output (see
    /// [`layer::LayerSpec::scratch`]).
    pub scratch: f64,
    /// How it is computed, where there is a choice (see [`layer::LayerSpec::algorithm`]).
    pub algorithm: Option<&'static str>,
    /// The rows of the layers a block holds (see [`layer::LayerSpec::inner`]); empty for a
    /// plain layer.
    pub inner: Vec<LayerSummary>,
}

impl LayerSummary {
    /// This row and every row nested in it, depth first.
    pub fn all(&self) -> Vec<&LayerSummary> {
        let mut out = vec![self];
        for r in &self.inner {
            out.extend(r.all());
        }
        out
    }
}

impl fmt::Display for LayerSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Rows inside blocks are indented by their depth.
        let depth = self.path.matches('.').count() / 2;
        let kind = format!("{}{}", "  ".repeat(depth), self.kind);
        write!(
            f,
            "{:<26} {:<16} {:>10}",
            kind,
            self.output.to_string(),
            self.params
        )?;
        match self.algorithm {
            Some(a) => write!(f, "  {a}"),
            None => Ok(()),
        }
    }
}

/// The input shape of a network on `info`'s images.
pub fn input_shape(info: &DatasetInfo) -> Shape {
    Shape::image(info.image.height, info.image.width, info.image.channels)
}

/// Chains the layers' shapes from the dataset's images to its classes: every layer's shapes,
/// parameters and FLOPs, or which layer cannot take its input and why.
pub fn summarize(layers: &[LayerEntry], info: &DatasetInfo) -> Result<Vec<LayerSummary>> {
    if layers.is_empty() {
        bail!("model.layers is empty: expected at least one `[[model.layers]]` entry");
    }
    info.image
        .check_size()
        .map_err(|e| anyhow::anyhow!("the input: {e}"))?;
    let out =
        chain(layers, input_shape(info), true, "", "model.").map_err(|e| anyhow::anyhow!("{e}"))?;
    let last = layers.len() - 1;
    let classes = info.classes();
    match &layers[last] {
        LayerEntry::Dense(d) if d.units == classes && d.activation == Activation::Softmax => {}
        other => bail!(
            "model.layers[{last}] ({}): the last layer must be `dense = {{ units = {classes}, activation = \"softmax\" }}` ({classes} classes)",
            other.key()
        ),
    }
    Ok(out)
}

/// Every layer's row for `layers` chained from `input`, or which layer cannot take its input
/// and why, named `{name}layers[i] (kind)`. `ends` when the last of them is the network's
/// last layer; `path` prefixes each row's path (empty at the top, "3.0." inside a block).
/// Blocks call it for the layers they hold.
pub fn chain(
    layers: &[LayerEntry],
    input: Shape,
    ends: bool,
    path: &str,
    name: &str,
) -> Result<Vec<LayerSummary>, String> {
    let last = layers.len().saturating_sub(1);
    let mut shape = input;
    let mut out = Vec::with_capacity(layers.len());
    for (i, entry) in layers.iter().enumerate() {
        let spec = entry.spec();
        let place = Place {
            last: ends && i == last,
        };
        let at = || format!("{name}layers[{i}] ({})", entry.key());
        let output = spec
            .output_shape(shape, place)
            .map_err(|e| format!("{}: {e}", at()))?;
        // Checked in f64 before anything multiplies sizes in usize (param_count does).
        let values = output.h as f64 * output.w as f64 * output.c as f64;
        if values > limits::VALUES_PER_IMAGE {
            return Err(format!(
                "{}: its output {output} is {values:.3e} values per image, above the limit of {} (2^24); make it smaller",
                at(),
                limits::VALUES_PER_IMAGE
            ));
        }
        let flops = spec.flops(shape, output);
        if flops > limits::FLOPS_PER_IMAGE {
            return Err(format!(
                "{}: {flops:.3e} FLOPs per image, above the limit of {:.0e}; make it smaller",
                at(),
                limits::FLOPS_PER_IMAGE
            ));
        }
        let params = spec.param_count(shape);
        let total = out.iter().map(|l: &LayerSummary| l.params).sum::<usize>() + params;
        if total > limits::PARAMS {
            return Err(format!(
                "{}: {params} parameters, {total} in the network so far, above the limit of {}; make it smaller",
                at(),
                limits::PARAMS
            ));
        }
        let path = format!("{path}{i}");
        out.push(LayerSummary {
            kind: spec.keras_name(),
            input: shape,
            output,
            params,
            flops,
            cost: spec.cost(shape, output),
            scratch: spec.scratch(shape, output),
            algorithm: spec.algorithm(shape, output),
            inner: spec.inner(shape, &path),
            path,
        });
        shape = output;
    }
    Ok(out)
}

/// Builds `layers` (whose shapes are `io`) as the units the fusion plan groups them into,
/// drawing weights from `rng` layer by layer, in order: a network's layer list, or a block's.
pub fn build_layers(
    layers: &[LayerEntry],
    io: &[LayerIo],
    dev: &Cpu,
    rng: &mut Rng,
) -> Vec<Box<dyn Layer>> {
    fused::plan(layers)
        .into_iter()
        .map(|unit| fused::build(unit, layers, io, dev, rng))
        .collect()
}

/// Estimated bytes one worker needs for a training step of `batch` images (or an evaluation
/// batch, whichever is larger): weights, their gradients and two optimizer slots, and per image
/// every layer's output and its gradient plus each layer's scratch. Returns the estimate and
/// the index of the layer that holds the most per image.
pub fn step_bytes(rows: &[LayerSummary], batch: usize, eval_batch: usize) -> (f64, usize) {
    let params: usize = rows.iter().map(|r| r.params).sum();
    let per_image = |r: &LayerSummary| 2.0 * r.output.len() as f64 + r.scratch;
    let train: f64 = rows.iter().map(per_image).sum::<f64>() * batch as f64;
    // Evaluation keeps only outputs and half the scratch, but of bigger batches.
    let eval: f64 = rows
        .iter()
        .map(|r| r.output.len() as f64 + r.scratch / 2.0)
        .sum::<f64>()
        * eval_batch as f64;
    let largest = (0..rows.len())
        .max_by(|&a, &b| per_image(&rows[a]).total_cmp(&per_image(&rows[b])))
        .unwrap_or(0);
    (4.0 * (4.0 * params as f64 + train.max(eval)), largest)
}

/// A network ready to train or evaluate.
#[derive(Debug)]
pub struct Network {
    /// Built layers in order (a convolution and what is fused into it count as one).
    pub layers: Vec<Box<dyn Layer>>,
    /// The device tensors are made on.
    pub dev: Cpu,
    /// Input values per sample.
    pub inputs: usize,
    /// Number of classes (outputs per sample).
    pub classes: usize,
}

impl Network {
    /// Builds the network of `layers` for `info`'s images and classes, with weights drawn from
    /// `rng` layer by layer, in order.
    pub fn build(layers: &[LayerEntry], info: &DatasetInfo, rng: &mut Rng) -> Result<Self> {
        let summary = summarize(layers, info)?;
        let io: Vec<LayerIo> = summary
            .iter()
            .enumerate()
            .map(|(index, s)| LayerIo {
                index,
                path: s.path.clone(),
                input: s.input,
                output: s.output,
                // Nothing is trained below the first layer.
                input_grad: index > 0,
            })
            .collect();
        // dfdx's allocation cache stays off: measured here it grew a worker's peak RSS from
        // 96 MB to 1.4 GB and made a step slower (buffers of every size pile up unreused).
        let dev = Cpu::default();
        let built = build_layers(layers, &io, &dev, rng);
        Ok(Network {
            layers: built,
            dev,
            inputs: input_shape(info).len(),
            classes: info.classes(),
        })
    }

    /// Runs the network on a batch in `mode`. Returns the logits (the last layer's softmax
    /// lives in the loss).
    pub fn forward<T: NetTape>(&mut self, mut x: Act<T>, mode: &mut Mode) -> Act<T> {
        for layer in &mut self.layers {
            x = T::run(layer.as_mut(), x, mode);
        }
        x
    }

    /// Every trainable parameter, in layer order (weights before biases, gamma before beta).
    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        self.layers.iter_mut().flat_map(|l| l.params()).collect()
    }

    /// Every array stored in the model file, in layer order.
    pub fn arrays(&mut self) -> Vec<StoredArray<'_>> {
        self.layers.iter_mut().flat_map(|l| l.arrays()).collect()
    }
}

/// Copies a tensor's data out (our kernels need slices; dfdx keeps its buffer private).
pub(crate) fn data_of<T>(x: &Tensor<(usize, usize), f32, Cpu, T>) -> Vec<f32> {
    let (r, c) = *x.shape();
    let mut v = vec![0.0; r * c];
    x.copy_into(&mut v);
    v
}

#[cfg(test)]
pub(crate) mod gradcheck {
    //! Finite-difference checks shared by the layer tests.
    use super::*;
    use crate::model::layer::{Layer, Mode};

    /// The layer's output in training mode, with the same random stream every call.
    fn apply<T: NetTape>(layer: &mut dyn Layer, x: Act<T>) -> Act<T> {
        let mut rng = Rng::new(7, 7);
        T::run(layer, x, &mut Mode::Train(&mut rng))
    }

    fn objective(layer: &mut dyn Layer, dev: &Cpu, input: &[f32], batch: usize, r: &[f32]) -> f64 {
        let t: Act = dev.tensor_from_vec(input.to_vec(), (batch, input.len() / batch));
        let y = apply(layer, t);
        y.as_vec()
            .iter()
            .zip(r)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    }

    /// Checks d(sum(out ⊙ r))/d(input) and /d(every parameter) against central differences,
    /// for a layer as a network holds it (what `build` returns) or a concrete one.
    pub fn check(layer: &mut dyn Layer, input: Vec<f32>, batch: usize, eps: f32, tol: f32) {
        let dev = Cpu::default();
        let x: Act = dev.tensor_from_vec(input.clone(), (batch, input.len() / batch));
        let y = apply(layer, x.clone().leaky_traced());
        let mut rng = Rng::new(99, 0);
        let r: Vec<f32> = (0..y.shape().0 * y.shape().1)
            .map(|_| rng.uniform(1.0))
            .collect();
        let rt: Act = dev.tensor_from_vec(r.clone(), *y.shape());
        let grads = (y * rt).sum::<(), _>().backward();
        let close = |num: f64, ana: f32, what: String| {
            let num = num as f32;
            assert!(
                (num - ana).abs() <= tol * (1.0 + num.abs()),
                "{what}: numeric {num} vs analytic {ana}"
            );
        };
        let step = (input.len() / 40).max(1);
        let gx = grads.get(&x).as_vec();
        for i in (0..input.len()).step_by(step) {
            let mut p = input.clone();
            p[i] += eps;
            let up = objective(layer, &dev, &p, batch, &r);
            p[i] -= 2.0 * eps;
            let down = objective(layer, &dev, &p, batch, &r);
            close(
                (up - down) / (2.0 * eps as f64),
                gx[i],
                format!("d/dx[{i}]"),
            );
        }
        let n_params = layer.params().len();
        for pi in 0..n_params {
            let g = grads.get(&layer.params()[pi].key).as_vec();
            let len = g.len();
            for i in (0..len).step_by((len / 20).max(1)) {
                Arc::make_mut(&mut layer.params()[pi].value)[i] += eps;
                let up = objective(layer, &dev, &input, batch, &r);
                Arc::make_mut(&mut layer.params()[pi].value)[i] -= 2.0 * eps;
                let down = objective(layer, &dev, &input, batch, &r);
                Arc::make_mut(&mut layer.params()[pi].value)[i] += eps;
                close(
                    (up - down) / (2.0 * eps as f64),
                    g[i],
                    format!("d/dparam{pi}[{i}]"),
                );
            }
        }
    }

    /// Random input in U(±1).
    pub fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed, 3);
        (0..n).map(|_| rng.uniform(1.0)).collect()
    }
}
