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

/// The threads an m×n×k product of the calling thread may use.
fn threads_for(m: usize, n: usize, k: usize) -> usize {
    match m * n * k >= PARALLEL_MIN_MACS {
        true => THREADS.with(|t| t.get()),
        false => 1,
    }
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
    let threads = threads_for(m, n, k);
    matmul_on(threads, m, n, k, dst, dst_rs, accumulate, a, b);
}

/// [`matmul_rows`] on `threads` threads, whatever the product's size.
#[allow(clippy::too_many_arguments)]
fn matmul_on(
    threads: usize,
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
    // Products split into depth blocks keep the thread count of the whole.
    if let Some(kc) = depth_blocks(m, n, k) {
        // Block by block, each added to the destination: see `depth_blocks`.
        for (i, p) in (0..k).step_by(kc).enumerate() {
            let kb = kc.min(k - p);
            let a = View {
                data: &a.data[p * a.cs..],
                ..a
            };
            let b = View {
                data: &b.data[p * b.rs..],
                ..b
            };
            let acc = accumulate || i > 0;
            // SAFETY: as below; each block lies inside the full operands checked above.
            unsafe { gemm_raw(m, n, kb, dst.as_mut_ptr(), dst_rs, acc, a, b, threads) }
        }
        return;
    }
    // SAFETY: the asserts above keep every element the kernel touches inside `dst`.
    unsafe { gemm_raw(m, n, k, dst.as_mut_ptr(), dst_rs, accumulate, a, b, threads) }
}

/// The most terms `gemm` sums in one pass on every CPU (its `kc` is at least this).
const ONE_PASS_DEPTH: usize = 512;

/// The depth of the blocks an m×n×k product is summed in, when that must be fixed here.
///
/// `gemm` sums a product deeper than its block depth `kc` block by block, each block's sum
/// then added to the destination, and for products larger than 64×64 it derives `kc` from the
/// microkernel's height (the vector width) and the L1 cache's geometry: 512 here (AVX-512, a
/// 48 KB 12-way L1) and on a 32 KB 8-way AVX2 CPU, but 1024 on an AVX2 CPU with this L1, so
/// the same product rounded differently on such a machine (seen under emulation: the dense
/// layer's 5408-deep product). So such products are cut here into blocks of at most 512,
/// balanced as `gemm` balances them (⌈k / ⌈k/512⌉⌉), each summed in one pass on any CPU: the
/// same blocks and bits as this machine's `gemm`, now on every CPU. Products of at most 64×64
/// (fixed blocks of 512 in `gemm` itself), of at most 256 outputs or a single row or column
/// (its other paths) are left to it.
fn depth_blocks(m: usize, n: usize, k: usize) -> Option<usize> {
    (k > ONE_PASS_DEPTH && (m > 64 || n > 64) && m * n > 16 * 16 && m >= 2 && n >= 2)
        .then(|| k.div_ceil(k.div_ceil(ONE_PASS_DEPTH)))
}

/// Whether `gemm` computes each output of an m×n×k product in its packed microkernels, as
/// one sum of all k terms held in registers, then stored to the destination or added to it
/// with one rounding: not its small-matrix kernel (at most 16×16 outputs), its matrix-vector
/// paths (one row or column), which add each term to the destination in turn, or its depth-1
/// and -2 path; and in one depth block (its `kc` is at least min(k, 512)).
pub fn one_pass(m: usize, n: usize, k: usize) -> bool {
    m >= 2 && n >= 2 && (3..=ONE_PASS_DEPTH).contains(&k) && m * n > 16 * 16
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
    let threads = threads_for(m, n, k);
    // SAFETY: `spare` holds the m×n destination and the operands fit. Without `accumulate`
    // (alpha = 0), `gemm`'s packed microkernels treat the destination as write-only: full
    // tiles store `beta × sum`, edge tiles are summed in a stack buffer and stored element by
    // element, neither loading the destination (only its small-matrix kernel, which
    // `one_pass` excludes, copies the tile in first). So every element of the block is
    // written before `set_len` exposes it.
    unsafe {
        gemm_raw(m, n, k, spare.as_mut_ptr().cast(), n, false, a, b, threads);
        dst.set_len(at + len);
    }
}

