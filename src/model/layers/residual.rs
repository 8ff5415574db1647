//! `residual = { layers = [...], repeat, activation, shortcut, projection_batchnorm }`: a
//! residual block (He et al. 2016), whose output is `activation(inner(x) + shortcut(x))`.
//!
//! `layers` are layer entries like the model's own (a block may hold blocks); they run through
//! the same shape inference, fusion plan and kernels as the model's list. The shortcut is the
//! identity where the inner path keeps the shape, else a projection as Keras' ResNets build it
//! (keras.applications.resnet): a 1×1 convolution with the inner path's stride and no
//! activation, then a batch norm (`projection_batchnorm = false` leaves it out).
//! `shortcut = "projection"` projects even where the shapes match, and `shortcut = "none"`
//! drops it: the same layers as a plain network, to measure what the shortcut is worth.
//! `repeat = n` stacks n copies of the block, each with weights of its own (a ResNet stage
//! without writing its blocks out n times); the first copy may change the shape, the others
//! then see its output.
//!
//! The addition and the activation after it are one tape op; in Keras terms an `Add` layer and
//! an `Activation` layer.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::batchnorm::BatchNormSpec;
use super::conv::{Algorithm, ConvSpec};
use super::LayerEntry;
use crate::model::activation::{Activation, Kept};
use crate::model::geometry::Padding;
use crate::model::init::Init;
use crate::model::layer::{
    DynForward, Layer, LayerIo, LayerSpec, Mode, NetTape, Place, Shape, StoredArray, Traced,
};
use crate::model::{build_layers, chain, data_of, put_grad, take_grad, Act, LayerSummary, Param};
use crate::rng::Rng;

/// The most copies `repeat` stacks.
pub const MAX_REPEAT: usize = 64;

/// Residual block settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidualSpec {
    /// The inner path, as `[[...layers]]` entries.
    pub layers: Vec<LayerEntry>,
    /// Copies of the block, one after the other (default 1).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub repeat: usize,
    /// Applied to the sum (default `relu`, as in every ResNet).
    #[serde(default = "relu")]
    pub activation: Activation,
    /// `auto` (default): identity where the shapes match, else a projection; `projection`:
    /// always a projection; `none`: no shortcut.
    #[serde(default, skip_serializing_if = "Shortcut::is_auto")]
    pub shortcut: Shortcut,
    /// Whether a projection is followed by a batch norm (default true).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub projection_batchnorm: bool,
}

fn one() -> usize {
    1
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

fn relu() -> Activation {
    Activation::Relu
}

fn yes() -> bool {
    true
}

fn is_true(v: &bool) -> bool {
    *v
}

/// What a block adds to its inner path's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shortcut {
    /// The input where the shapes match, else its projection.
    #[default]
    Auto,
    /// The input's projection (1×1 convolution, optionally a batch norm).
    Projection,
    /// Nothing: the block is its inner path followed by its activation.
    None,
}

impl Shortcut {
    /// Whether this is `auto` (the default, not written out).
    pub fn is_auto(&self) -> bool {
        *self == Shortcut::Auto
    }
}

/// The shapes of one copy of a block.
struct CopyPlan {
    /// Its input shape.
    input: Shape,
    /// The inner path's rows.
    rows: Vec<LayerSummary>,
    /// The shortcut's layers: empty for the identity, `None` without a shortcut.
    shortcut: Option<Vec<LayerEntry>>,
    /// The shortcut's rows.
    shortcut_rows: Vec<LayerSummary>,
}

impl CopyPlan {
    fn output(&self) -> Shape {
        self.rows.last().map_or(self.input, |r| r.output)
    }
}

