//! `conv = { filters, kernel, activation, init }`: 2-D convolution (valid padding, stride 1) on
//! NHWC batches, as im2col over the whole batch and one GEMM per pass. It always runs inside a
//! [`ConvBlock`] (alone, or fused with the batch norm and/or max-pool after it): the block owns
//! the tape op, this file the weights and the convolution's own arithmetic.

use std::sync::Arc;

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::activation::Activation;
use crate::model::affine::affine_forward;
use crate::model::fused::ConvBlock;
use crate::model::gemm::{matmul, View};
use crate::model::init::Init;
use crate::model::layer::{Layer, LayerIo, LayerSpec, Place, Shape, StoredArray};
use crate::model::Param;
use crate::rng::Rng;

/// Convolution settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvSpec {
    /// Number of output channels.
    pub filters: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Applied after the bias.
    #[serde(default)]
    pub activation: Activation,
    /// Weight initializer (biases start at zero).
    #[serde(default)]
    pub init: Init,
}

impl ConvSpec {
    /// The convolution with fresh weights drawn from `rng`.
    pub fn build_conv(&self, io: LayerIo, dev: &Cpu, rng: &mut Rng) -> Conv {
        let k = self.kernel;
        let kd = k * k * io.input.c;
        Conv {
            index: io.index,
            geo: ConvGeometry {
                input: io.input,
                output: io.output,
                kernel: k,
            },
            act: self.activation,
            input_grad: io.input_grad(),
            w: self
                .init
                .weights(dev, kd * self.filters, kd, k * k * self.filters, rng),
            b: Param::new(dev, vec![0.0; self.filters]),
        }
    }
}

impl LayerSpec for ConvSpec {
    fn keras_name(&self) -> &'static str {
        "conv2d"
    }

    fn output_shape(&self, input: Shape, _place: Place) -> Result<Shape, String> {
        if input.flat {
            return Err(format!(
                "input is flat {input}; a conv layer needs an image"
            ));
        }
        if self.filters == 0 || self.kernel == 0 {
            return Err("filters and kernel must be at least 1".into());
        }
        if self.kernel > input.h || self.kernel > input.w {
            return Err(format!(
                "kernel {} is larger than its {}×{} input",
                self.kernel, input.h, input.w
            ));
        }
        if self.activation == Activation::Softmax {
            return Err("softmax is only allowed on the last dense layer".into());
        }
        Ok(Shape::image(
            input.h - self.kernel + 1,
            input.w - self.kernel + 1,
            self.filters,
        ))
    }

    fn param_count(&self, input: Shape) -> usize {
        self.kernel * self.kernel * input.c * self.filters + self.filters
    }

    fn flops(&self, input: Shape, output: Shape) -> f64 {
        2.0 * (output.h * output.w * self.filters * self.kernel * self.kernel * input.c) as f64
    }

    fn describe(&self) -> String {
        let k = self.kernel;
        match self.activation {
            Activation::Linear => format!("conv {k}×{k}×{}", self.filters),
            a => format!("conv {k}×{k}×{} {}", self.filters, a.name()),
        }
    }

    fn build(&self, io: LayerIo, dev: &Cpu, rng: &mut Rng) -> Box<dyn Layer> {
        Box::new(ConvBlock::new(self.build_conv(io, dev, rng), None, None))
    }
}

/// Input, output and kernel sizes of a convolution: its unfolding and its products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input shape per sample.
    pub input: Shape,
    /// Output shape per sample.
    pub output: Shape,
    /// Kernel side.
    pub kernel: usize,
}

impl ConvGeometry {
    /// Values in one receptive field (a row of the unfolded input).
    pub fn field(&self) -> usize {
        self.kernel * self.kernel * self.input.c
    }

    /// Output positions of a batch: the rows of its unfolded input.
    pub fn rows(&self, batch: usize) -> usize {
        batch * self.output.h * self.output.w
    }

