//! `maxpool = N`: max pooling with an N×N window and stride N (floor division of odd sides, as
//! Keras), on NHWC batches; or `maxpool = { pool, stride, padding }` (Keras' MaxPooling2D; with
//! `same` padding a window overhanging the input takes the maximum of what is inside). The arg-max is stored in the forward pass, so the backward pass is
//! a scatter.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::geometry::Padding;
use super::pooling::{PoolSpec, Windows};
use crate::model::layer::{Forward, Layer, LayerIo, LayerSpec, Mode, Place, Shape, StoredArray};
use crate::model::{data_of, put_grad, take_grad, Act, Param};
use crate::rng::Rng;
use crate::model::par;
use std::mem::MaybeUninit;

/// `maxpool = N` or `{ pool, stride, padding }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MaxPoolSpec(pub PoolSpec);

impl MaxPoolSpec {
    /// The pooling layer for these shapes.
    pub fn build_pool(&self, io: &LayerIo) -> MaxPool {
        let (k, stride, padding) = self.0.parts();
        let plain = stride == k && padding == Padding::Valid;
        MaxPool {
            input: io.input,
            output: io.output,
            size: k,
            general: (!plain).then(|| self.0.windows(io.input, io.output)),
        }
    }
}

impl LayerSpec for MaxPoolSpec {
    fn keras_name(&self) -> &'static str {
        "max_pooling2d"
    }

    fn output_shape(&self, input: Shape, _place: Place) -> Result<Shape, String> {
        self.0.output_shape(input, "max")
    }

    fn param_count(&self, _input: Shape) -> usize {
        0
    }

    fn describe(&self) -> String {
        format!("maxpool {}", self.0.describe())
    }

    fn build(&self, io: &LayerIo, _dev: &Cpu, _rng: &mut Rng) -> Box<dyn Layer> {
        Box::new(self.build_pool(io))
    }
}

/// A max-pooling layer.
#[derive(Debug, Clone)]
pub struct MaxPool {
    /// Input shape per sample.
    pub input: Shape,
    /// Output shape per sample.
    pub output: Shape,
    /// Window side (and stride, unless `general`).
    pub size: usize,
    /// The windows, when the stride differs from the window or the padding is `same`.
    pub general: Option<Windows>,
}

/// `arg` value of a pooled output that passes no gradient back (see [`relu_pooled`]).
pub(crate) const NO_GRAD: u32 = u32::MAX;

/// For each pooling window of `batch` samples, in output order: (offset of its output,
/// offset of its top-left input), both at channel 0.
fn windows(p: &MaxPool, batch: usize) -> impl Iterator<Item = (usize, usize)> {
    let (inp, out, k) = (p.input, p.output, p.size);
    (0..batch).flat_map(move |b| {
        (0..out.h).flat_map(move |oy| {
            (0..out.w).map(move |ox| {
                (
                    ((b * out.h + oy) * out.w + ox) * inp.c,
                    ((b * inp.h + oy * k) * inp.w + ox * k) * inp.c,
                )
            })
        })
    })
}

/// A per-channel map applied to the values a max-pool reads, as it reads them (a batch norm's
/// normalization): the pooled input is then never written out whole.
pub(crate) trait PoolMap {
    /// The map of channels `ch..ch + 16` of one cell.
    fn block(&self, ch: usize, xs: &[f32; 16]) -> [f32; 16];
    /// The map of channel `ch` of one cell.
    fn one(&self, ch: usize, x: f32) -> f32;
}

/// The values as they are.
pub(crate) struct Raw;

impl PoolMap for Raw {
    #[inline(always)]
    fn block(&self, _ch: usize, xs: &[f32; 16]) -> [f32; 16] {
        *xs
    }

    #[inline(always)]
    fn one(&self, _ch: usize, x: f32) -> f32 {
        x
    }
}

/// Pools the `batch` samples in `x` into `y` (which must hold −∞), writing the flat input index
/// of each maximum, plus `base`, into `arg`.
pub(crate) fn pool_forward(
    p: &MaxPool,
    x: &[f32],
    base: usize,
    batch: usize,
    y: &mut [f32],
    arg: &mut [u32],
) {
    pool_mapped(p, x, base, batch, y, arg, &Raw);
}

