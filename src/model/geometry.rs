//! The geometry of a convolution or pooling window over NHWC images: Keras' padding rule,
//! and a convolution's unfolding (im2col) and the products of its passes. Shared by the
//! direct convolution, Winograd's and the pooling layers, so none of them imports another.

use serde::{Deserialize, Serialize};

use super::gemm::{matmul, View};
use super::layer::Shape;
use super::par;

/// Keras' padding modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// No padding: only windows that fit inside the input.
    #[default]
    Valid,
    /// Zero padding so the output side is ⌈input / stride⌉.
    Same,
}

impl Padding {
    /// Whether this is `valid` (the default, not written out).
    pub fn is_valid(&self) -> bool {
        *self == Padding::Valid
    }

    /// Output side and padding before (top/left) for one input side, Keras' rule: `same` pads
    /// (out − 1)·stride + k − in zeros, the smaller half first. `None` when a `valid` window
    /// does not fit.
    pub fn side(self, input: usize, kernel: usize, stride: usize) -> Option<(usize, usize)> {
        match self {
            Padding::Valid => (kernel <= input).then(|| ((input - kernel) / stride + 1, 0)),
            Padding::Same => {
                let out = input.div_ceil(stride);
                let total = ((out - 1) * stride + kernel).saturating_sub(input);
                Some((out, total / 2))
            }
        }
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
    /// Step between receptive fields.
    pub stride: usize,
    /// Zero rows above the input.
    pub pad_top: usize,
    /// Zero columns left of the input.
    pub pad_left: usize,
}

impl ConvGeometry {
    /// The geometry of a `kernel`×`kernel` convolution from `input` to `output`.
    pub fn new(
        input: Shape,
        output: Shape,
        kernel: usize,
        stride: usize,
        padding: Padding,
    ) -> Self {
        let pad = |side| padding.side(side, kernel, stride).map_or(0, |(_, p)| p);
        ConvGeometry {
            input,
            output,
            kernel,
            stride,
            pad_top: pad(input.h),
            pad_left: pad(input.w),
        }
    }

    /// Whether every window lies inside the input one pixel apart (the plain unfolding).
    fn dense(&self) -> bool {
        self.stride == 1 && self.pad_top == 0 && self.pad_left == 0
    }

    /// The input row under kernel row `ky` at output row `oy`, if inside the input.
    fn tap(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky)
            .checked_sub(self.pad_top)
            .filter(|&iy| iy < self.input.h)
    }

    /// Values in one receptive field (a row of the unfolded input).
    pub fn field(&self) -> usize {
        self.kernel * self.kernel * self.input.c
    }

    /// Output positions of a batch: the rows of its unfolded input.
    pub fn rows(&self, batch: usize) -> usize {
        batch * self.output.h * self.output.w
    }

    /// Unfolds each output position's receptive field into one row (im2col); a large batch by
    /// pieces of samples on the threads.
    pub fn unfold(&self, x: &[f32], batch: usize) -> Vec<f32> {
        let per_sample = self.rows(1) * self.field();
        let pieces = par::row_ranges(batch, batch * per_sample);
        if pieces.len() == 1 {
            return self.unfold_here(x, batch);
        }
        let inp = self.input.len();
        let mut parts: Vec<Vec<f32>> = vec![Vec::new(); pieces.len()];
        let ranges: Vec<_> = (0..pieces.len()).map(|i| i..i + 1).collect();
        par::each_mut(&mut parts, 1, &ranges, |i, part| {
            let r = &pieces[i.start];
            part[0] = self.unfold_here(&x[r.start * inp..r.end * inp], r.len());
        });
        // Joined into the first piece (a copy of the rest: about 1% of a baseline step).
        let mut col = std::mem::take(&mut parts[0]);
        col.reserve_exact(batch * per_sample - col.len());
        for part in &parts[1..] {
            col.extend_from_slice(part);
        }
        col
    }

    /// [`ConvGeometry::unfold`] on the calling thread.
    fn unfold_here(&self, x: &[f32], batch: usize) -> Vec<f32> {
        if !self.dense() {
            return self.unfold_padded(x, batch);
        }
        let (inp, out, k) = (self.input, self.output, self.kernel);
        match (k, inp.c) {
            (3, 1) => return self.unfold_single::<3, 9>(x, batch),
            (5, 1) => return self.unfold_single::<5, 25>(x, batch),
            _ => {}
        }
        let run = k * inp.c;
        let mut col = Vec::with_capacity(batch * out.h * out.w * k * run);
        for b in 0..batch {
            for oy in 0..out.h {
                for ox in 0..out.w {
                    for ky in 0..k {
                        let s = ((b * inp.h + oy + ky) * inp.w + ox) * inp.c;
                        push_run(&mut col, &x[s..s + run]);
                    }
                }
            }
        }
        col
    }