    /// Unfolds each output position's receptive field into one row (im2col).
    pub fn unfold(&self, x: &[f32], batch: usize) -> Vec<f32> {
        let (inp, out, k) = (self.input, self.output, self.kernel);
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

    /// Adds each row of `col` back onto the input positions it came from (the adjoint of
    /// [`ConvGeometry::unfold`]).
    pub fn fold_add(&self, col: &[f32], batch: usize, gx: &mut [f32]) {
        let (inp, out, k) = (self.input, self.output, self.kernel);
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

    /// gw += colᵀ · gz (the kernel's gradient from the gradient at the convolution's output).
    pub fn add_weight_grad(&self, gw: &mut [f32], gz: &[f32], col: &[f32], batch: usize) {
        let (kd, cout, m) = (self.field(), self.output.c, self.rows(batch));
        matmul(
            kd,
            cout,
            m,
            gw,
            true,
            View::transposed(col, kd),
            View::rows(gz, cout),
        );
    }

    /// gx += the input gradient for `gz`: gz · wᵀ unfolded, folded back. `col` (the unfolded
    /// input, no longer needed) is reused as the buffer.
    pub fn add_input_grad(
        &self,
        gx: &mut [f32],
        gz: &[f32],
        w: &[f32],
        col: &mut [f32],
        batch: usize,
    ) {
        let (kd, cout, m) = (self.field(), self.output.c, self.rows(batch));
        matmul(
            m,
            kd,
            cout,
            col,
            false,
            View::rows(gz, cout),
            View::transposed(w, cout),
        );
        self.fold_add(col, batch, gx);
    }
}

/// A convolution's weights and settings. Weights are laid out `[ky][kx][c_in][c_out]` (Keras'
/// kernel order).
#[derive(Debug, Clone)]
pub struct Conv {
    /// Position in `model.layers`.
    pub index: usize,
    /// Shapes and kernel size.
    pub geo: ConvGeometry,
    /// Applied after the bias.
    pub act: Activation,
    /// Whether the input needs a gradient (false for the first layer: nothing to train there).
    pub input_grad: bool,
    /// Kernel weights.
    pub w: Param,
    /// Biases, one per output channel.
    pub b: Param,
}

impl Conv {
    /// `act(col · w + b)` for an unfolded batch: the convolution's output.
    pub fn affine(&self, col: &[f32], batch: usize, act: Activation) -> Vec<f32> {
        let g = self.geo;
        affine_forward(
            col,
            g.rows(batch),
            g.field(),
            &self.w.value,
            &self.b.value,
            act,
        )
    }

    /// Its parameters (weights, then biases).
    pub fn params(&mut self) -> Vec<&mut Param> {
        vec![&mut self.w, &mut self.b]
    }

    /// Its arrays in the model file.
    pub fn arrays(&mut self) -> Vec<StoredArray<'_>> {
        let g = self.geo;
        vec![
            StoredArray {
                layer: self.index,
                name: "weight",
                shape: vec![g.kernel, g.kernel, g.input.c, g.output.c],
                values: Arc::make_mut(&mut self.w.value),
            },
            StoredArray {
                layer: self.index,
                name: "bias",
                shape: vec![g.output.c],
                values: Arc::make_mut(&mut self.b.value),
            },
        ]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::gradcheck::{check, random};
    use crate::model::layer::{Forward, Mode};
    use crate::model::Act;

    /// A convolution with random weights and biases.
    pub(crate) fn conv(inp: Shape, k: usize, cout: usize, act: Activation) -> Conv {
        let dev = Cpu::default();
        let mut rng = Rng::new(5, 0);
        let output = Shape::image(inp.h - k + 1, inp.w - k + 1, cout);
        Conv {
            index: 1,
            geo: ConvGeometry {
                input: inp,
                output,
                kernel: k,
            },
            act,
            input_grad: true,
            w: Param::uniform(&dev, k * k * inp.c * cout, 0.5, &mut rng),
            b: Param::uniform(&dev, cout, 0.5, &mut rng),
        }
    }

    /// Direct 7-loop convolution, the reference the GEMM path must match.
    fn reference(c: &Conv, x: &[f32], batch: usize) -> Vec<f32> {
        let (i, o, k) = (c.geo.input, c.geo.output, c.geo.kernel);
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
                        y[((b * o.h + oy) * o.w + ox) * o.c + co] = match c.act {
                            Activation::Relu => s.max(0.0),
                            _ => s,
                        };
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
            let act = if seed % 2 == 0 {
                Activation::Relu
            } else {
                Activation::Linear
            };
            let c = conv(Shape::image(h, w, ci), k, co, act);
            let want_c = c.clone();
            let x = random(batch * h * w * ci, seed as u64);
            let input: Act = Cpu::default().tensor_from_vec(x.clone(), (batch, h * w * ci));
            let y = ConvBlock::new(c, None, None)
                .forward(input, &mut Mode::Eval)
                .as_vec();
            let want = reference(&want_c, &x, batch);
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let c = conv(Shape::image(6, 5, 2), 3, 3, Activation::Linear);
        check(
            &mut ConvBlock::new(c, None, None),
            random(2 * 6 * 5 * 2, 1),
            2,
            1e-2,
            2e-3,
        );
        let c = conv(Shape::image(5, 5, 1), 2, 4, Activation::Relu);
        check(
            &mut ConvBlock::new(c, None, None),
            random(3 * 25, 2),
            3,
            1e-3,
            5e-3,
        );
    }
}