impl ResidualSpec {
    /// The layers of a projection from `input` to `output`, or why the two cannot be added.
    fn projection(&self, input: Shape, output: Shape) -> Result<Vec<LayerEntry>, String> {
        let cannot = || {
            format!(
                "the inner path's output {output} cannot be added to the block's input {input}"
            )
        };
        if input.flat || output.flat {
            return Err(format!(
                "{}: a shortcut projects images only (keep the shape, or use shortcut = \"none\")",
                cannot()
            ));
        }
        let stride = input.h.div_ceil(output.h.max(1));
        if output.h == 0 || input.h.div_ceil(stride) != output.h || input.w.div_ceil(stride) != output.w
        {
            return Err(format!(
                "{}: no 1×1 projection with a stride maps {}×{} to {}×{} (padding = \"same\" in the block keeps the sides a stride apart)",
                cannot(),
                input.h,
                input.w,
                output.h,
                output.w
            ));
        }
        let mut layers = vec![LayerEntry::Conv(ConvSpec {
            filters: output.c,
            kernel: 1,
            activation: Activation::Linear,
            init: Init::GlorotUniform,
            stride,
            padding: Padding::Valid,
            algorithm: Algorithm::Auto,
        })];
        if self.projection_batchnorm {
            layers.push(LayerEntry::Batchnorm(BatchNormSpec::default()));
        }
        Ok(layers)
    }

    /// Every copy's shapes from `input`, rows named under `path`, or what is wrong.
    fn plan(&self, input: Shape, path: &str) -> Result<Vec<CopyPlan>, String> {
        if self.layers.is_empty() {
            return Err("layers is empty: a block holds at least one layer entry".into());
        }
        if !(1..=MAX_REPEAT).contains(&self.repeat) {
            return Err(format!("repeat is {}, expected 1..={MAX_REPEAT}", self.repeat));
        }
        if self.activation == Activation::Softmax {
            return Err("softmax is only allowed on the last dense layer".into());
        }
        let mut copies = Vec::with_capacity(self.repeat);
        let mut shape = input;
        for r in 0..self.repeat {
            let copy = if self.repeat > 1 {
                format!("copy {} of {}: ", r + 1, self.repeat)
            } else {
                String::new()
            };
            let rows = chain(&self.layers, shape, false, &format!("{path}.{r}."), "")
                .map_err(|e| format!("{copy}{e}"))?;
            let output = rows.last().map_or(shape, |r| r.output);
            let shortcut = match self.shortcut {
                Shortcut::None => None,
                Shortcut::Auto if output == shape => Some(Vec::new()),
                _ => Some(self.projection(shape, output).map_err(|e| format!("{copy}{e}"))?),
            };
            let shortcut_rows = match &shortcut {
                Some(layers) if !layers.is_empty() => {
                    chain(layers, shape, false, &format!("{path}.{r}.s"), "shortcut ")
                        .map_err(|e| format!("{copy}{e}"))?
                }
                _ => Vec::new(),
            };
            copies.push(CopyPlan {
                input: shape,
                rows,
                shortcut,
                shortcut_rows,
            });
            shape = output;
        }
        Ok(copies)
    }

    /// Every copy's shapes, for an input `output_shape` accepted.
    fn planned(&self, input: Shape, path: &str) -> Vec<CopyPlan> {
        self.plan(input, path).unwrap_or_default()
    }

    /// The rows of every copy's layers (inner path and shortcut), for an accepted input.
    fn layer_rows(&self, input: Shape) -> Vec<LayerSummary> {
        self.planned(input, "")
            .into_iter()
            .flat_map(|c| c.rows.into_iter().chain(c.shortcut_rows))
            .collect()
    }
}

