//! `avgpool = N` or `avgpool = { pool, stride, padding }`: average pooling over N×N windows
//! (stride N by default), Keras' AveragePooling2D. With `padding = "same"` a window that
//! overhangs the input averages only the values inside it (TensorFlow's rule).

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::conv::Padding;
use crate::model::layer::{Forward, Layer, LayerIo, LayerSpec, Mode, Place, Shape, StoredArray};
use crate::model::{data_of, put_grad, take_grad, Act, Param};
use crate::rng::Rng;

/// Window, stride and padding of a pooling layer: `N` or `{ pool, stride, padding }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PoolSpec {
    /// `N`: an N×N window, stride N, valid padding.
    Size(usize),
    /// The full form.
    Table {
        /// Window side.
        pool: usize,
        /// Step between windows (default: the window side).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<usize>,
        /// `valid` (default) or `same`.
        #[serde(default, skip_serializing_if = "Padding::is_valid")]
        padding: Padding,
    },
}

impl PoolSpec {
    /// (window, stride, padding).
    pub fn parts(&self) -> (usize, usize, Padding) {
        match *self {
            PoolSpec::Size(n) => (n, n, Padding::Valid),
            PoolSpec::Table {
                pool,
                stride,
                padding,
            } => (pool, stride.unwrap_or(pool), padding),
        }
    }

    /// The output shape for `input`, or why the window does not fit.
    pub fn output_shape(&self, input: Shape, kind: &str) -> Result<Shape, String> {
        let (k, s, padding) = self.parts();
        if input.flat {
            return Err(format!("input is flat; {kind} pooling needs an image"));
        }
        if k == 0 || s == 0 {
            return Err("pool and stride must be at least 1".into());
        }
        match (padding.side(input.h, k, s), padding.side(input.w, k, s)) {
            (Some((h, _)), Some((w, _))) => Ok(Shape::image(h, w, input.c)),
            _ => Err(format!(
                "pool size {k} does not fit its {}×{} input (expected 1..={})",
                input.h,
                input.w,
                input.h.min(input.w)
            )),
        }
    }

    /// A few words: "2", "3/2 same".
    pub fn describe(&self) -> String {
        let (k, s, padding) = self.parts();
        let mut d = k.to_string();
        if s != k {
            d += &format!("/{s}");
        }
        if padding == Padding::Same {
            d += " same";
        }
        d
    }

    /// One window per output, clipped to the input (global pooling of non-square images).
    pub fn windows_exact(&self, input: Shape, output: Shape) -> Windows {
        let (k, s, _) = self.parts();
        Windows {
            input,
            output,
            k,
            s,
            top: 0,
            left: 0,
        }
    }

    /// The windows for these shapes.
    pub fn windows(&self, input: Shape, output: Shape) -> Windows {
        let (k, s, padding) = self.parts();
        let pad = |side| padding.side(side, k, s).map_or(0, |(_, p)| p);
        Windows {
            input,
            output,
            k,
            s,
            top: pad(input.h),
            left: pad(input.w),
        }
    }
}

/// The pooling windows of one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Windows {
    input: Shape,
    output: Shape,
    k: usize,
    s: usize,
    top: usize,
    left: usize,
}

impl Windows {
    /// The input rows (or columns) of output row `o`, clipped to `0..side`.
    fn span(&self, o: usize, pad: usize, side: usize) -> std::ops::Range<usize> {
        let start = (o * self.s).saturating_sub(pad);
        let end = (o * self.s + self.k).saturating_sub(pad).min(side);
        start..end
    }

    /// Calls `f(output offset, input offsets of the window)` for every window of `batch`
    /// samples; offsets are at channel 0.
    pub fn each(&self, batch: usize, mut f: impl FnMut(usize, &[usize])) {
        let (i, o) = (self.input, self.output);
        let mut cells = Vec::with_capacity(self.k * self.k);
        for b in 0..batch {
            for oy in 0..o.h {
                for ox in 0..o.w {
                    cells.clear();
                    for iy in self.span(oy, self.top, i.h) {
                        for ix in self.span(ox, self.left, i.w) {
                            cells.push(((b * i.h + iy) * i.w + ix) * i.c);
                        }
                    }
                    f(((b * o.h + oy) * o.w + ox) * o.c, &cells);
                }
            }
        }
    }
}