/// `gemm` on a destination pointer, on `threads` threads; the callers check the bounds.
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
    threads: usize,
) {
    let parallelism = if threads > 1 {
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
    fn deep_products_are_summed_in_the_same_blocks_on_every_cpu() {
        // The definition every CPU must meet: each output is a chain of fused multiply-adds
        // over a block of the depth, from zero, in order; block sums are added to the
        // destination in order. Blocks are balanced ones of at most 512 (`depth_blocks`), or
        // for products of at most 64×64, `gemm`'s own fixed blocks of 512.
        for (m, n, k, accumulate, transposed) in [
            (70, 20, 1300, false, false),
            (3, 100, 700, true, false),
            (100, 37, 513, false, true),
            (65, 5, 2000, true, true),
            (9, 32, 1300, false, true),
        ] {
            let mut rng = crate::rng::Rng::new(k as u64, 2);
            let mut draw =
                |len: usize| -> Vec<f32> { (0..len).map(|_| rng.uniform(1.0)).collect() };
            let (a, b, init) = (draw(m * k), draw(k * n), draw(m * n));
            // a is m×k row-major, or stored k×m and viewed transposed.
            let av = match transposed {
                false => View::rows(&a, k),
                true => View::transposed(&a, m),
            };
            let at = |i: usize, p: usize| if transposed { p * m + i } else { i * k + p };
            let mut got = init.clone();
            matmul(m, n, k, &mut got, accumulate, av, View::rows(&b, n));
            let kc = match m <= 64 && n <= 64 {
                true => 512,
                false => k.div_ceil(k.div_ceil(512)),
            };
            for i in 0..m {
                for j in 0..n {
                    let mut d = accumulate.then_some(init[i * n + j]);
                    for block in (0..k).step_by(kc) {
                        let s = (block..(block + kc).min(k))
                            .fold(0.0f32, |s, p| a[at(i, p)].mul_add(b[p * n + j], s));
                        d = Some(d.map_or(s, |d| d + s));
                    }
                    let want = d.expect("k > 0");
                    assert_eq!(
                        got[i * n + j].to_bits(),
                        want.to_bits(),
                        "{m}×{n}×{k} ({i}, {j})"
                    );
                }
            }
        }
    }

    #[test]
    fn thread_count_does_not_change_a_single_bit() {
        // The shapes of the seed's layers (forward, weight gradient, input gradient), each on
        // 1, 2 and 3 threads whatever its size (in training the smaller ones stay on one: see
        // PARALLEL_MIN_MACS); every one is above gemm's own threading threshold (48·48·256), so
        // the threads do split it.
        for (m, n, k) in [
            (21632, 32, 9),
            (32, 100, 5408),
            (5408, 100, 32),
            (3872, 64, 288),
            (288, 64, 3872),
            (3872, 288, 64),
        ] {
            assert!(m * n * k > 48 * 48 * 256);
            let mut rng = crate::rng::Rng::new(m as u64, 1);
            let a: Vec<f32> = (0..m * k).map(|_| rng.uniform(1.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.uniform(1.0)).collect();
            let product = |threads| {
                let mut c = vec![0.0; m * n];
                let (a, b) = (View::rows(&a, k), View::rows(&b, n));
                matmul_on(threads, m, n, k, &mut c, n, false, a, b);
                c.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
            };
            let one = product(1);
            for threads in [2, 3] {
                assert!(one == product(threads), "{m}×{n}×{k} on {threads} threads");
            }
        }
        // And the larger ones do run on the threads set for them.
        set_threads(2);
        assert_eq!(
            (threads_for(3872, 64, 288), threads_for(21632, 32, 9)),
            (2, 1)
        );
        set_threads(1);
    }
}