impl LayerSpec for ResidualSpec {
    fn keras_name(&self) -> &'static str {
        "residual"
    }

    fn output_shape(&self, input: Shape, _place: Place) -> Result<Shape, String> {
        let copies = self.plan(input, "")?;
        Ok(copies.last().map_or(input, CopyPlan::output))
    }

    fn param_count(&self, input: Shape) -> usize {
        self.layer_rows(input).iter().map(|r| r.params).sum()
    }

    fn flops(&self, input: Shape, _output: Shape) -> f64 {
        self.layer_rows(input).iter().map(|r| r.flops).sum()
    }

    fn scratch(&self, input: Shape, _output: Shape) -> f64 {
        // Every inner output and its gradient, and the sum the activation's backward reads.
        self.planned(input, "")
            .iter()
            .map(|c| {
                let held: f64 = c
                    .rows
                    .iter()
                    .chain(&c.shortcut_rows)
                    .map(|r| 2.0 * r.output.len() as f64 + r.scratch)
                    .sum();
                held + c.output().len() as f64
            })
            .sum()
    }

    fn cost(&self, input: Shape, _output: Shape) -> f64 {
        // The layers' own, and a few passes over memory per value for the sum.
        self.planned(input, "")
            .iter()
            .map(|c| {
                let layers: f64 = c.rows.iter().chain(&c.shortcut_rows).map(|r| r.cost).sum();
                layers + 8.0 * c.output().len() as f64
            })
            .sum()
    }

    fn describe(&self) -> String {
        let inner: Vec<String> = self.layers.iter().map(|l| l.spec().describe()).collect();
        let mut d = format!("residual [{}]", inner.join(", "));
        if self.activation != Activation::Linear {
            d += &format!(" {}", self.activation.name());
        }
        match self.shortcut {
            Shortcut::Auto => {}
            Shortcut::Projection => d += " projected",
            Shortcut::None => d += " no shortcut",
        }
        if !self.projection_batchnorm {
            d += " (projection without batchnorm)";
        }
        if self.repeat > 1 {
            d += &format!(" ×{}", self.repeat);
        }
        d
    }

    fn inner(&self, input: Shape, path: &str) -> Vec<LayerSummary> {
        let mut out = Vec::new();
        for (r, c) in self.planned(input, path).into_iter().enumerate() {
            let output = c.output();
            out.extend(c.rows);
            out.extend(c.shortcut_rows);
            out.push(LayerSummary {
                path: format!("{path}.{r}.+"),
                kind: if c.shortcut.is_some() { "add" } else { "activation" },
                input: output,
                output,
                params: 0,
                flops: 0.0,
                cost: 0.0,
                scratch: 0.0,
                algorithm: None,
                inner: Vec::new(),
            });
        }
        out
    }

    fn build(&self, io: &LayerIo, dev: &Cpu, rng: &mut Rng) -> Box<dyn Layer> {
        let copies = self
            .plan(io.input, &io.path)
            .expect("summarize checked the block before it is built");
        let ios = |rows: &[LayerSummary], first_grad: bool| -> Vec<LayerIo> {
            rows.iter()
                .enumerate()
                .map(|(index, r)| LayerIo {
                    index,
                    path: r.path.clone(),
                    input: r.input,
                    output: r.output,
                    input_grad: first_grad || index > 0,
                })
                .collect()
        };
        let mut built = Vec::with_capacity(copies.len());
        for (r, c) in copies.iter().enumerate() {
            // Only the first copy's input may be the network's input.
            let grad = io.input_grad || r > 0;
            let inner = build_layers(&self.layers, &ios(&c.rows, grad), dev, rng);
            let shortcut = c
                .shortcut
                .as_ref()
                .map(|layers| build_layers(layers, &ios(&c.shortcut_rows, grad), dev, rng));
            built.push(BlockCopy { inner, shortcut });
        }
        Box::new(Residual {
            copies: built,
            act: self.activation,
        })
    }
}

/// One copy of a built block.
#[derive(Debug)]
struct BlockCopy {
    /// The inner path.
    inner: Vec<Box<dyn Layer>>,
    /// The shortcut's layers (empty: the identity), or `None`.
    shortcut: Option<Vec<Box<dyn Layer>>>,
}

/// A built residual block.
#[derive(Debug)]
pub struct Residual {
    copies: Vec<BlockCopy>,
    act: Activation,
}

impl Residual {
    fn run<T: NetTape>(&mut self, mut x: Act<T>, mode: &mut Mode) -> Act<T> {
        for c in &mut self.copies {
            // Both paths start from the same tensor (so their gradients add up on it); the
            // shortcut records on a tape of its own, merged with the inner path's by the sum.
            let (input, tape) = x.split_tape();
            let mut a = input.clone().put_tape(tape);
            for l in &mut c.inner {
                a = T::run(l.as_mut(), a, mode);
            }
            let b = c.shortcut.as_mut().map(|layers| {
                let mut b = input.put_tape(T::default());
                for l in layers {
                    b = T::run(l.as_mut(), b, mode);
                }
                b
            });
            x = join(a, b, self.act);
        }
        x
    }
}

impl DynForward for Residual {
    fn forward_traced(&mut self, x: Act<Traced>, mode: &mut Mode) -> Act<Traced> {
        self.run(x, mode)
    }
    fn forward_plain(&mut self, x: Act, mode: &mut Mode) -> Act {
        self.run(x, mode)
    }
}

