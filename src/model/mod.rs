//! The network, built at run time from the experiment's layer list.
//!
//! Activations are dfdx tensors of shape `(batch, features)` (images flattened NHWC, as Keras
//! lays them out) and gradients flow through dfdx's tape. Each layer is one custom op on that
//! tape with its own CPU kernel (dfdx's conv and pooling are nightly-only). Weights live in
//! [`Param`]s: our kernels read `value`, and `key` is the dfdx tensor under whose id the tape
//! accumulates the weight's gradient.

pub mod batchnorm;
pub mod conv;
pub mod dense;
pub mod gemm;
pub mod io;
pub mod loss;
pub mod pool;

use std::sync::Arc;

use dfdx::prelude::*;

use crate::experiment::{Experiment, Init, LayerSpec, Shape3, INPUT};
use crate::rng::Rng;

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

/// A trainable tensor: the values our kernels read, its momentum buffer, and its tape key.
#[derive(Debug, Clone)]
pub struct Param {
    /// Current weights, in the layout the layer's kernel expects. Shared, copy-on-write, with
    /// the backward ops of the current step (which need the weights of their forward pass):
    /// sharing instead of a copy per step saved copying deep models' largest weights (2 MB for
    /// the baseline's dense layer) every step; `Arc::make_mut` copies only if a tape still
    /// holds them when they change.
    pub value: Arc<Vec<f32>>,
    /// SGD momentum buffer.
    pub velocity: Vec<f32>,
    /// dfdx tensor whose id keys this parameter's gradient on the tape.
    pub key: Tensor<(usize,), f32, Cpu>,
}

impl Param {
    /// A parameter holding `value`.
    pub fn new(dev: &Cpu, value: Vec<f32>) -> Self {
        let n = value.len();
        Param {
            key: dev.zeros_like(&(n,)),
            velocity: vec![0.0; n],
            value: Arc::new(value),
        }
    }

    /// `n` values drawn from U(±limit).
    pub fn uniform(dev: &Cpu, n: usize, limit: f32, rng: &mut Rng) -> Self {
        Param::new(dev, (0..n).map(|_| rng.uniform(limit)).collect())
    }

    /// Applies one SGD-with-momentum step (Keras: v = m·v − lr·g; w += v).
    pub fn sgd_step(&mut self, grad: &[f32], lr: f32, momentum: f32) {
        let value = Arc::make_mut(&mut self.value);
        for ((w, v), g) in value.iter_mut().zip(&mut self.velocity).zip(grad) {
            *v = momentum * *v - lr * g;
            *w += *v;
        }
    }
}

/// Initial weight limit for a layer with the given fans.
fn init_limit(init: Init, fan_in: usize, fan_out: usize) -> f32 {
    match init {
        Init::HeUniform => (6.0 / fan_in as f64).sqrt() as f32,
        Init::GlorotUniform => (6.0 / (fan_in + fan_out) as f64).sqrt() as f32,
    }
}

/// One layer of a built network.
#[derive(Debug, Clone)]
pub enum Layer {
    /// 2-D convolution (+ bias, + optional ReLU).
    Conv(conv::Conv),
    /// Max pooling.
    MaxPool(pool::MaxPool),
    /// Reshape to a vector: a no-op on NHWC data.
    Flatten,
    /// Fully connected (+ bias, + optional ReLU).
    Dense(dense::Dense),
    /// Batch normalization.
    BatchNorm(batchnorm::BatchNorm),
}

/// A network ready to train or evaluate.
#[derive(Debug, Clone)]
pub struct Network {
    /// Layers in order.
    pub layers: Vec<Layer>,
    /// The device tensors are made on.
    pub dev: Cpu,
}

impl Network {
    /// Builds the network of `exp` with weights drawn from `rng` (layer by layer, in order).
    pub fn build(exp: &Experiment, rng: &mut Rng) -> anyhow::Result<Self> {
        let summary = exp.summary()?;
        let dev = Cpu::default();
        // dfdx's allocation cache stays off: measured here it grew a worker's peak RSS from
        // 96 MB to 1.4 GB and made a step slower (buffers of every size pile up unreused).
        let mut shape: Shape3 = INPUT;
        let mut layers = Vec::with_capacity(summary.len());
        for (i, (spec, row)) in exp.model.layers.iter().zip(&summary).enumerate() {
            let out = row.output;
            let layer = match spec {
                LayerSpec::Conv(c) => {
                    let kd = c.kernel * c.kernel * shape.c;
                    let limit = init_limit(c.init, kd, c.kernel * c.kernel * c.filters);
                    Layer::Conv(conv::Conv {
                        input: shape,
                        output: out,
                        kernel: c.kernel,
                        relu: c.activation == crate::experiment::Activation::Relu,
                        input_grad: i > 0,
                        w: Param::uniform(&dev, kd * c.filters, limit, rng),
                        b: Param::new(&dev, vec![0.0; c.filters]),
                    })
                }
                LayerSpec::Maxpool(k) => Layer::MaxPool(pool::MaxPool {
                    input: shape,
                    output: out,
                    size: *k,
                }),
                LayerSpec::Flatten(_) => Layer::Flatten,
                LayerSpec::Dense(d) => {
                    let limit = init_limit(d.init, shape.len(), d.units);
                    Layer::Dense(dense::Dense {
                        inputs: shape.len(),
                        units: d.units,
                        relu: d.activation == crate::experiment::Activation::Relu,
                        input_grad: i > 0,
                        w: Param::uniform(&dev, shape.len() * d.units, limit, rng),
                        b: Param::new(&dev, vec![0.0; d.units]),
                    })
                }
                LayerSpec::Batchnorm(b) => Layer::BatchNorm(batchnorm::BatchNorm::new(
                    &dev, shape.c, b.momentum, b.epsilon,
                )),
            };
            layers.push(layer);
            shape = out;
        }
        Ok(Network { layers, dev })
    }

