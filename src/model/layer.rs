//! The layer seam. A layer kind is one file under `layers/` implementing two traits, plus one
//! line in the registry (`layers/mod.rs`):
//!
//! - [`LayerSpec`]: the layer as the experiment file declares it. Shape inference, parameter
//!   count, FLOPs and a description, all without weights, so `check` never allocates a network.
//! - [`Layer`] (+ [`Forward`]): the built layer with its weights: forward in a [`Mode`] with its
//!   backward on dfdx's tape, its parameters, and the named arrays it stores in the model file.

use std::fmt;

use dfdx::prelude::*;

use super::{Act, Param};
use crate::rng::Rng;

/// Shape of an activation per sample: height × width × channels, or a flat vector of `c`
/// values (`h = w = 1`, `flat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
    /// Channels (or features, when flat).
    pub c: usize,
    /// Whether this is a flat vector (after `flatten`).
    pub flat: bool,
}

impl Shape {
    /// An image shape.
    pub fn image(h: usize, w: usize, c: usize) -> Self {
        Shape {
            h,
            w,
            c,
            flat: false,
        }
    }

    /// A flat vector of `n` values.
    pub fn vector(n: usize) -> Self {
        Shape {
            h: 1,
            w: 1,
            c: n,
            flat: true,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.flat {
            write!(f, "({})", self.c)
        } else {
            write!(f, "({}, {}, {})", self.h, self.w, self.c)
        }
    }
}

/// Where a layer sits in its network (what shape checks may depend on beyond the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// Whether it is the last layer.
    pub last: bool,
}

/// What building one layer needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerIo {
    /// 0-based position in its layer list (`model.layers`, or a block's `layers`).
    pub index: usize,
    /// Where it sits in the network (see [`crate::model::LayerSummary::path`]): names its
    /// arrays in the model file.
    pub path: String,
    /// Input shape per sample.
    pub input: Shape,
    /// Output shape per sample (from [`LayerSpec::output_shape`]).
    pub output: Shape,
    /// Whether the layer must pass a gradient to its input (false for the network's first
    /// layer, and inside a block that is: nothing is trained below it).
    pub input_grad: bool,
}

impl LayerIo {
    /// The shapes of a layer at `path` whose input needs a gradient, for tests.
    #[cfg(test)]
    pub fn at(index: usize, input: Shape, output: Shape) -> Self {
        LayerIo {
            index,
            path: index.to_string(),
            input,
            output,
            input_grad: index > 0,
        }
    }
}

/// A layer as the experiment file declares it.
pub trait LayerSpec {
    /// The layer kind as Keras names it (the `check` table).
    fn keras_name(&self) -> &'static str;
    /// The output shape for `input`, or why this layer cannot take it (one sentence).
    fn output_shape(&self, input: Shape, place: Place) -> Result<Shape, String>;
    /// Number of parameters as Keras counts them (batch norm's running statistics included).
    fn param_count(&self, input: Shape) -> usize;
    /// Forward multiply-add FLOPs (×2) per sample of its matrix products.
    fn flops(&self, _input: Shape, _output: Shape) -> f64 {
        0.0
    }
    /// Values per sample a training step holds besides the layer's output and its gradient
    /// (a convolution's unfolded input); counted in the memory estimate `check` enforces.
    fn scratch(&self, _input: Shape, _output: Shape) -> f64 {
        0.0
    }
    /// Relative training cost per sample (for scheduling long folds first): FLOPs, plus an
    /// estimate for memory-bound layers.
    fn cost(&self, input: Shape, output: Shape) -> f64 {
        self.flops(input, output)
    }
    /// How it is computed for these shapes, where there is a choice (a convolution's
    /// algorithm: "direct", "winograd", "winograd3" or "winograd4"); shown by `check` and
    /// `bench`.
    fn algorithm(&self, _input: Shape, _output: Shape) -> Option<&'static str> {
        None
    }
    /// A few words for the report ("conv 3×3×32 relu").
    fn describe(&self) -> String;
    /// The rows of the layers it holds, for a block (`check` prints them indented under its
    /// own); `path` is its own row's. Called only for an input `output_shape` accepted.
    fn inner(&self, _input: Shape, _path: &str) -> Vec<crate::model::LayerSummary> {
        Vec::new()
    }
    /// The layer, with fresh weights drawn from `rng` (layers without weights draw nothing).
    fn build(&self, io: &LayerIo, dev: &Cpu, rng: &mut Rng) -> Box<dyn Layer>;
}

