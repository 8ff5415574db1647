//! `conv = { filters, kernel, stride, padding, activation, init }`: 2-D convolution on NHWC
//! batches, as im2col over the whole batch and one GEMM per pass. Padding is Keras': `valid`
//! (none) or `same` (output side = ⌈input / stride⌉, zeros split evenly, the odd one on the
//! bottom/right). This file holds the weights and the convolution's own arithmetic; its tape op
//! is the fusion plan's (`fused.rs`), which also fuses a batch norm and max-pool after it.

use std::sync::Arc;

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::activation::Activation;
use crate::model::affine::affine_forward;
use crate::model::geometry::{ConvGeometry, Padding};
use crate::model::init::Init;
use crate::model::layer::{Layer, LayerIo, LayerSpec, Place, Shape, StoredArray};
use crate::model::winograd::Winograd;
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
    /// Step between receptive fields, in both directions (default 1).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub stride: usize,
    /// `valid` (default) or `same`.
    #[serde(default, skip_serializing_if = "Padding::is_valid")]
    pub padding: Padding,
    /// How it is computed: `auto` (default), `direct`, `winograd` (F(2×2, 3×3)), `winograd3`
    /// or `winograd4`.
    #[serde(default, skip_serializing_if = "Algorithm::is_auto")]
    pub algorithm: Algorithm,
}

/// How a convolution is computed. The algorithms compute the same function with different
/// rounding, so the choice is part of the experiment (and of its cache key), never made by
/// timing on the machine at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Winograd F(3×3, 3×3) where [`Algorithm::winograd_pays`] says it is faster, direct
    /// elsewhere.
    #[default]
    Auto,
    /// im2col over the whole batch and one GEMM per pass.
    Direct,
    /// Winograd F(2×2, 3×3): 3×3 stride-1 convolutions only.
    Winograd,
    /// Winograd F(3×3, 3×3): 3×3 stride-1 convolutions only.
    Winograd3,
    /// Winograd F(4×4, 3×3): 3×3 stride-1 convolutions only.
    Winograd4,
}

impl Algorithm {
    /// Whether this is `auto` (the default, not written out).
    pub fn is_auto(&self) -> bool {
        *self == Algorithm::Auto
    }

    /// The output tile side m of the Winograd F(m×m, 3×3) that computes a convolution of this
    /// geometry, or `None` for the direct convolution.
    pub fn winograd_tile(self, geo: &ConvGeometry) -> Option<usize> {
        match self {
            Algorithm::Direct => None,
            Algorithm::Winograd => Some(2),
            Algorithm::Winograd3 => Some(3),
            Algorithm::Winograd4 => Some(4),
            Algorithm::Auto => Self::winograd_pays(geo).then_some(AUTO_TILE),
        }
    }

    /// Whether a Winograd algorithm is named explicitly.
    fn is_winograd(self) -> bool {
        matches!(self, Algorithm::Winograd | Algorithm::Winograd3 | Algorithm::Winograd4)
    }

    /// The shapes where Winograd measured faster than the direct convolution (`mnist-lab
    /// bench` on copies of deeper and modern with each layer's algorithm forced;
    /// docs/speed.md): 3×3, stride 1, and enough channels on both sides for its small GEMMs
    /// to beat one large one.
    pub fn winograd_pays(geo: &ConvGeometry) -> bool {
        Winograd::fits(geo) && geo.input.c >= WINOGRAD_MIN_CHANNELS && geo.output.c >= WINOGRAD_MIN_CHANNELS
    }

    /// Its name in the experiment file.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Direct => "direct",
            Algorithm::Winograd => "winograd",
            Algorithm::Winograd3 => "winograd3",
            Algorithm::Winograd4 => "winograd4",
            Algorithm::Auto => "auto",
        }
    }
}

/// Fewest input and output channels for which `auto` picks Winograd.
const WINOGRAD_MIN_CHANNELS: usize = 16;

/// The output tile side `auto` uses: F(3×3, 3×3) measured fastest or tied on every layer of
/// deeper and modern (F(2×2) does 1.8× its multiplies on deeper's 9×9 layer, F(4×4) 1.4× there
/// and spends more on its transforms elsewhere; docs/speed.md).
const AUTO_TILE: usize = 3;

