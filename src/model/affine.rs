//! The affine kernel shared by dense layers and convolutions (on im2col rows): bias, one GEMM,
//! activation; and the bias gradient.

use super::activation::Activation;
use super::gemm::{matmul, matmul_into, one_pass, View};
use super::par;
use std::mem::MaybeUninit;

/// `act(x·w + b)` for `rows` rows of `n_in` inputs. Bias and activation are fused around one
/// GEMM.
pub(crate) fn affine_forward(
    x: &[f32],
    rows: usize,
    n_in: usize,
    w: &[f32],
    b: &[f32],
    act: Activation,
) -> Vec<f32> {
    let mut y = Vec::new();
    affine_append(x, rows, n_in, w, b, act, &mut y);
    y
}

/// [`affine_forward`] appended to `y`. Each output row is computed the same way whatever
/// `rows` is: a batch can be done a few rows at a time, each part while it is in cache, with
/// bit-identical results.
pub(crate) fn affine_append(
    x: &[f32],
    rows: usize,
    n_in: usize,
    w: &[f32],
    b: &[f32],
    act: Activation,
    y: &mut Vec<f32>,
) {
    let (start, n) = (y.len(), rows * b.len());
    y.reserve(n);
    affine_into(x, rows, n_in, w, b, act, &mut y.spare_capacity_mut()[..n]);
    // SAFETY: `affine_into` wrote every one of the `n` new values.
    unsafe { y.set_len(start + n) };
}

/// [`affine_forward`] written into `y` (`rows` × outputs values, uninitialized), each row as
/// [`affine_append`] computes it.
pub(crate) fn affine_into(
    x: &[f32],
    rows: usize,
    n_in: usize,
    w: &[f32],
    b: &[f32],
    act: Activation,
    y: &mut [MaybeUninit<f32>],
) {
    let n_out = b.len();
    let (xv, wv) = (View::rows(x, n_in), View::rows(w, n_out));
    if one_pass(rows, n_out, n_in) {
        // The product written straight into `y`, then the bias added and the activation
        // applied row by row while each is in L1. `gemm` sums each output in one pass and
        // adds the sum to the destination with one rounding, so bias + Σ comes out the same
        // whether the bias was in the destination before or is added after (addition
        // commutes, signed zeros included).
        matmul_into(rows, n_out, n_in, y, xv, wv);
        // SAFETY: `matmul_into` wrote every value.
        let y = unsafe { par::assume_init(y) };
        for row in y.chunks_exact_mut(n_out) {
            for (v, b) in row.iter_mut().zip(b) {
                *v += b;
            }
            act.apply(row);
        }
        return;
    }
    // Every row starts as the bias.
    for row in y.chunks_exact_mut(n_out) {
        for (v, b) in row.iter_mut().zip(b) {
            v.write(*b);
        }
    }
    // SAFETY: every row was just written.
    let y = unsafe { par::assume_init(y) };
    matmul(rows, n_out, n_in, y, true, xv, wv);
    act.apply(y);
}

/// gb += the column sums of gz (the bias gradient), each column's in row order; a large gz
/// by pieces of columns on the threads.
#[inline]
pub(crate) fn add_column_sums(gb: &mut [f32], gz: &[f32]) {
    let c = gb.len();
    par::by_channels(gb, gz.len(), |cols, sums| {
        for row in gz.chunks_exact(c) {
            for (g, v) in sums.iter_mut().zip(&row[cols.clone()]) {
                *g += v;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gradcheck::random;

    #[test]
    fn bias_added_after_the_product_is_bias_filled_before_bit_for_bit() {
        // One-pass shapes (the seed's first layer a sample at a time, its last dense layer,
        // just over gemm's small-matrix limit, depth 3 and 512) and shapes that keep the bias
        // fill (one column, depth 2, a deep product, a small one), appended after old rows.
        for (rows, n_in, n_out) in [
            (676, 9, 32),
            (32, 100, 10),
            (17, 16, 16),
            (40, 3, 7),
            (9, 512, 33),
            (300, 5, 1),
            (50, 2, 8),
            (32, 600, 10),
            (16, 9, 16),
        ] {
            let x = random(rows * n_in, 1);
            let w = random(n_in * n_out, 2);
            let mut b = random(n_out, 3);
            b[0] = -0.0;
            for act in [Activation::Linear, Activation::Relu] {
                let mut want = vec![0.5; 7];
                want.extend((0..rows).flat_map(|_| b.iter().copied()));
                let (x_v, w_v) = (View::rows(&x, n_in), View::rows(&w, n_out));
                matmul(rows, n_out, n_in, &mut want[7..], true, x_v, w_v);
                act.apply(&mut want[7..]);
                let mut got = vec![0.5; 7];
                affine_append(&x, rows, n_in, &w, &b, act, &mut got);
                assert_eq!(got.len(), want.len());
                let differ = got
                    .iter()
                    .zip(&want)
                    .position(|(g, w)| g.to_bits() != w.to_bits());
                assert_eq!(differ, None, "{rows}×{n_in}×{n_out} {act:?}");
            }
        }
    }
}
