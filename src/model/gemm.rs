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
    let threads = THREADS.with(|t| t.get());
    let parallelism = if threads > 1 && m * n * k >= PARALLEL_MIN_MACS {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every index the kernel touches inside the slices, and dst
    // does not alias a or b (it is a distinct &mut).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
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