fn one() -> usize {
    1
}

fn is_one(v: &usize) -> bool {
    *v == 1
}


impl ConvSpec {
    /// The convolution with fresh weights drawn from `rng`.
    pub fn build_conv(&self, io: &LayerIo, dev: &Cpu, rng: &mut Rng) -> Conv {
        let k = self.kernel;
        let kd = k * k * io.input.c;
        let geo = ConvGeometry::new(io.input, io.output, k, self.stride, self.padding);
        Conv {
            path: io.path.clone(),
            geo,
            winograd: self.algorithm.winograd_tile(&geo).map(|m| Winograd::new(geo, m)),
            act: self.activation,
            input_grad: io.input_grad,
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
        if self.filters == 0 || self.kernel == 0 || self.stride == 0 {
            return Err("filters, kernel and stride must be at least 1".into());
        }
        let (Some((h, _)), Some((w, _))) = (
            self.padding.side(input.h, self.kernel, self.stride),
            self.padding.side(input.w, self.kernel, self.stride),
        ) else {
            return Err(format!(
                "kernel {} is larger than its {}×{} input (padding = \"same\" keeps the size)",
                self.kernel, input.h, input.w
            ));
        };
        if self.activation == Activation::Softmax {
            return Err("softmax is only allowed on the last dense layer".into());
        }
        if self.algorithm.is_winograd() && (self.kernel != 3 || self.stride != 1) {
            return Err(format!(
                "algorithm = \"{}\" computes 3×3 stride-1 convolutions (Winograd F(m×m, 3×3)), \
                 not kernel {} stride {}; use \"auto\" to take it only where it applies",
                self.algorithm.name(),
                self.kernel,
                self.stride
            ));
        }
        Ok(Shape::image(h, w, self.filters))
    }

    fn param_count(&self, input: Shape) -> usize {
        self.kernel * self.kernel * input.c * self.filters + self.filters
    }

    fn flops(&self, input: Shape, output: Shape) -> f64 {
        // In f64: `summarize` bounds this before anything multiplies sizes in usize.
        let k = self.kernel as f64;
        2.0 * (output.h * output.w) as f64 * self.filters as f64 * k * k * input.c as f64
    }

    fn scratch(&self, input: Shape, output: Shape) -> f64 {
        // The unfolded input (im2col) and, in the backward pass, its gradient.
        let k = self.kernel as f64;
        2.0 * (output.h * output.w) as f64 * k * k * input.c as f64
    }

    fn algorithm(&self, input: Shape, output: Shape) -> Option<&'static str> {
        let geo = ConvGeometry::new(input, output, self.kernel, self.stride, self.padding);
        Some(match self.algorithm.winograd_tile(&geo) {
            None => "direct",
            Some(2) => "winograd",
            Some(3) => "winograd3",
            Some(_) => "winograd4",
        })
    }

    fn describe(&self) -> String {
        let k = self.kernel;
        let mut d = format!("conv {k}×{k}×{}", self.filters);
        if self.stride != 1 {
            d += &format!("/{}", self.stride);
        }
        if self.padding == Padding::Same {
            d += " same";
        }
        if self.activation != Activation::Linear {
            d += &format!(" {}", self.activation.name());
        }
        if !self.algorithm.is_auto() {
            d += &format!(" ({})", self.algorithm.name());
        }
        d
    }

    fn build(&self, io: &LayerIo, dev: &Cpu, rng: &mut Rng) -> Box<dyn Layer> {
        Box::new(self.build_conv(io, dev, rng))
    }
}


/// A convolution's weights and settings. Weights are laid out `[ky][kx][c_in][c_out]` (Keras'
/// kernel order).
#[derive(Debug, Clone)]
pub struct Conv {
    /// Where it sits in the network ([`LayerIo::path`]).
    pub path: String,
    /// Shapes and kernel size.
    pub geo: ConvGeometry,
    /// Its Winograd tiling, when Winograd computes it (else im2col + GEMM).
    pub winograd: Option<Winograd>,
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

}

impl Layer for Conv {
    /// Its parameters (weights, then biases).
    fn params(&mut self) -> Vec<&mut Param> {
        vec![&mut self.w, &mut self.b]
    }

