//! The affine kernel shared by dense layers and convolutions (on im2col rows): bias, one GEMM,
//! activation; and the bias gradient.

use super::activation::Activation;
use super::gemm::{matmul, View};

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
    affine_into(x, rows, n_in, w, b, act, &mut y);
    y
}

/// [`affine_forward`] into `y` (its old contents dropped, its allocation reused). Each output
/// row is computed the same way whatever `rows` is: a batch can be done a few rows at a time
/// with bit-identical results.
pub(crate) fn affine_into(
    x: &[f32],
    rows: usize,
    n_in: usize,
    w: &[f32],
    b: &[f32],
    act: Activation,
    y: &mut Vec<f32>,
) {
    y.clear();
    affine_append(x, rows, n_in, w, b, act, y);
}

/// [`affine_forward`] appended to `y`: a batch's output can be built a few rows at a time,
/// each part computed while it is in cache.
pub(crate) fn affine_append(
    x: &[f32],
    rows: usize,
    n_in: usize,
    w: &[f32],
    b: &[f32],
    act: Activation,
    y: &mut Vec<f32>,
) {
    let n_out = b.len();
    // Every row starts as the bias: copied in doubling blocks, not one short copy per row.
    let (start, n) = (y.len(), rows * n_out);
    y.reserve(n);
    y.extend_from_slice(&b[..n_out.min(n)]);
    while y.len() < start + n {
        let done = y.len() - start;
        y.extend_from_within(start..start + (n - done).min(done));
    }
    let y = &mut y[start..];
    matmul(
        rows,
        n_out,
        n_in,
        y,
        true,
        View::rows(x, n_in),
        View::rows(w, n_out),
    );
    act.apply(y);
}

/// gb += the column sums of gz (the bias gradient).
pub(crate) fn add_column_sums(gb: &mut [f32], gz: &[f32]) {
    for row in gz.chunks_exact(gb.len()) {
        for (g, v) in gb.iter_mut().zip(row) {
            *g += v;
        }
    }
}
