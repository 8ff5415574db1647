//! Window, stride and padding of the pooling layers (`maxpool`, `avgpool`): `N` (an N×N
//! window, stride N, valid padding) or `{ pool, stride, padding }`, with Keras' output sides.

use serde::{Deserialize, Serialize};

use crate::model::geometry::Padding;
use crate::model::layer::Shape;

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
