//! One safe entry point to the `gemm` crate for row-/column-strided f32 matrices.
//!
//! On several threads ([`par::threads`]) a large product is cut into pieces of rows or
//! columns, each a product of its own on one thread: never its depth, so every output is the
//! same chain of multiply-adds as on one thread (see [`canonical`]).

use super::par;

/// Multiply-adds below which a piece of a product is not worth a thread of its own (handing a
/// piece to a helper costs about a microsecond, more when it sleeps; a piece this size takes
/// about 40).
pub const PIECE_MIN_MACS: usize = 1 << 20;

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

    /// The view starting `at` elements further into its slice.
    fn offset(self, at: usize) -> Self {
        View {
            data: &self.data[at..],
            ..self
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
    matmul_on(par::threads(), m, n, k, dst, dst_rs, accumulate, a, b);
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
    // SAFETY: the asserts above keep every element the kernel touches inside `dst`, which
    // does not alias `a` or `b` (it comes from a distinct &mut).
    unsafe { product(threads, m, n, k, dst.as_mut_ptr(), dst_rs, accumulate, a, b) }
}

/// An m×n×k product on up to `threads` threads: cut into pieces of rows (or of columns, when
/// it has more columns than rows) when it is [`canonical`] and large enough, each piece summed
/// in the whole product's depth blocks; else on one thread.
///
/// # Safety
/// As [`gemm_raw`]; k > 0.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    threads: usize,
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    a: View,
    b: View,
) {
    let kc = depth_blocks(m, n, k).unwrap_or(k);
    let (by_rows, pieces) = pieces(threads, m, n, k);
    if let [_] = pieces[..] {
        // SAFETY: the caller's contract.
        return unsafe { blocks(m, n, k, kc, dst, dst_rs, accumulate, a, b) };
    }
    let dst = par::Dst(dst);
    par::each(&pieces, |r| {
        let (rows, cols, at, a, b) = match by_rows {
            true => (r.len(), n, r.start * dst_rs, a.offset(r.start * a.rs), b),
            false => (m, r.len(), r.start, a, b.offset(r.start * b.cs)),
        };
        // SAFETY: each piece's outputs lie inside the whole's, and no two pieces share one:
        // pieces are disjoint ranges of rows (or columns) of the destination.
        unsafe { blocks(rows, cols, k, kc, dst.at(at), dst_rs, accumulate, a, b) }
    });
}

/// An m×n×k product on one thread, summed in depth blocks of `kc` (one block when kc ≥ k),
/// each block's sum added to the destination in order.
///
/// # Safety
/// As [`gemm_raw`]; k > 0.
#[allow(clippy::too_many_arguments)]
unsafe fn blocks(
    m: usize,
    n: usize,
    k: usize,
    kc: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    a: View,
    b: View,
) {
    for (i, p) in (0..k).step_by(kc).enumerate() {
        let kb = kc.min(k - p);
        let acc = accumulate || i > 0;
        // SAFETY: as the caller's; each block lies inside the full operands.
        unsafe {
            gemm_raw(
                m,
                n,
                kb,
                dst,
                dst_rs,
                acc,
                a.offset(p * a.cs),
                b.offset(p * b.rs),
            )
        }
    }
}

/// How an m×n×k product is cut on `threads` threads: along its rows (true) or columns, into
/// these ranges (one when it stays whole).
fn pieces(threads: usize, m: usize, n: usize, k: usize) -> (bool, Vec<std::ops::Range<usize>>) {
    let by_rows = m >= n;
    let (len, across) = if by_rows { (m, n) } else { (n, m) };
    // A piece keeps the whole's chain per output: at least 2 lines and more than 256 outputs
    // (else `gemm` takes another path), and enough work to be worth a thread.
    let min = (256 / across.max(1) + 1)
        .max(2)
        .max(PIECE_MIN_MACS.div_ceil((across * k).max(1)));
    match threads > 1 && canonical(m, n, k) {
        true => (by_rows, par::ranges_on(threads, len, min)),
        false => (by_rows, par::whole(len)),
    }
}

/// The fewest rows a piece of an m×n×k product may have for every piece of rows to compute
/// the whole's bits (as a product of its own, on any thread), or `None` when the product
/// must be computed whole (see [`canonical`]).
pub fn row_piece_min(m: usize, n: usize, k: usize) -> Option<usize> {
    // Deeper than one pass, a piece must keep the whole's balanced depth blocks: more than 64
    // rows when the columns do not already make it so.
    let blocks = match k > ONE_PASS_DEPTH && n <= 64 {
        true => 65,
        false => 1,
    };
    canonical(m, n, k).then(|| (256 / n.max(1) + 1).max(2).max(blocks))
}

