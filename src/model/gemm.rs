//! One safe entry point to the `gemm` crate for row-/column-strided f32 matrices.

use std::cell::Cell;

thread_local! {
    static THREADS: Cell<usize> = const { Cell::new(1) };
}

/// Products smaller than this many multiply-adds run on one thread whatever `set_threads` says:
/// measured with `mnist-lab bench` (1 worker, 2 GEMM threads), splitting the seed's smaller
/// products over 2 threads made a training step 1.1–1.5× slower; above this size (deeper's
/// conv products, 71M and 95M) 2 threads gain about 6%.
const PARALLEL_MIN_MACS: usize = 32 << 20;

/// Sets how many threads the matrix products of the calling thread may use.
pub fn set_threads(n: usize) {
    THREADS.with(|t| t.set(n.max(1)));
}

/// A matrix view: `data[i * rs + j * cs]` is element (i, j).
#[derive(Clone, Copy)]
pub struct View<'a> {
    /// Backing slice.
    pub data: &'a [f32],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl<'a> View<'a> {
    /// Row-major view with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// Transposed view of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            rs: 1,
            cs: cols,
        }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// `dst[m×n] (+)= a[m×k] · b[k×n]`, with `dst` row-major; adds to `dst` when `accumulate`.
pub fn matmul(m: usize, n: usize, k: usize, dst: &mut [f32], accumulate: bool, a: View, b: View) {
    matmul_rows(m, n, k, dst, n, accumulate, a, b);
}

/// [`matmul`] into a destination whose rows are `dst_rs` apart (`dst[i * dst_rs + j]`).
#[allow(clippy::too_many_arguments)]
pub fn matmul_rows(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: View,
    b: View,
) {
    assert!(dst_rs >= n, "gemm: destination rows overlap");
    assert!(
        m == 0 || n == 0 || dst.len() > (m - 1) * dst_rs + n - 1,
        "gemm: destination too small"
    );
    assert!(a.fits(m, k) && b.fits(k, n), "gemm: operand too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_rs).take(m) {
                row[..n].iter_mut().for_each(|v| *v = 0.0);
            }
        }
        return;
    }
    // SAFETY: the asserts above keep every element the kernel touches inside `dst`.
    unsafe { gemm_raw(m, n, k, dst.as_mut_ptr(), dst_rs, accumulate, a, b) }
}

/// Whether `gemm` computes each output of an m×n×k product in its packed microkernels, as
/// one sum of all k terms held in registers, then stored to the destination or added to it
/// with one rounding: not its small-matrix kernel (at most 16×16 outputs), its matrix-vector
/// paths (one row or column), which add each term to the destination in turn, or its depth-1
/// and -2 path; and in one depth block (its `kc` is at least min(k, 512)).
pub fn one_pass(m: usize, n: usize, k: usize) -> bool {
    m >= 2 && n >= 2 && (3..=512).contains(&k) && m * n > 16 * 16
}

/// `dst` extended by the m×n product a[m×k]·b[k×n] (row-major). Where [`one_pass`] holds the
/// GEMM kernel writes it straight into `dst`'s spare capacity, with no pass over the new rows
/// before it (a zero or bias fill: a caller adds its bias afterwards, in cache).
pub fn matmul_append(m: usize, n: usize, k: usize, dst: &mut Vec<f32>, a: View, b: View) {
    let (at, len) = (dst.len(), m * n);
    if !one_pass(m, n, k) {
        dst.resize(at + len, 0.0);
        matmul(m, n, k, &mut dst[at..], false, a, b);
        return;
    }
    assert!(a.fits(m, k) && b.fits(k, n), "gemm: operand too small");
    dst.reserve(len);
    let spare = &mut dst.spare_capacity_mut()[..len];
    // SAFETY: `spare` holds the m×n destination and the operands fit. Without `accumulate`
    // (alpha = 0), `gemm`'s packed microkernels treat the destination as write-only: full
    // tiles store `beta × sum`, edge tiles are summed in a stack buffer and stored element by
    // element, neither loading the destination (only its small-matrix kernel, which
    // `one_pass` excludes, copies the tile in first). So every element of the block is
    // written before `set_len` exposes it.
    unsafe {
        gemm_raw(m, n, k, spare.as_mut_ptr().cast(), n, false, a, b);
        dst.set_len(at + len);
    }
}

/// `gemm` on a destination pointer; the callers check the bounds.
///
/// # Safety
/// `dst[i * dst_rs + j]` for i < m, j < n must be valid for writes (and initialized when
/// `accumulate`), and `a`, `b` must hold m×k and k×n elements; k > 0.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    a: View,
    b: View,
) {
    let threads = THREADS.with(|t| t.get());
    let parallelism = if threads > 1 && m * n * k >= PARALLEL_MIN_MACS {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the caller keeps every index the kernel touches inside the buffers, and dst does
    // not alias a or b (it comes from a distinct &mut).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product_with_transposes_and_accumulation() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect(); // n×k
        let mut dst = vec![1.0; m * n];
        matmul(
            m,
            n,
            k,
            &mut dst,
            true,
            View::rows(&a, k),
            View::transposed(&bt, k),
        );
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|p| a[i * k + p] * bt[j * k + p]).sum::<f32>();
                assert!((dst[i * n + j] - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn thread_count_does_not_change_a_single_bit() {
        // The shapes of the seed's layers (forward, weight gradient, input gradient).
        for (m, n, k) in [
            (21632, 32, 9),
            (32, 100, 5408),
            (5408, 100, 32),
            (3872, 64, 288),
            (288, 64, 3872),
            (3872, 288, 64),
        ] {
            let mut rng = crate::rng::Rng::new(m as u64, 1);
            let a: Vec<f32> = (0..m * k).map(|_| rng.uniform(1.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.uniform(1.0)).collect();
            let product = |threads| {
                let mut c = vec![0.0; m * n];
                set_threads(threads);
                matmul(m, n, k, &mut c, false, View::rows(&a, k), View::rows(&b, n));
                set_threads(1);
                c
            };
            let (one, two) = (product(1), product(2));
            assert!(
                one.iter()
                    .zip(&two)
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{m}×{n}×{k}"
            );
        }
    }
}