    /// [`ConvGeometry::unfold`] of a single-channel input with a K×K kernel (F = K·K): each
    /// row gathered into a fixed-size array and appended at once (copying it as K runs of K
    /// values was 8% of a baseline training step).
    fn unfold_single<const K: usize, const F: usize>(&self, x: &[f32], batch: usize) -> Vec<f32> {
        debug_assert!(K * K == F && self.kernel == K && self.input.c == 1 && self.dense());
        let (inp, out) = (self.input, self.output);
        let mut col = Vec::with_capacity(self.rows(batch) * F);
        for b in 0..batch {
            for oy in 0..out.h {
                let rows: [&[f32]; K] = std::array::from_fn(|ky| {
                    let s = (b * inp.h + oy + ky) * inp.w;
                    &x[s..s + inp.w]
                });
                for ox in 0..out.w {
                    let mut field = [0.0f32; F];
                    for (ky, row) in rows.iter().enumerate() {
                        field[ky * K..(ky + 1) * K].copy_from_slice(&row[ox..ox + K]);
                    }
                    col.extend_from_slice(&field);
                }
            }
        }
        col
    }

    /// Adds each row of `col` back onto the input positions it came from (the adjoint of
    /// [`ConvGeometry::unfold`]), by pieces of samples on the threads (no two samples share
    /// an input position).
    pub fn fold_add(&self, col: &[f32], batch: usize, gx: &mut [f32]) {
        let per_sample = self.rows(1) * self.field();
        let pieces = par::row_ranges(batch, batch * per_sample);
        par::each_mut(gx, self.input.len(), &pieces, |r, gx| {
            let col = &col[r.start * per_sample..r.end * per_sample];
            self.fold_add_here(col, r.len(), gx)
        });
    }

    /// [`ConvGeometry::fold_add`] on the calling thread.
    fn fold_add_here(&self, col: &[f32], batch: usize, gx: &mut [f32]) {
        if !self.dense() {
            return self.fold_add_padded(col, batch, gx);
        }
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

    /// For output column `ox`: the kernel columns whose input lies inside the image, as
    /// (first kernel column, first input column, count): contiguous in both, so each kernel
    /// row of a receptive field is copied as one run.
    fn columns(&self, ox: usize) -> (usize, usize, usize) {
        let (k, w) = (self.kernel, self.input.w);
        let start = ox * self.stride;
        let kx0 = self.pad_left.saturating_sub(start);
        let kx1 = (w + self.pad_left).saturating_sub(start).min(k);
        if kx1 <= kx0 {
            return (0, 0, 0);
        }
        (kx0, start + kx0 - self.pad_left, kx1 - kx0)
    }

    /// [`ConvGeometry::unfold`] with strides and/or zero padding. Every value is written once,
    /// in order: zeros where a window leaves the input, a copy of the input where it is inside
    /// (zero-filling the whole buffer first, then copying, cost 12% of a `modern` step in
    /// memset alone: the buffer is 58 MB per batch of 64 at 28×28×32).
    fn unfold_padded(&self, x: &[f32], batch: usize) -> Vec<f32> {
        let (inp, out, k, c) = (self.input, self.output, self.kernel, self.input.c);
        let mut col = Vec::with_capacity(self.rows(batch) * self.field());
        let zeros = |col: &mut Vec<f32>, n: usize| col.resize(col.len() + n, 0.0);
        for b in 0..batch {
            for oy in 0..out.h {
                for ox in 0..out.w {
                    let (kx, ix, n) = self.columns(ox);
                    for ky in 0..k {
                        let Some(iy) = self.tap(oy, ky).filter(|_| n > 0) else {
                            zeros(&mut col, k * c);
                            continue;
                        };
                        let s = ((b * inp.h + iy) * inp.w + ix) * c;
                        zeros(&mut col, kx * c);
                        push_run(&mut col, &x[s..s + n * c]);
                        zeros(&mut col, (k - kx - n) * c);
                    }
                }
            }
        }
        col
    }

    /// [`ConvGeometry::fold_add`] with strides and/or zero padding (padding takes nothing back).
    fn fold_add_padded(&self, col: &[f32], batch: usize, gx: &mut [f32]) {
        let (inp, out, k, c) = (self.input, self.output, self.kernel, self.input.c);
        let field = self.field();
        let mut r = 0;
        for b in 0..batch {
            for oy in 0..out.h {
                for ox in 0..out.w {
                    let (kx, ix, n) = self.columns(ox);
                    let row = &col[r * field..(r + 1) * field];
                    for ky in 0..k {
                        let Some(iy) = self.tap(oy, ky) else { continue };
                        let s = ((b * inp.h + iy) * inp.w + ix) * c;
                        let d = (ky * k + kx) * c;
                        for (g, v) in gx[s..s + n * c].iter_mut().zip(&row[d..d + n * c]) {
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

/// Appends `src` to `col`. The runs of a single-channel input's unfolding are a few values
/// long: copied as fixed-size arrays, not by one `memmove` call each (12% of a baseline step
/// went to those calls).
#[inline(always)]
fn push_run(col: &mut Vec<f32>, src: &[f32]) {
    fn fixed<const N: usize>(col: &mut Vec<f32>, src: &[f32]) {
        let run: [f32; N] = src.try_into().expect("run of N values");
        col.extend_from_slice(&run);
    }
    match src.len() {
        1 => col.push(src[0]),
        2 => fixed::<2>(col, src),
        3 => fixed::<3>(col, src),
        4 => fixed::<4>(col, src),
        5 => fixed::<5>(col, src),
        6 => fixed::<6>(col, src),
        7 => fixed::<7>(col, src),
        8 => fixed::<8>(col, src),
        _ => col.extend_from_slice(src),
    }
}