/// [`pool_forward`] of `map` applied to every value of `x` (channels last).
pub(crate) fn pool_mapped(
    p: &MaxPool,
    x: &[f32],
    base: usize,
    batch: usize,
    y: &mut [f32],
    arg: &mut [u32],
    map: &impl PoolMap,
) {
    let (w, k, c) = (p.input.w, p.size, p.input.c);
    // Strictly greater: the first maximum wins, as in TensorFlow. Written as selects, not
    // branches, so it vectorizes over channels. `ch0` is the channel of `x[s]`.
    let take = |ys: &mut [f32], args: &mut [u32], s: usize, ch0: usize, c: usize| {
        let first = (base + s) as u32;
        for (ch, ((m, a), &v)) in ys
            .iter_mut()
            .zip(args.iter_mut())
            .zip(&x[s..s + c])
            .enumerate()
        {
            let v = map.one(ch0 + ch, v);
            let better = v > *m;
            *m = if better { v } else { *m };
            *a = if better { first + ch as u32 } else { *a };
        }
    };
    if let Some(win) = &p.general {
        win.each(batch, |o, cells| {
            let (ys, args) = (&mut y[o..o + c], &mut arg[o..o + c]);
            for &s in cells {
                take(ys, args, s, 0, c);
            }
        });
        return;
    }
    // Each window 16 channels at a time, its maximum and arg-max held in registers across the
    // window's cells (taken in the same order as `take`, so bit for bit the same result).
    let full = c - c % 16;
    for (o, s0) in windows(p, batch) {
        for ch in (0..full).step_by(16) {
            let ys: &mut [f32; 16] = (&mut y[o + ch..o + ch + 16]).try_into().expect("16");
            let args: &mut [u32; 16] = (&mut arg[o + ch..o + ch + 16]).try_into().expect("16");
            let (mut m, mut a) = (*ys, *args);
            for ky in 0..k {
                for kx in 0..k {
                    let s = s0 + (ky * w + kx) * c + ch;
                    let xs = map.block(ch, x[s..s + 16].try_into().expect("16"));
                    let first = (base + s) as u32;
                    for l in 0..16 {
                        let better = xs[l] > m[l];
                        m[l] = if better { xs[l] } else { m[l] };
                        a[l] = if better { first + l as u32 } else { a[l] };
                    }
                }
            }
            (*ys, *args) = (m, a);
        }
        if full < c {
            let (ys, args) = (&mut y[o + full..o + c], &mut arg[o + full..o + c]);
            for ky in 0..k {
                for kx in 0..k {
                    take(ys, args, s0 + (ky * w + kx) * c + full, full, c - full);
                }
            }
        }
    }
}

/// Applies ReLU to outputs pooled from raw (pre-ReLU) values, giving exactly what pooling ReLU's
/// output would have, so the fused conv-then-pool op skips a ReLU pass over the full-size
/// convolution output. Max-pooling commutes with ReLU wherever a window holds a positive value
/// (the same first maximum wins). A window with none would have held only ReLU's zeros: pooling
/// picks the first of them (`first.max(0.0)`, signed zero and all), and ReLU's mask passes no
/// gradient there, so its arg-max becomes [`NO_GRAD`].
pub(crate) fn relu_pooled(p: &MaxPool, x: &[f32], batch: usize, y: &mut [f32], arg: &mut [u32]) {
    let c = p.input.c;
    let mut fix = |o: usize, s: usize| {
        for ((m, a), &first) in y[o..o + c]
            .iter_mut()
            .zip(&mut arg[o..o + c])
            .zip(&x[s..s + c])
        {
            if *m <= 0.0 {
                *m = first.max(0.0);
                *a = NO_GRAD;
            }
        }
    };
    match &p.general {
        Some(win) => win.each(batch, |o, cells| fix(o, cells[0])),
        None => windows(p, batch).for_each(|(o, s)| fix(o, s)),
    }
}