/// Training or evaluation, as a layer's forward pass sees it.
pub enum Mode<'a> {
    /// Training: batch statistics, updated running statistics, and a seeded random stream for
    /// layers that draw (derived from the experiment's seed, the fold and the epoch).
    Train(&'a mut Rng),
    /// Evaluation: running statistics, nothing random.
    Eval,
}

impl Mode<'_> {
    /// Whether this is training.
    pub fn training(&self) -> bool {
        matches!(self, Mode::Train(_))
    }
}

/// A layer's forward pass on any tape: recorded for the backward pass when `T` owns a tape
/// (training steps), plain otherwise (evaluation, and the finite-difference tests).
pub trait Forward {
    /// The layer's output for a batch `x` of shape `(batch, input values)`.
    fn forward<T: Tape<f32, Cpu> + 'static>(&mut self, x: Act<T>, mode: &mut Mode) -> Act<T>;
}

/// Traced tape of a training step.
pub type Traced = OwnedTape<f32, Cpu>;

/// [`Forward`] for the two tapes a network runs with, callable on `dyn Layer`.
pub trait DynForward {
    /// Forward with the backward pass recorded.
    fn forward_traced(&mut self, x: Act<Traced>, mode: &mut Mode) -> Act<Traced>;
    /// Forward without a tape.
    fn forward_plain(&mut self, x: Act, mode: &mut Mode) -> Act;
}

impl<L: Forward> DynForward for L {
    fn forward_traced(&mut self, x: Act<Traced>, mode: &mut Mode) -> Act<Traced> {
        self.forward(x, mode)
    }
    fn forward_plain(&mut self, x: Act, mode: &mut Mode) -> Act {
        self.forward(x, mode)
    }
}

/// A tape a network can run with: picks the [`DynForward`] method for it.
pub trait NetTape: Tape<f32, Cpu> + 'static + Sized {
    /// Runs `layer` on `x`.
    fn run(layer: &mut dyn Layer, x: Act<Self>, mode: &mut Mode) -> Act<Self>;
}

impl NetTape for NoneTape {
    fn run(layer: &mut dyn Layer, x: Act<Self>, mode: &mut Mode) -> Act<Self> {
        layer.forward_plain(x, mode)
    }
}

impl NetTape for Traced {
    fn run(layer: &mut dyn Layer, x: Act<Self>, mode: &mut Mode) -> Act<Self> {
        layer.forward_traced(x, mode)
    }
}

/// One array a layer stores in the model file, named `layers.<layer>.<name>`.
pub struct StoredArray<'a> {
    /// Where the layer sits ([`LayerIo::path`]): its index in `model.layers`, or its path
    /// inside a block.
    pub layer: String,
    /// Name within the layer (`weight`, `bias`, `gamma`, `running_mean`, …).
    pub name: &'static str,
    /// Its shape as stored (Keras' layout).
    pub shape: Vec<usize>,
    /// The values, read when saving and overwritten when loading.
    pub values: &'a mut Vec<f32>,
}

impl StoredArray<'_> {
    /// The tensor name in the model file.
    pub fn key(&self) -> String {
        format!("layers.{}.{}", self.layer, self.name)
    }
}

/// A built layer of a network.
pub trait Layer: DynForward + Send + fmt::Debug {
    /// Its trainable parameters, in a fixed order (weights before biases, γ before β).
    fn params(&mut self) -> Vec<&mut Param>;
    /// The arrays it stores in the model file (parameters and running statistics).
    fn arrays(&mut self) -> Vec<StoredArray<'_>>;
}