    /// Its arrays in the model file.
    fn arrays(&mut self) -> Vec<StoredArray<'_>> {
        let g = self.geo;
        vec![
            StoredArray {
                layer: self.path.clone(),
                name: "weight",
                shape: vec![g.kernel, g.kernel, g.input.c, g.output.c],
                values: Arc::make_mut(&mut self.w.value),
            },
            StoredArray {
                layer: self.path.clone(),
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

    /// The unfolding by its definition: row (b, oy, ox), column (ky, kx, c) holds the input at
    /// (oy·stride + ky − pad_top, ox·stride + kx − pad_left, c), or 0 outside the input.
    fn naive_unfold(g: &ConvGeometry, x: &[f32], batch: usize) -> Vec<f32> {
        let (i, o, k) = (g.input, g.output, g.kernel);
        let mut col = Vec::new();
        for b in 0..batch {
            for oy in 0..o.h {
                for ox in 0..o.w {
                    for ky in 0..k {
                        for kx in 0..k {
                            for c in 0..i.c {
                                let iy = (oy * g.stride + ky) as isize - g.pad_top as isize;
                                let ix = (ox * g.stride + kx) as isize - g.pad_left as isize;
                                let inside = (0..i.h as isize).contains(&iy)
                                    && (0..i.w as isize).contains(&ix);
                                col.push(if inside {
                                    x[((b * i.h + iy as usize) * i.w + ix as usize) * i.c + c]
                                } else {
                                    0.0
                                });
                            }
                        }
                    }
                }
            }
        }
        col
    }

    #[test]
    fn unfolding_matches_its_definition_bit_for_bit() {
        let mut rng = Rng::new(9, 9);
        for (h, w, c, k, stride, padding) in [
            (5, 5, 2, 3, 1, Padding::Same),
            (6, 7, 3, 3, 2, Padding::Same),
            (7, 6, 1, 5, 1, Padding::Same),
            (4, 4, 2, 3, 3, Padding::Same),
            (6, 5, 2, 3, 2, Padding::Valid),
            (5, 5, 2, 3, 1, Padding::Valid),
            (6, 6, 1, 3, 1, Padding::Valid),
            (8, 7, 1, 5, 1, Padding::Valid),
            (9, 9, 3, 5, 1, Padding::Valid),
            (3, 3, 1, 4, 1, Padding::Same),
        ] {
            let inp = Shape::image(h, w, c);
            let (oh, _) = padding.side(h, k, stride).unwrap();
            let (ow, _) = padding.side(w, k, stride).unwrap();
            let g = ConvGeometry::new(inp, Shape::image(oh, ow, 4), k, stride, padding);
            let x: Vec<f32> = (0..2 * inp.len()).map(|_| rng.uniform(1.0)).collect();
            let want = naive_unfold(&g, &x, 2);
            let got = g.unfold(&x, 2);
            assert_eq!(got.len(), want.len());
            assert!(
                got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{h}×{w}×{c} k{k} s{stride} {padding:?}"
            );
        }
    }

    /// A convolution with random weights and biases.
    pub(crate) fn conv(inp: Shape, k: usize, cout: usize, act: Activation) -> Conv {
        strided(inp, k, cout, act, 1, Padding::Valid)
    }

    /// A convolution with a stride and padding, random weights and biases.
    pub(crate) fn strided(
        inp: Shape,
        k: usize,
        cout: usize,
        act: Activation,
        stride: usize,
        padding: Padding,
    ) -> Conv {
        let dev = Cpu::default();
        let mut rng = Rng::new(5, 0);
        let (h, _) = padding.side(inp.h, k, stride).unwrap();
        let (w, _) = padding.side(inp.w, k, stride).unwrap();
        let output = Shape::image(h, w, cout);
        Conv {
            path: "1".into(),
            geo: ConvGeometry::new(inp, output, k, stride, padding),
            winograd: None,
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
                                let iy = (oy * c.geo.stride + ky) as isize - c.geo.pad_top as isize;
                                let ix = (ox * c.geo.stride + kx) as isize - c.geo.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= i.h as isize || ix >= i.w as isize {
                                    continue;
                                }
                                let (iy, ix) = (iy as usize, ix as usize);
                                for ci in 0..i.c {
                                    let xv = x[((b * i.h + iy) * i.w + ix) * i.c + ci];
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
            let mut c = conv(Shape::image(h, w, ci), k, co, act);
            let want_c = c.clone();
            let x = random(batch * h * w * ci, seed as u64);
            let input: Act = Cpu::default().tensor_from_vec(x.clone(), (batch, h * w * ci));
            let y = c
                .forward(input, &mut Mode::Eval)
                .as_vec();
            let want = reference(&want_c, &x, batch);
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn strided_and_same_padded_forward_matches_direct_convolution() {
        for (seed, (h, w, ci, k, co, stride, padding)) in [
            (5, 5, 1, 3, 2, 1, Padding::Same),
            (6, 7, 2, 3, 3, 2, Padding::Same),
            (7, 6, 2, 2, 2, 2, Padding::Same),
            (8, 8, 1, 3, 2, 2, Padding::Valid),
            (9, 7, 3, 4, 2, 3, Padding::Same),
        ]
        .into_iter()
        .enumerate()
        {
            let mut c = strided(Shape::image(h, w, ci), k, co, Activation::Relu, stride, padding);
            let x = random(2 * h * w * ci, 40 + seed as u64);
            let input: Act = Cpu::default().tensor_from_vec(x.clone(), (2, h * w * ci));
            let want = reference(&c, &x, 2);
            let y = c
                .forward(input, &mut Mode::Eval)
                .as_vec();
            assert_eq!(y.len(), want.len());
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "case {seed}: {a} vs {b}");
            }
        }
    }

    /// The input and kernel of the Keras reference below: x = ((1..=100) mod 7)/7 − 0.4 as
    /// (2, 5, 5, 2), kernel = ((0..54) mod 5)/5 − 0.45 as (3, 3, 2, 3), no bias.
    pub(crate) fn keras_problem() -> (Vec<f32>, Vec<f32>) {
        let x = (1..=100).map(|v| (v % 7) as f32 / 7.0 - 0.4).collect();
        let k = (0..54).map(|v| (v % 5) as f32 / 5.0 - 0.45).collect();
        (x, k)
    }

    #[test]
    fn same_padding_and_strides_match_keras() {
        // keras.layers.Conv2D(3, 3, strides=s, padding="same", use_bias=False) with that
        // kernel, Keras 3.15.1: all of stride 2's outputs, and the first and last 15 of
        // stride 1's.
        let s2 = [
            -0.052857, 0.278571, -0.275714, -0.038571, 0.087143, 0.327143, -0.205714, -0.217143,
            0.228571, 0.007143, 0.247143, 0.058571, -0.372857, -0.812857, 0.29, 0.067143, 0.05,
            -0.367143, 0.11, -0.387143, -0.141429, -0.151429, 0.202857, -0.328571, -0.071429,
            0.117143, -0.122857, -0.288571, -0.071429, 0.117143, 0.175714, -0.041429, -0.287143,
            0.215714, -0.052857, 0.278571, 0.164286, 0.061429, -0.47, -0.008571, 0.037143,
            0.482857, -0.49, 0.007143, 0.247143, 0.152857, 0.198571, 0.13, -0.565714, -0.554286,
            0.428571, 0.178571, 0.11, -0.387143,
        ];
        let s1_first = [
            -0.052857, 0.278571, -0.275714, 0.132857, -0.055714, 0.155714, -0.038571, 0.087143,
            0.327143, -0.26, 0.38, -0.151429, -0.205714, -0.217143, 0.228571,
        ];
        let s1_last = [
            0.152857, 0.198571, 0.13, -0.287143, 0.21, -0.035714, -0.565714, -0.554286, 0.428571,
            0.155714, -0.318571, -0.107143, 0.178571, 0.11, -0.387143,
        ];
        let (x, k) = keras_problem();
        let run = |stride| {
            let mut c = strided(
                Shape::image(5, 5, 2),
                3,
                3,
                Activation::Linear,
                stride,
                Padding::Same,
            );
            c.w.value = Arc::new(k.clone());
            c.b.value = Arc::new(vec![0.0; 3]);
            let input: Act = Cpu::default().tensor_from_vec(x.clone(), (2, 50));
            c
                .forward(input, &mut Mode::Eval)
                .as_vec()
        };
        let close = |got: &[f32], want: &[f32]| {
            assert_eq!(got.len(), want.len());
            for (a, b) in got.iter().zip(want) {
                assert!((a - b).abs() < 2e-6, "{got:?} vs Keras {want:?}");
            }
        };
        close(&run(2), &s2);
        let y1 = run(1);
        assert_eq!(y1.len(), 150);
        close(&y1[..15], &s1_first);
        close(&y1[135..], &s1_last);
    }

    #[test]
    fn same_padding_follows_keras_output_sides_and_offsets() {
        // Keras: out = ceil(in / stride); pad = (out - 1)·stride + k - in, less on top/left.
        assert_eq!(Padding::Same.side(28, 3, 1), Some((28, 1)));
        assert_eq!(Padding::Same.side(28, 3, 2), Some((14, 0)));
        assert_eq!(Padding::Same.side(7, 2, 2), Some((4, 0)));
        assert_eq!(Padding::Same.side(5, 4, 1), Some((5, 1)));
        assert_eq!(Padding::Same.side(28, 5, 2), Some((14, 1)));
        assert_eq!(Padding::Valid.side(28, 3, 2), Some((13, 0)));
        assert_eq!(Padding::Valid.side(2, 3, 1), None);
    }

    #[test]
    fn auto_takes_winograd_for_wide_3x3_stride_1_layers_only() {
        let mnist = crate::data::dataset::info(std::path::Path::new(""), "mnist").unwrap();
        let algorithms = |layers: &str| {
            let exp = crate::experiment::Experiment::from_resolved_toml("a", layers).unwrap();
            exp.network(&mnist).map(|rows| {
                rows.iter()
                    .filter_map(|r| r.algorithm)
                    .collect::<Vec<_>>()
            })
        };
        let tail = "[[model.layers]]\nflatten = true\n[[model.layers]]\ndense = { units = 10, activation = \"softmax\" }\n";
        let net = |convs: &[&str]| {
            let mut s: String = convs
                .iter()
                .map(|c| format!("[[model.layers]]\nconv = {{ {c} }}\n"))
                .collect();
            s += tail;
            s
        };
        // One input channel; then 16 → 16; 16 → 8; 5×5; stride 2; forced direct; forced
        // Winograd with 2×2, 3×3 and 4×4 output tiles.
        let got = algorithms(&net(&[
            "filters = 16, kernel = 3",
            "filters = 16, kernel = 3, padding = \"same\"",
            "filters = 8, kernel = 3",
            "filters = 16, kernel = 5, padding = \"same\"",
            "filters = 16, kernel = 3, stride = 2",
            "filters = 16, kernel = 3, algorithm = \"direct\"",
            "filters = 16, kernel = 3, algorithm = \"winograd\"",
            "filters = 16, kernel = 3, algorithm = \"winograd3\"",
            "filters = 16, kernel = 3, algorithm = \"winograd4\"",
        ]))
        .unwrap();
        assert_eq!(
            got,
            [
                "direct",
                "winograd3",
                "direct",
                "direct",
                "direct",
                "direct",
                "winograd",
                "winograd3",
                "winograd4"
            ]
        );
        for alg in ["winograd", "winograd4"] {
            let err = algorithms(&net(&[&format!(
                "filters = 4, kernel = 5, algorithm = \"{alg}\""
            )]))
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("model.layers[0] (conv)")
                    && err.contains(&format!("algorithm = \"{alg}\""))
                    && err.contains("3×3 stride-1"),
                "{err}"
            );
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut c = strided(Shape::image(6, 5, 2), 3, 2, Activation::Linear, 2, Padding::Same);
        check(
            &mut c,
            random(2 * 6 * 5 * 2, 3),
            2,
            1e-2,
            2e-3,
        );
        let mut c = conv(Shape::image(6, 5, 2), 3, 3, Activation::Linear);
        check(
            &mut c,
            random(2 * 6 * 5 * 2, 1),
            2,
            1e-2,
            2e-3,
        );
        let mut c = conv(Shape::image(5, 5, 1), 2, 4, Activation::Relu);
        check(
            &mut c,
            random(3 * 25, 2),
            3,
            1e-3,
            5e-3,
        );
    }
}