/// The gradient before pooling, from the pooled outputs' gradient `gy`: each window's arg-max
/// gets its output's gradient, everything else zero. Bit for bit what scattering into zeros
/// gives (`0.0 + g`), but written in one sequential pass when the windows do not overlap.
/// `each_row(i, row)` is called on every row of that gradient (one pixel's channels) in row
/// order, right after it is written while it is in cache: a second pass over the gradient
/// (the bias gradient's column sums, a batch norm's sums) done inside this one.
pub(crate) fn unpool(
    p: &MaxPool,
    gy: &[f32],
    arg: &[u32],
    batch: usize,
    mut each_row: impl FnMut(usize, &[f32]),
) -> Vec<f32> {
    let inp = p.input;
    let n = batch * inp.len();
    let c = inp.c;
    if p.general.is_some() {
        let mut g = vec![0.0; n];
        scatter_add(gy, arg, &mut g);
        for (i, row) in g.chunks_exact(c).enumerate() {
            each_row(i, row);
        }
        return g;
    }
    let mut g = Vec::with_capacity(n);
    unpool_samples(p, gy, arg, 0..batch, &mut g.spare_capacity_mut()[..n], each_row);
    // SAFETY: `unpool_samples` wrote every row of every sample.
    unsafe { g.set_len(n) };
    g
}

/// [`unpool`] with no pass over the rows, by pieces of samples on the threads (each sample's
/// rows written as there); `None` where it would stay on one thread (one thread, a small
/// batch, or windows that overlap).
pub(crate) fn unpool_par(p: &MaxPool, gy: &[f32], arg: &[u32], batch: usize) -> Option<Vec<f32>> {
    let len = p.input.len();
    let pieces = par::row_ranges(batch, batch * len);
    if p.general.is_some() || pieces.len() < 2 {
        return None;
    }
    let f = |r: std::ops::Range<usize>, g: &mut [MaybeUninit<f32>]| {
        unpool_samples(p, gy, arg, r, g, |_, _| {})
    };
    // SAFETY: `unpool_samples` writes every row of its samples.
    Some(unsafe { par::build(batch, len, &pieces, f) })
}

/// The un-pooled gradient of samples `samples` written into `g` (their rows, in order), for
/// windows that do not overlap; `each_row(i, row)` called on each row right after it is
/// written (`i` counts rows from the batch's first).
fn unpool_samples(
    p: &MaxPool,
    gy: &[f32],
    arg: &[u32],
    samples: std::ops::Range<usize>,
    g: &mut [MaybeUninit<f32>],
    mut each_row: impl FnMut(usize, &[f32]),
) {
    let (inp, out, k) = (p.input, p.output, p.size);
    let c = inp.c;
    let mut rows = g.chunks_exact_mut(c);
    for b in samples {
        for iy in 0..inp.h {
            for ix in 0..inp.w {
                let i = (b * inp.h + iy) * inp.w + ix;
                let row = rows.next().expect("a row for every pixel");
                if iy / k < out.h && ix / k < out.w {
                    let o = ((b * out.h + iy / k) * out.w + ix / k) * c;
                    let (args, gys) = (&arg[o..o + c], &gy[o..o + c]);
                    let at = (i * c) as u32;
                    for (j, (v, (&a, &g))) in row.iter_mut().zip(args.iter().zip(gys)).enumerate()
                    {
                        v.write(match a == at + j as u32 {
                            true => 0.0 + g,
                            false => 0.0,
                        });
                    }
                } else {
                    // A row or column that floor division leaves out of every window.
                    row.fill(MaybeUninit::new(0.0));
                }
                // SAFETY: every value of the row was just written.
                each_row(i, unsafe { par::assume_init(row) });
            }
        }
    }
}

/// `gx[arg[i]] += gy[i]` for every pooled output that passes a gradient: the adjoint of pooling.
pub(crate) fn scatter_add(gy: &[f32], arg: &[u32], gx: &mut [f32]) {
    for (g, &a) in gy.iter().zip(arg) {
        if a != NO_GRAD {
            gx[a as usize] += g;
        }
    }
}