    /// Runs the network; `training` selects batch statistics (and updates running ones) in
    /// batch-norm layers. Returns the logits (the last layer's softmax lives in the loss).
    pub fn forward<T: Tape<f32, Cpu> + 'static>(
        &mut self,
        mut x: Act<T>,
        training: bool,
    ) -> Act<T> {
        let mut i = 0;
        while i < self.layers.len() {
            // A convolution and the batch norm and/or max pooling right after it run as one
            // fused op (the same arithmetic as layer by layer).
            if let Layer::Conv(_) = self.layers[i] {
                let (head, rest) = self.layers.split_at_mut(i + 1);
                let Layer::Conv(c) = &head[i] else {
                    unreachable!()
                };
                let mut rest = rest.iter_mut().peekable();
                let bn = match rest.peek() {
                    Some(Layer::BatchNorm(_)) => match rest.next() {
                        Some(Layer::BatchNorm(b)) => Some(b),
                        _ => None,
                    },
                    _ => None,
                };
                let pool = match rest.next() {
                    Some(Layer::MaxPool(p)) => Some(&*p),
                    _ => None,
                };
                i += 1 + bn.is_some() as usize + pool.is_some() as usize;
                x = c.forward_block(x, bn, pool, training);
                continue;
            }
            x = match &mut self.layers[i] {
                Layer::Conv(l) => l.forward(x),
                Layer::MaxPool(l) => l.forward(x),
                Layer::Flatten => x,
                Layer::Dense(l) => l.forward(x),
                Layer::BatchNorm(l) => l.forward(x, training),
            };
            i += 1;
        }
        x
    }

    /// Every trainable parameter, in layer order (weights before biases, gamma before beta).
    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        let mut out = Vec::new();
        for layer in &mut self.layers {
            match layer {
                Layer::Conv(l) => out.extend([&mut l.w, &mut l.b]),
                Layer::Dense(l) => out.extend([&mut l.w, &mut l.b]),
                Layer::BatchNorm(l) => out.extend([&mut l.gamma, &mut l.beta]),
                Layer::MaxPool(_) | Layer::Flatten => {}
            }
        }
        out
    }

    /// Applies one SGD-with-momentum step from the gradients of a backward pass.
    pub fn sgd_step(&mut self, grads: &mut Gradients<f32, Cpu>, lr: f32, momentum: f32) {
        for p in self.params_mut() {
            // A parameter the loss did not reach has a zero gradient.
            let g = grads.get_or_alloc_mut(&p.key).expect("cpu allocation");
            p.sgd_step(g, lr, momentum);
        }
    }

    /// Number of trainable values.
    pub fn num_trainable(&mut self) -> usize {
        self.params_mut().iter().map(|p| p.value.len()).sum()
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

    /// A layer under test: runs with any tape and exposes its parameters.
    pub trait TapeOp {
        fn apply<T: Tape<f32, Cpu> + 'static>(&mut self, x: Act<T>) -> Act<T>;
        fn params(&mut self) -> Vec<&mut Param>;
    }

    fn objective<L: TapeOp>(
        layer: &mut L,
        dev: &Cpu,
        input: &[f32],
        batch: usize,
        r: &[f32],
    ) -> f64 {
        let t: Act = dev.tensor_from_vec(input.to_vec(), (batch, input.len() / batch));
        let y = layer.apply(t);
        y.as_vec()
            .iter()
            .zip(r)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    }

    /// Checks d(sum(out ⊙ r))/d(input) and /d(every parameter) against central differences.
    pub fn check<L: TapeOp>(layer: &mut L, input: Vec<f32>, batch: usize, eps: f32, tol: f32) {
        let dev = Cpu::default();
        let x: Act = dev.tensor_from_vec(input.clone(), (batch, input.len() / batch));
        let y = layer.apply(x.clone().leaky_traced());
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