/// `avgpool = …`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AvgPoolSpec(pub PoolSpec);

impl LayerSpec for AvgPoolSpec {
    fn keras_name(&self) -> &'static str {
        "average_pooling2d"
    }

    fn output_shape(&self, input: Shape, _place: Place) -> Result<Shape, String> {
        self.0.output_shape(input, "average")
    }

    fn param_count(&self, _input: Shape) -> usize {
        0
    }

    fn cost(&self, input: Shape, _output: Shape) -> f64 {
        4.0 * input.len() as f64
    }

    fn describe(&self) -> String {
        format!("avgpool {}", self.0.describe())
    }

    fn build(&self, io: LayerIo, _dev: &Cpu, _rng: &mut Rng) -> Box<dyn Layer> {
        Box::new(AvgPool {
            windows: self.0.windows(io.input, io.output),
            input: io.input,
            output: io.output,
        })
    }
}

/// An average-pooling layer (global average pooling is the one window covering the image).
#[derive(Debug, Clone)]
pub struct AvgPool {
    /// The windows.
    pub windows: Windows,
    /// Input shape per sample.
    pub input: Shape,
    /// Output shape per sample.
    pub output: Shape,
}

impl Forward for AvgPool {
    fn forward<T: Tape<f32, Cpu> + 'static>(&mut self, x: Act<T>, _mode: &mut Mode) -> Act<T> {
        let (x, mut tape) = x.split_tape();
        let batch = x.shape().0;
        let c = self.input.c;
        let v = data_of(&x);
        let mut y = vec![0.0f32; batch * self.output.len()];
        self.windows.each(batch, |o, cells| {
            let out = &mut y[o..o + c];
            for &s in cells {
                for (a, x) in out.iter_mut().zip(&v[s..s + c]) {
                    *a += x;
                }
            }
            let inv = 1.0 / cells.len() as f32;
            out.iter_mut().for_each(|a| *a *= inv);
        });
        let out_t = x.device().tensor_from_vec(y, (batch, self.output.len()));
        if T::OWNS_TAPE {
            let (xg, yg, windows) = (x.ghost(), out_t.ghost(), self.windows);
            tape.add_backward_op(move |grads| {
                let gy = take_grad!(grads, yg);
                let gx = grads.get_or_alloc_mut(&xg)?;
                windows.each(batch, |o, cells| {
                    let inv = 1.0 / cells.len() as f32;
                    for &s in cells {
                        for (g, d) in gx[s..s + c].iter_mut().zip(&gy[o..o + c]) {
                            *g += d * inv;
                        }
                    }
                });
                put_grad!(grads, yg, gy);
                Ok(())
            });
        }
        out_t.put_tape(tape)
    }
}

impl Layer for AvgPool {
    fn params(&mut self) -> Vec<&mut Param> {
        Vec::new()
    }

    fn arrays(&mut self) -> Vec<StoredArray<'_>> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gradcheck::{check, random};

    fn layer(spec: PoolSpec, input: Shape) -> AvgPool {
        let output = spec.output_shape(input, "average").unwrap();
        AvgPool {
            windows: spec.windows(input, output),
            input,
            output,
        }
    }

    #[test]
    fn same_padding_averages_only_the_values_inside() {
        // 3×3 input 1..9, pool 2 stride 2 same: windows {1,2,4,5}, {3,6}, {7,8}, {9} (Keras
        // pads the bottom/right; TensorFlow's average excludes the padding).
        let spec = PoolSpec::Table {
            pool: 2,
            stride: Some(2),
            padding: Padding::Same,
        };
        let mut p = layer(spec, Shape::image(3, 3, 1));
        let x: Act = Cpu::default().tensor_from_vec((1..=9).map(|v| v as f32).collect(), (1, 9));
        let y = p.forward(x, &mut Mode::Eval).as_vec();
        assert_eq!(y, vec![3.0, 4.5, 7.5, 9.0]);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut p = layer(PoolSpec::Size(2), Shape::image(5, 4, 3));
        check(&mut p, random(2 * 60, 5), 2, 1e-2, 1e-3);
        let spec = PoolSpec::Table {
            pool: 3,
            stride: Some(2),
            padding: Padding::Same,
        };
        let mut p = layer(spec, Shape::image(5, 6, 2));
        check(&mut p, random(2 * 60, 6), 2, 1e-2, 1e-3);
    }
}