impl Forward for MaxPool {
    /// y = maxpool(x), recorded on x's tape.
    fn forward<T: Tape<f32, Cpu> + 'static>(&mut self, x: Act<T>, _mode: &mut Mode) -> Act<T> {
        let (x, mut tape) = x.split_tape();
        let batch = x.shape().0;
        let xv = data_of(&x);
        let n_out = batch * self.output.len();
        let mut y = vec![f32::NEG_INFINITY; n_out];
        let mut arg = vec![0u32; n_out];
        pool_forward(self, &xv, 0, batch, &mut y, &mut arg);
        let out_t = x.device().tensor_from_vec(y, (batch, self.output.len()));
        if T::OWNS_TAPE {
            let (xg, yg) = (x.ghost(), out_t.ghost());
            tape.add_backward_op(move |grads| {
                let gy = take_grad!(grads, yg);
                scatter_add(&gy, &arg, grads.get_or_alloc_mut(&xg)?);
                put_grad!(grads, yg, gy);
                Ok(())
            });
        }
        out_t.put_tape(tape)
    }
}

impl Layer for MaxPool {
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
    use crate::model::gradcheck::check;
    use crate::model::affine::add_column_sums;

    /// `maxpool = 2` over `h`×`w`×`c` inputs (floor division of odd sides).
    fn pool2(h: usize, w: usize, c: usize) -> MaxPool {
        MaxPool {
            input: Shape::image(h, w, c),
            output: Shape::image(h / 2, w / 2, c),
            size: 2,
            general: None,
        }
    }

    /// Keras's `MaxPooling2D(3, strides=2, padding="same")` over `input`: overlapping windows.
    fn pool3_stride2_same(input: Shape) -> MaxPool {
        let spec = MaxPoolSpec(PoolSpec::Table {
            pool: 3,
            stride: Some(2),
            padding: Padding::Same,
        });
        let output = spec.output_shape(input, Place { last: false }).unwrap();
        spec.build_pool(&LayerIo::at(0, input, output))
    }

    #[test]
    fn pools_odd_sides_by_floor_and_keeps_channels_apart() {
        let mut p = pool2(3, 3, 2);
        // Channel 0 counts up, channel 1 counts down; the last row/column is dropped.
        let x: Vec<f32> = (0..9).flat_map(|i| [i as f32, -(i as f32)]).collect();
        let dev = Cpu::default();
        let y = p
            .forward(dev.tensor_from_vec(x, (1, 18)), &mut Mode::Eval)
            .as_vec();
        assert_eq!(y, vec![4.0, 0.0]);
    }

    #[test]
    fn wide_channels_pool_like_the_definition() {
        // 37 channels: two 16-lane blocks and a remainder; 5×7 input, 2×2 windows (the last
        // row and column left out). Ties (values rounded to a coarse grid) must keep the first.
        let p = pool2(5, 7, 37);
        let (inp, out) = (p.input, p.output);
        let batch = 2;
        let x: Vec<f32> = crate::model::gradcheck::random(batch * inp.len(), 5)
            .iter()
            .map(|v| (v * 4.0).round())
            .collect();
        let mut y = vec![f32::NEG_INFINITY; batch * out.len()];
        let mut arg = vec![0u32; batch * out.len()];
        pool_forward(&p, &x, 7, batch, &mut y, &mut arg);
        let windows = |b| (0..2).flat_map(move |oy| (0..3).map(move |ox| (b, oy, ox)));
        for (b, oy, ox) in (0..batch).flat_map(windows) {
            for ch in 0..37 {
                let mut best = (f32::NEG_INFINITY, 0);
                for (ky, kx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let i = ((b * 5 + 2 * oy + ky) * 7 + 2 * ox + kx) * 37 + ch;
                    if x[i] > best.0 {
                        best = (x[i], i as u32 + 7);
                    }
                }
                let o = ((b * 2 + oy) * 3 + ox) * 37 + ch;
                assert_eq!((y[o], arg[o]), best, "sample {b}, ({oy}, {ox}), channel {ch}");
            }
        }
    }