/// Whether each output of an m×n×k product is one chain of fused multiply-adds per depth
/// block, from zero, in order, the blocks (those of [`depth_blocks`], or one) added to the
/// destination in order: the same on every CPU and for any piece of rows or columns that is
/// itself at least 2×2 with more than 256 outputs. Products of at most 64×64 deeper than 512
/// (`gemm`'s own fixed blocks) and the small paths of [`one_pass`] are left whole.
fn canonical(m: usize, n: usize, k: usize) -> bool {
    one_pass(m, n, k) || depth_blocks(m, n, k).is_some()
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

/// `dst` extended by the m×n product a[m×k]·b[k×n] (row-major), as [`matmul_into`] writes it.
pub fn matmul_append(m: usize, n: usize, k: usize, dst: &mut Vec<f32>, a: View, b: View) {
    let (at, len) = (dst.len(), m * n);
    dst.reserve(len);
    matmul_into(m, n, k, &mut dst.spare_capacity_mut()[..len], a, b);
    // SAFETY: `matmul_into` wrote every one of the `len` new elements.
    unsafe { dst.set_len(at + len) };
}

/// The m×n product a[m×k]·b[k×n] written into `dst` (row-major, m×n values, uninitialized):
/// where [`one_pass`] holds the GEMM kernel writes it straight there, with no pass over it
/// before (a zero or bias fill: a caller adds its bias afterwards, in cache).
pub fn matmul_into(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [std::mem::MaybeUninit<f32>],
    a: View,
    b: View,
) {
    assert_eq!(dst.len(), m * n, "gemm: destination of the wrong size");
    if !one_pass(m, n, k) {
        let dst = par::zeroed(dst);
        matmul(m, n, k, dst, false, a, b);
        return;
    }
    assert!(a.fits(m, k) && b.fits(k, n), "gemm: operand too small");
    // SAFETY: `dst` holds the m×n destination and the operands fit. Without `accumulate`
    // (alpha = 0), `gemm`'s packed microkernels treat the destination as write-only: full
    // tiles store `beta × sum`, edge tiles are summed in a stack buffer and stored element by
    // element, neither loading the destination (only its small-matrix kernel, which
    // `one_pass` excludes, copies the tile in first). So every element is written.
    unsafe {
        product(
            par::threads(),
            m,
            n,
            k,
            dst.as_mut_ptr().cast(),
            n,
            false,
            a,
            b,
        )
    }
}

/// `dst[m×n] += a[m×k] · b[k×n]`, or when `stale` (`dst` holds values of no meaning, such as
/// last step's gradient) `dst = a · b` with no pass over `dst` before where [`one_pass`]
/// holds: the GEMM kernel then stores each output's sum, the same bits as adding it to a zero
/// (a sum started from zero in registers is never −0, so 0 + s = s). Elsewhere `dst` is
/// zero-filled first and the product added, as without `stale`.
pub fn matmul_over(m: usize, n: usize, k: usize, dst: &mut [f32], stale: bool, a: View, b: View) {
    if stale && !one_pass(m, n, k) {
        let ranges = par::ranges(dst.len(), par::MIN_VALUES);
        par::each_mut(dst, 1, &ranges, |_, d| d.fill(0.0));
    }
    matmul(m, n, k, dst, !(stale && one_pass(m, n, k)), a, b);
}

/// `gemm` on a destination pointer, on one thread; the callers check the bounds.
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
            gemm::Parallelism::None,
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
        // 1, 2 and 3 threads.
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
                let (a, b) = (View::rows(&a, k), View::rows(&b, n));
                matmul_on(threads, m, n, k, &mut c, n, false, a, b);
                c.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
            };
            let one = product(1);
            for threads in [2, 3] {
                assert!(one == product(threads), "{m}×{n}×{k} on {threads} threads");
            }
        }
        // And each is cut into pieces for the threads, which is what the comparison checks.
        for (m, n, k) in [(21632, 32, 9), (32, 100, 5408), (3872, 64, 288)] {
            assert_eq!(pieces(2, m, n, k).1.len(), 2, "{m}×{n}×{k}");
            assert_eq!(pieces(3, m, n, k).1.len(), 3, "{m}×{n}×{k}");
        }
        // Small ones, and those `gemm` sums in its own fixed blocks, stay whole.
        assert_eq!(pieces(2, 16, 16, 9).1.len(), 1);
        assert_eq!(pieces(2, 64, 64, 5000).1.len(), 1);
    }
}