impl Layer for Residual {
    fn params(&mut self) -> Vec<&mut Param> {
        let mut out = Vec::new();
        for c in &mut self.copies {
            out.extend(c.inner.iter_mut().flat_map(|l| l.params()));
            if let Some(s) = &mut c.shortcut {
                out.extend(s.iter_mut().flat_map(|l| l.params()));
            }
        }
        out
    }

    fn arrays(&mut self) -> Vec<StoredArray<'_>> {
        let mut out = Vec::new();
        for c in &mut self.copies {
            out.extend(c.inner.iter_mut().flat_map(|l| l.arrays()));
            if let Some(s) = &mut c.shortcut {
                out.extend(s.iter_mut().flat_map(|l| l.arrays()));
            }
        }
        out
    }
}

/// `act(a + b)` (or `act(a)` without `b`) as one tape op: the gradient at the sum goes to both.
fn join<T: Tape<f32, Cpu> + 'static>(a: Act<T>, b: Option<Act<T>>, act: Activation) -> Act<T> {
    let (a, tape) = a.split_tape();
    let shape = *a.shape();
    let mut y = data_of(&a);
    let (b, mut tape) = match b {
        Some(b) => {
            let (b, tb) = b.split_tape();
            assert_eq!(*b.shape(), shape, "the block's plan matched the two paths' shapes");
            let mut v = vec![0.0; y.len()];
            b.copy_into(&mut v);
            for (y, v) in y.iter_mut().zip(&v) {
                *y += v;
            }
            (Some(b), tape.merge(tb))
        }
        None => (None, tape),
    };
    act.apply(&mut y);
    let saved = match T::OWNS_TAPE {
        true => act.keep(&y),
        false => Kept::Nothing,
    };
    let out = a.device().tensor_from_vec(y, shape);
    if !T::OWNS_TAPE {
        return out.put_tape(tape);
    }
    let (ag, bg, yg) = (a.ghost(), b.as_ref().map(|b| b.ghost()), out.ghost());
    tape.add_backward_op(move |grads| {
        let mut g = take_grad!(grads, yg);
        act.backward_kept(&mut g, &saved);
        for (d, s) in grads.get_or_alloc_mut(&ag)?.iter_mut().zip(&g) {
            *d += s;
        }
        if let Some(bg) = &bg {
            for (d, s) in grads.get_or_alloc_mut(bg)?.iter_mut().zip(&g) {
                *d += s;
            }
        }
        put_grad!(grads, yg, g);
        Ok(())
    });
    out.put_tape(tape)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::gradcheck::{check, random};

    fn spec(text: &str) -> ResidualSpec {
        toml::from_str(text).unwrap()
    }

    /// The block built for `input`, as layer 1 of a network (its input takes a gradient).
    fn built(s: &ResidualSpec, input: Shape, seed: u64) -> (Box<dyn Layer>, Shape) {
        let output = s.output_shape(input, Place { last: false }).unwrap();
        let io = LayerIo::at(1, input, output);
        (s.build(&io, &Cpu::default(), &mut Rng::new(seed, 0)), output)
    }

    fn eval(layer: &mut dyn Layer, x: &[f32], batch: usize) -> Vec<f32> {
        let dev = Cpu::default();
        let t: Act = dev.tensor_from_vec(x.to_vec(), (batch, x.len() / batch));
        layer.forward_plain(t, &mut Mode::Eval).as_vec()
    }

    const IDENTITY: &str = r#"
        activation = { elu = 1.0 }
        [[layers]]
        conv = { filters = 3, kernel = 3, padding = "same", activation = { elu = 1.0 } }
        [[layers]]
        batchnorm = {}
        [[layers]]
        conv = { filters = 3, kernel = 3, padding = "same" }
    "#;

    const PROJECTED: &str = r#"
        activation = { elu = 1.0 }
        [[layers]]
        conv = { filters = 5, kernel = 3, stride = 2, padding = "same" }
        [[layers]]
        batchnorm = { activation = { elu = 1.0 } }
        [[layers]]
        conv = { filters = 5, kernel = 3, padding = "same" }
    "#;

    #[test]
    fn identity_block_gradients_match_finite_differences() {
        let input = Shape::image(4, 4, 3);
        let (mut block, output) = built(&spec(IDENTITY), input, 1);
        assert_eq!(output, input);
        check(block.as_mut(), random(2 * input.len(), 1), 2, 1e-2, 5e-3);
    }

    #[test]
    fn projected_block_gradients_match_finite_differences() {
        let input = Shape::image(5, 5, 3);
        let (mut block, output) = built(&spec(PROJECTED), input, 2);
        assert_eq!(output, Shape::image(3, 3, 5));
        // Inner conv, bn, conv; then the projection's conv and bn.
        assert_eq!(block.params().len(), 2 + 2 + 2 + 2 + 2);
        check(block.as_mut(), random(2 * input.len(), 2), 2, 1e-2, 5e-3);
    }

    #[test]
    fn repeated_winograd_and_plain_blocks_match_finite_differences() {
        // Winograd as the first inner layer (its input gradient adds to the shortcut's), two
        // copies; then the same layers without the shortcut; then a dense block on vectors,
        // with dropout first (its mask drawn from the same stream in every call).
        let winograd = r#"
            repeat = 2
            activation = { elu = 1.0 }
            [[layers]]
            conv = { filters = 2, kernel = 3, padding = "same", algorithm = "winograd" }
        "#;
        let input = Shape::image(4, 4, 2);
        let (mut block, _) = built(&spec(winograd), input, 3);
        check(block.as_mut(), random(2 * input.len(), 3), 2, 1e-2, 5e-3);
        let plain = format!("shortcut = \"none\"\n{winograd}");
        let (mut block, _) = built(&spec(&plain), input, 3);
        check(block.as_mut(), random(2 * input.len(), 4), 2, 1e-2, 5e-3);
        let dense = r#"
            activation = "linear"
            [[layers]]
            dropout = { rate = 0.3 }
            [[layers]]
            dense = { units = 6, activation = { elu = 1.0 } }
        "#;
        let (mut block, _) = built(&spec(dense), Shape::vector(6), 4);
        check(block.as_mut(), random(3 * 6, 5), 3, 1e-2, 5e-3);
    }

    #[test]
    fn a_block_with_zero_inner_weights_is_its_shortcut_then_its_activation() {
        let mut rng = Rng::new(9, 9);
        // Identity: relu(0 + x).
        let text = IDENTITY.replace("{ elu = 1.0 }", "\"relu\"");
        let input = Shape::image(4, 4, 3);
        let (mut block, _) = built(&spec(&text), input, 5);
        for p in block.params() {
            Arc::make_mut(&mut p.value).iter_mut().for_each(|v| *v = 0.0);
        }
        let x: Vec<f32> = (0..2 * input.len()).map(|_| rng.uniform(1.0)).collect();
        let relu: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
        assert_eq!(eval(block.as_mut(), &x, 2), relu);
        // Projection (stride 2, no batch norm): relu(0 + x[::2, ::2] · w + b), by hand.
        let text = format!(
            "projection_batchnorm = false\n{}",
            PROJECTED.replace("{ elu = 1.0 }", "\"relu\"")
        );
        let input = Shape::image(5, 5, 3);
        let (mut block, output) = built(&spec(&text), input, 6);
        let mut params = block.params();
        let (inner, shortcut) = params.split_at_mut(6);
        for p in inner {
            Arc::make_mut(&mut p.value).iter_mut().for_each(|v| *v = 0.0);
        }
        let (w, b) = (shortcut[0].value.to_vec(), shortcut[1].value.to_vec());
        let x: Vec<f32> = (0..2 * input.len()).map(|_| rng.uniform(1.0)).collect();
        let mut expected = Vec::new();
        for n in 0..2 {
            for i in 0..3 {
                for j in 0..3 {
                    for o in 0..5 {
                        let at = n * input.len() + (2 * i * 5 + 2 * j) * 3;
                        let z: f32 = (0..3).map(|c| x[at + c] * w[c * 5 + o]).sum::<f32>();
                        expected.push((z + b[o]).max(0.0));
                    }
                }
            }
        }
        let y = eval(block.as_mut(), &x, 2);
        assert_eq!(y.len(), 2 * output.len());
        for (a, e) in y.iter().zip(&expected) {
            assert!((a - e).abs() < 1e-6, "{a} vs {e}");
        }
    }

    /// Keras 3.15.1's numbers (bench/reference_numbers.py, section residual): conv.rs's
    /// problem through a functional model, Conv2D(3, 3, same, no bias) and a 1×1 Conv2D(3)
    /// of the input added (Add), then ReLU.
    #[allow(clippy::excessive_precision)]
    #[test]
    fn a_projected_block_matches_keras_add() {
        let text = r#"
            shortcut = "projection"
            projection_batchnorm = false
            [[layers]]
            conv = { filters = 3, kernel = 3, padding = "same" }
        "#;
        let (x, kernel) = crate::model::layers::conv::tests::keras_problem();
        let (mut block, _) = built(&spec(text), Shape::image(5, 5, 2), 1);
        let proj: Vec<f32> = (0..6).map(|v| (v % 3) as f32 / 3.0 - 0.3).collect();
        let values = [kernel, vec![0.0; 3], proj, vec![0.1, -0.2, 0.05]];
        for (p, v) in block.params().into_iter().zip(values) {
            assert_eq!(p.value.len(), v.len());
            p.value = Arc::new(v);
        }
        let y = eval(block.as_mut(), &x, 2);
        let first = [
            0.158571452, 0.0661904961, 0.0, 0.172857136, 0.0, 0.279047608, 0.0, 0.0, 0.660000026,
            0.037142843, 0.158095255, 0.0, 0.0, 0.0, 0.247142851,
        ];
        let last = [
            0.449999988, 0.0, 0.0, 0.0, 0.00714282691, 0.0, 0.0, 0.0, 0.656666696, 0.238571435,
            0.0, 0.0, 0.389999986, 0.0, 0.0,
        ];
        for (a, b) in y[..15].iter().chain(&y[y.len() - 15..]).zip(first.iter().chain(&last)) {
            assert!((a - b).abs() < 1e-6, "{a} vs Keras {b}");
        }
    }

    #[test]
    fn shapes_that_cannot_be_added_are_named() {
        let valid = r#"
            [[layers]]
            conv = { filters = 3, kernel = 3 }
        "#;
        let e = spec(valid)
            .output_shape(Shape::image(28, 28, 3), Place { last: false })
            .unwrap_err();
        assert!(
            e.contains("output (26, 26, 3) cannot be added to the block's input (28, 28, 3)")
                && e.contains("padding = \"same\""),
            "{e}"
        );
        let flat = "[[layers]]\ndense = { units = 4 }\n";
        let e = spec(flat)
            .output_shape(Shape::vector(6), Place { last: false })
            .unwrap_err();
        assert!(e.contains("projects images only"), "{e}");
        // Without a shortcut any shape goes; errors inside name the copy and the inner layer.
        let none = format!("shortcut = \"none\"\n{valid}");
        assert_eq!(
            spec(&none).output_shape(Shape::image(28, 28, 3), Place { last: false }),
            Ok(Shape::image(26, 26, 3))
        );
        let repeated = format!("repeat = 20\n{none}");
        let e = spec(&repeated)
            .output_shape(Shape::image(28, 28, 3), Place { last: false })
            .unwrap_err();
        assert!(e.starts_with("copy 14 of 20: layers[0] (conv): kernel 3"), "{e}");
        let empty = spec("layers = []");
        assert!(empty
            .output_shape(Shape::vector(3), Place { last: false })
            .unwrap_err()
            .contains("layers is empty"));
    }

    #[test]
    fn parameters_count_the_projection_and_rows_nest_under_the_block() {
        let s = spec(PROJECTED);
        let input = Shape::image(5, 5, 3);
        // conv 3·3·3·5 + 5, bn 4·5, conv 3·3·5·5 + 5; projection 3·5 + 5, bn 4·5.
        let expected = (135 + 5) + 20 + (225 + 5) + (15 + 5) + 20;
        assert_eq!(s.param_count(input), expected);
        let rows = s.inner(input, "4");
        let paths: Vec<&str> = rows.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["4.0.0", "4.0.1", "4.0.2", "4.0.s0", "4.0.s1", "4.0.+"]);
        let (mut block, output) = built(&s, input, 7);
        let names: Vec<String> = block.arrays().iter().map(|a| a.key()).collect();
        assert_eq!(names[0], "layers.1.0.0.weight");
        assert_eq!(names.last().unwrap(), "layers.1.0.s1.running_var");
        assert_eq!(output, rows.last().unwrap().output);
    }
}