    #[test]
    fn unpool_is_scattering_into_zeros_bit_for_bit() {
        // 5×7 (left-out row and column) and 4×6 (tiled) inputs, 37 channels; ReLU's NO_GRAD
        // and signed zeros among the gradients; bias sums on and off. Then overlapping
        // windows (3×3, stride 2, 'same' padding), which scatter.
        let general = pool3_stride2_same(Shape::image(5, 7, 37));
        assert!(general.general.is_some());
        for p in [pool2(5, 7, 37), pool2(4, 6, 37), general] {
            let (inp, out) = (p.input, p.output);
            let (h, w) = (inp.h, inp.w);
            let batch = 2;
            let x = crate::model::gradcheck::random(batch * inp.len(), 8);
            let mut y = vec![f32::NEG_INFINITY; batch * out.len()];
            let mut arg = vec![0u32; batch * out.len()];
            pool_forward(&p, &x, 0, batch, &mut y, &mut arg);
            relu_pooled(&p, &x, batch, &mut y, &mut arg);
            assert!(p.general.is_some() || arg.contains(&NO_GRAD));
            let mut gy = crate::model::gradcheck::random(y.len(), 9);
            gy[3] = -0.0;
            // The adjoint by its definition, computed another way than `scatter_add`: each
            // input's gradient is the sum, in output order, of the gradients of the outputs
            // whose maximum it is.
            let want: Vec<f32> = (0..x.len())
                .map(|i| {
                    gy.iter()
                        .zip(&arg)
                        .filter(|&(_, &a)| a as usize == i)
                        .fold(0.0f32, |s, (g, _)| s + g)
                })
                .collect();
            let mut want_sums = vec![0.5; 37];
            add_column_sums(&mut want_sums, &want);
            let mut sums = vec![0.5; 37];
            let mut rows = 0;
            let got = unpool(&p, &gy, &arg, batch, |i, row| {
                assert_eq!(i, rows);
                rows += 1;
                add_column_sums(&mut sums, row);
            });
            assert_eq!(rows, batch * h * w);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{h}×{w}");
            assert_eq!(bits(&sums), bits(&want_sums), "{h}×{w}");
            assert_eq!(bits(&unpool(&p, &gy, &arg, batch, |_, _| {})), bits(&want));
        }
    }

    #[test]
    fn strided_same_padding_matches_keras() {
        // keras.layers.MaxPooling2D(3, strides=2, padding="same") on conv.rs's Keras input
        // (2, 5, 5, 2), Keras 3.15.1.
        let (hi, lo) = (0.457143f32, 0.314286f32);
        let want = [
            hi, lo, hi, hi, lo, hi, hi, hi, hi, hi, hi, hi, hi, hi, lo, hi, lo, hi, lo, hi, hi,
            lo, hi, lo, hi, hi, hi, hi, hi, hi, hi, lo, hi, lo, hi, hi,
        ];
        let mut p = pool3_stride2_same(Shape::image(5, 5, 2));
        let (x, _) = crate::model::layers::conv::tests::keras_problem();
        let y = p
            .forward(Cpu::default().tensor_from_vec(x, (2, 50)) as Act, &mut Mode::Eval)
            .as_vec();
        assert_eq!(y.len(), want.len());
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
        // Its gradient: every window's maximum gets the output's gradient.
        let mut vals: Vec<f32> = (0..50).map(|i| i as f32 * 0.05).collect();
        Rng::new(6, 0).shuffle(&mut vals);
        check(&mut p, vals, 1, 1e-3, 1e-3);
    }

    #[test]
    fn gradients_match_finite_differences() {
        // Distinct, well-separated values so a small step never changes the arg-max.
        let n = 2 * 5 * 4 * 3;
        let mut vals: Vec<f32> = (0..n).map(|i| i as f32 * 0.05).collect();
        Rng::new(4, 0).shuffle(&mut vals);
        let mut p = pool2(5, 4, 3);
        check(&mut p, vals, 2, 1e-2, 1e-3);
    }
}
