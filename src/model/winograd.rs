//! Winograd F(m×m, 3×3) (Lavin & Gray, 2016) for 3×3 stride-1 convolutions, m = 2, 3 or 4:
//! forward, input gradient and weight gradient. Each m×m block of outputs (a tile) comes from
//! the (m + 2)×(m + 2) input patch under it: `Y = Aᵀ [Σ_cin (G g Gᵀ) ⊙ (Bᵀ d B)] A`, (m + 2)²
//! multiplies per tile, input channel and output channel where the direct convolution does 9m²
//! (2.25×, 3.24× and 4× fewer). The element-wise stage is batched into (m + 2)² GEMMs over the
//! tiles, one per position ξ of the transformed tile. F(2×2) has hand-written transforms; the
//! larger tiles share a generic path over constant matrices (`Points`).
//!
//! Tiles are processed in chunks of a size fixed by the layer's shape alone, so the transformed
//! input and output of a chunk stay in the cache and are never stored for the whole batch (the
//! backward pass transforms the input again). The weight gradient is summed chunk by chunk in
//! that fixed order, and each chunk is one GEMM pass of at most [`MAX_CHUNK`] tiles (the GEMM
//! crate sums up to 512 products in registers before it touches the result): the numbers do
//! not depend on the CPU, its cache sizes, or the number of threads.

use super::activation::Activation;
use super::gemm::{matmul_rows, row_piece_min, View};
use super::geometry::ConvGeometry;
use super::par;
use super::scratch;

/// Positions of a transformed F(2×2, 3×3) tile (4×4).
const XI: usize = 16;

/// The largest transformed tile, F(4×4, 3×3)'s 6×6.
const MAX_N: usize = 6;

/// Most tiles per chunk: the weight gradient's GEMM then sums each chunk in one pass.
const MAX_CHUNK: usize = 512;

/// Fewest tiles a thread takes of a chunk.
const MIN_PIECE_TILES: usize = 16;

/// Floats of transformed input plus transformed output a chunk may hold (1 MB: well inside a
/// 2 MB L2 cache, with room for the GEMM's packed operands).
const CHUNK_FLOATS: usize = 1 << 18;

/// A 3×3 stride-1 convolution's geometry in tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Winograd {
    geo: ConvGeometry,
    /// Output tile side m of F(m×m, 3×3): 2, 3 or 4.
    m: usize,
    /// Input tile side m + 2, and positions of a transformed tile, (m + 2)².
    n: usize,
    xi: usize,
    /// Tile rows and columns per sample: ⌈output side / m⌉.
    th: usize,
    tw: usize,
}

impl Winograd {
    /// Whether Winograd F(m×m, 3×3) computes this convolution.
    pub fn fits(geo: &ConvGeometry) -> bool {
        geo.kernel == 3 && geo.stride == 1
    }

    /// The tiling of `geo` (which must [`fit`](Winograd::fits)) into F(m×m, 3×3) tiles, m in
    /// 2..=4.
    pub fn new(geo: ConvGeometry, m: usize) -> Self {
        assert!(
            Self::fits(&geo) && (2..=4).contains(&m),
            "Winograd F(m×m, 3×3) needs a 3×3 stride-1 convolution and m in 2..=4"
        );
        Winograd {
            geo,
            m,
            n: m + 2,
            xi: (m + 2) * (m + 2),
            th: geo.output.h.div_ceil(m),
            tw: geo.output.w.div_ceil(m),
        }
    }

    /// Tiles per chunk: as many as fit [`CHUNK_FLOATS`], between 16 and [`MAX_CHUNK`]. A
    /// function of the shape only (it fixes the weight gradient's summation order).
    fn chunk(&self) -> usize {
        let (ci, co) = (self.geo.input.c, self.geo.output.c);
        (CHUNK_FLOATS / (self.xi * (ci + co))).clamp(16, MAX_CHUNK)
    }

    /// The chunks of `tiles` tiles as (first tile, count), of equal sizes up to one.
    fn chunks(&self, tiles: usize) -> impl Iterator<Item = (usize, usize)> {
        let n = tiles.div_ceil(self.chunk()).max(1);
        (0..n).map(move |i| (i * tiles / n, (i + 1) * tiles / n - i * tiles / n))
    }

    /// A chunk of `len` tiles cut into pieces for the threads, where its GEMMs (`len` rows of
    /// depth `k` and width `n`) come out the same piece by piece: each tile is then computed
    /// exactly as in one pass over the chunk.
    fn pieces(len: usize, k: usize, n: usize) -> Vec<std::ops::Range<usize>> {
        match row_piece_min(len, n, k) {
            Some(min) => par::ranges(len, min.max(MIN_PIECE_TILES)),
            None => par::whole(len),
        }
    }

    /// The transformed kernel `U[ξ] = G g Gᵀ`, as (m + 2)² row-major cin × cout matrices,
    /// from weights laid out `[ky][kx][cin][cout]`.
    pub fn kernel(&self, w: &[f32]) -> Vec<f32> {
        let n = self.geo.input.c * self.geo.output.c;
        let mut u = vec![0.0; self.xi * n];
        match self.m {
            3 => return F3.kernel_tiles(w, n, u),
            4 => return F4.kernel_tiles(w, n, u),
            _ => {}
        }
        for j in 0..n {
            let g = |ky: usize, kx: usize| w[(ky * 3 + kx) * n + j];
            // t = G g (4×3), then u = t Gᵀ (4×4).
            let mut t = [[0.0f32; 3]; 4];
            for (kx, col) in (0..3).map(|kx| (kx, [g(0, kx), g(1, kx), g(2, kx)])) {
                let [a, b, c] = col;
                t[0][kx] = a;
                t[1][kx] = (a + b + c) * 0.5;
                t[2][kx] = (a - b + c) * 0.5;
                t[3][kx] = c;
            }
            for (r, [a, b, c]) in t.into_iter().enumerate() {
                u[(r * 4) * n + j] = a;
                u[(r * 4 + 1) * n + j] = (a + b + c) * 0.5;
                u[(r * 4 + 2) * n + j] = (a - b + c) * 0.5;
                u[(r * 4 + 3) * n + j] = c;
            }
        }
        u
    }

    /// Each `U[ξ]` transposed (cout × cin), for the input gradient's GEMMs.
    fn kernel_transposed(&self, u: &[f32]) -> Vec<f32> {
        let (ci, co) = (self.geo.input.c, self.geo.output.c);
        let mut ut = vec![0.0; u.len()];
        for xi in 0..self.xi {
            for i in 0..ci {
                for o in 0..co {
                    ut[(xi * co + o) * ci + i] = u[(xi * ci + i) * co + o];
                }
            }
        }
        ut
    }

    /// Sample, tile row and tile column of tile `t`.
    fn tile(&self, t: usize) -> (usize, usize, usize) {
        let per = self.th * self.tw;
        (t / per, (t % per) / self.tw, t % self.tw)
    }

    /// The samples that tiles `first..first + len` belong to, counted from the first of them,
    /// cut for the threads at sample boundaries so that each piece holds about as many of
    /// these tiles (a chunk often begins or ends inside a sample, and equal counts of samples
    /// then gave one thread several times the other's tiles).
    fn sample_pieces(&self, first: usize, len: usize) -> Vec<std::ops::Range<usize>> {
        let per = self.th * self.tw;
        let (s0, s1) = (first / per, (first + len - 1) / per + 1);
        // Each cut between tile pieces moved to the nearest sample boundary inside the chunk.
        let cuts = par::ranges(len, 1).into_iter().skip(1).map(|r| {
            let at = (first + r.start + per / 2) / per;
            at.clamp(s0, s1) - s0
        });
        let mut bounds: Vec<usize> = std::iter::once(0).chain(cuts).collect();
        bounds.push(s1 - s0);
        bounds.dedup();
        bounds.windows(2).map(|w| w[0]..w[1]).collect()
    }

    /// For the m + 2 input rows (or columns) under tile index `i` along a side of `len` with
    /// `pad` zeros before: the first patch position inside, the first input index, the count.
    fn span(&self, i: usize, pad: usize, len: usize) -> (usize, usize, usize) {
        let start = self.m * i;
        let p0 = pad.saturating_sub(start);
        let p1 = (len + pad).saturating_sub(start).min(self.n);
        if p1 <= p0 {
            return (0, 0, 0);
        }
        (p0, start + p0 - pad, p1 - p0)
    }

    /// Tile `t`'s sample and its patch's rows and columns inside the input, each as
    /// [`Winograd::span`] gives them.
    fn window(&self, t: usize) -> (usize, (usize, usize, usize), (usize, usize, usize)) {
        let (inp, g) = (self.geo.input, self.geo);
        let (b, ty, tx) = self.tile(t);
        (
            b,
            self.span(ty, g.pad_top, inp.h),
            self.span(tx, g.pad_left, inp.w),
        )
    }

    /// Copies the (m + 2)²×cin input patch of tile `t` into `patch` (zeros outside the input).
    fn gather(&self, x: &[f32], t: usize, patch: &mut [f32]) {
        let (inp, c, n) = (self.geo.input, self.geo.input.c, self.n);
        let (b, (r0, iy, nr), (s0, ix, ns)) = self.window(t);
        for r in 0..n {
            let row = &mut patch[r * n * c..(r + 1) * n * c];
            if r < r0 || r >= r0 + nr || ns == 0 {
                row.fill(0.0);
                continue;
            }
            let src = ((b * inp.h + iy + r - r0) * inp.w + ix) * c;
            row[..s0 * c].fill(0.0);
            row[s0 * c..(s0 + ns) * c].copy_from_slice(&x[src..src + ns * c]);
            row[(s0 + ns) * c..].fill(0.0);
        }
    }

    /// Adds an (m + 2)²×cin patch gradient back onto the input positions of tile `t` (padding
    /// takes nothing back), in `gx` holding the samples from `origin` on.
    fn scatter_add(&self, patch: &[f32], t: usize, origin: usize, gx: &mut [f32]) {
        let (inp, c, n) = (self.geo.input, self.geo.input.c, self.n);
        let (b, (r0, iy, nr), (s0, ix, ns)) = self.window(t);
        let b = b - origin;
        for r in r0..r0 + nr {
            let dst = ((b * inp.h + iy + r - r0) * inp.w + ix) * c;
            let src = (r * n + s0) * c;
            for (d, v) in gx[dst..dst + ns * c]
                .iter_mut()
                .zip(&patch[src..src + ns * c])
            {
                *d += v;
            }
        }
    }

    /// Transforms the input tiles `first..first + len` into `v`: `Bᵀ d B`, laid out
    /// `[tile][ξ][cin]`. Tiles inside the input are read in place; the others are gathered
    /// into a zero-padded patch first.
    fn transform_input(&self, x: &[f32], first: usize, len: usize, v: &mut [f32]) {
        let (inp, g, m, n) = (self.geo.input, self.geo, self.m, self.n);
        let c = inp.c;
        let mut patch = vec![0.0; self.xi * c];
        for (i, out) in v.chunks_exact_mut(self.xi * c).take(len).enumerate() {
            let t = first + i;
            let (b, ty, tx) = self.tile(t);
            let (y0, x0) = (
                (m * ty) as isize - g.pad_top as isize,
                (m * tx) as isize - g.pad_left as isize,
            );
            let inside = y0 >= 0 && x0 >= 0 && y0 as usize + n <= inp.h && x0 as usize + n <= inp.w;
            let mut rows: [&[f32]; MAX_N] = [&[]; MAX_N];
            if inside {
                for (r, row) in rows.iter_mut().take(n).enumerate() {
                    let at = ((b * inp.h + y0 as usize + r) * inp.w + x0 as usize) * c;
                    *row = &x[at..at + n * c];
                }
            } else {
                self.gather(x, t, &mut patch);
                for (row, p) in rows.iter_mut().zip(patch.chunks_exact(n * c)) {
                    *row = p;
                }
            }
            match m {
                2 => input_tile([rows[0], rows[1], rows[2], rows[3]], c, out),
                3 => F3.input_tile(&rows, c, out),
                _ => F4.input_tile(&rows, c, out),
            }
        }
    }

    /// The output gradient's transformed tiles `first..` (as many as `gm` holds), laid out
    /// `[tile][ξ][cout]`: gM = A gY Aᵀ, with zeros outside the output.
    fn grad_output_tiles(&self, gz: &[f32], first: usize, gm: &mut [f32], zeros: &[f32]) {
        let (out, m, co) = (self.geo.output, self.m, self.geo.output.c);
        for (i, gt) in gm.chunks_exact_mut(self.xi * co).enumerate() {
            let (b, ty, tx) = self.tile(first + i);
            let g = |r: usize, s: usize| -> &[f32] {
                let (oy, ox) = (m * ty + r, m * tx + s);
                if oy < out.h && ox < out.w {
                    let at = ((b * out.h + oy) * out.w + ox) * co;
                    &gz[at..at + co]
                } else {
                    zeros
                }
            };
            match m {
                2 => grad_output_tile([g(0, 0), g(0, 1), g(1, 0), g(1, 1)], co, gt),
                _ => {
                    let mut gs: [&[f32]; MAX_N * MAX_N] = [&[]; MAX_N * MAX_N];
                    for (k, s) in gs.iter_mut().take(m * m).enumerate() {
                        *s = g(k / m, k % m);
                    }
                    match m {
                        3 => F3.grad_output_tile(&gs, co, gt),
                        _ => F4.grad_output_tile(&gs, co, gt),
                    }
                }
            }
        }
    }

    /// The xi GEMMs of a chunk: `dst[ξ] = a[ξ] · b[ξ]`, where `a` and `dst` are laid out
    /// `[tile][ξ][·]` (rows of `a` hold `k` values) and `b` is xi row-major k × n matrices.
    #[allow(clippy::too_many_arguments)]
    fn products(xis: usize, len: usize, k: usize, n: usize, a: &[f32], b: &[f32], dst: &mut [f32]) {
        for xi in 0..xis {
            matmul_rows(
                len,
                n,
                k,
                &mut dst[xi * n..],
                xis * n,
                false,
                View {
                    data: &a[xi * k..],
                    rs: xis * k,
                    cs: 1,
                },
                View::rows(&b[xi * k * n..(xi + 1) * k * n], n),
            );
        }
    }

    /// The convolution of `batch` samples with transformed kernel `u` (see
    /// [`Winograd::kernel`]), plus `bias`, through `act`: `act(conv(x) + b)`, NHWC.
    pub fn forward(
        &self,
        x: &[f32],
        batch: usize,
        u: &[f32],
        bias: &[f32],
        act: Activation,
    ) -> Vec<f32> {
        let (ci, out, xis) = (self.geo.input.c, self.geo.output, self.xi);
        let co = out.c;
        let tiles = batch * self.th * self.tw;
        // Each piece of a chunk's tiles is transformed, multiplied and transformed back on one
        // thread, which writes its tiles' outputs straight into z: tiles cover the output
        // without overlap, so every value of z is written once, by one piece, and z is never
        // zero-filled first.
        let total = batch * out.len();
        let mut z: Vec<f32> = Vec::with_capacity(total);
        let dst = par::Dst(z.as_mut_ptr());
        let chunk = self.chunk().min(tiles);
        let lens = [chunk * xis * ci, chunk * xis * co];
        scratch::with(lens, |[v, mm]| {
            for (first, len) in self.chunks(tiles) {
                let (vs, ms) = (&mut v[..len * xis * ci], &mut mm[..len * xis * co]);
                let pieces = Self::pieces(len, ci, co);
                par::each_mut2(vs, xis * ci, ms, xis * co, &pieces, |r, v, mm| {
                    self.transform_input(x, first + r.start, r.len(), v);
                    Self::products(xis, r.len(), ci, co, v, u, mm);
                    // SAFETY: z holds `total` values of capacity; the tiles first + r are
                    // this piece's alone, and they write only positions inside the output.
                    unsafe { self.write_tiles(mm, first + r.start, bias, act, dst) };
                });
            }
        });
        // SAFETY: the chunks cover every tile, and the tiles every output position (each
        // writes the part of its m×m block inside the output).
        unsafe { z.set_len(total) };
        z
    }

    /// Transforms the products `mm` (`[tile][ξ][cout]`) of the tiles from `first` on back
    /// into outputs, adds `bias`, applies `act`, and writes the values inside the output
    /// through `z`.
    ///
    /// # Safety
    /// `z` points to at least `batch × output len` values, and no other thread writes these
    /// tiles' positions.
    unsafe fn write_tiles(
        &self,
        mm: &[f32],
        first: usize,
        bias: &[f32],
        act: Activation,
        z: par::Dst,
    ) {
        let (out, m, xis) = (self.geo.output, self.m, self.xi);
        let co = out.c;
        // The m×m outputs of one tile (a few KB, one per piece).
        let f = &mut vec![0.0; m * m * co];
        for (i, t) in mm.chunks_exact(xis * co).enumerate() {
            let (b, ty, tx) = self.tile(first + i);
            match m {
                2 => output_tile(t, co, bias, f),
                3 => F3.output_tile(t, co, bias, f),
                _ => F4.output_tile(t, co, bias, f),
            }
            act.apply(f);
            // f holds the m×m outputs [r][s][cout]: copy those inside the output.
            let (rows, cols) = ((out.h - m * ty).min(m), (out.w - m * tx).min(m));
            for r in 0..rows {
                let at = ((b * out.h + m * ty + r) * out.w + m * tx) * co;
                let src = &f[r * m * co..(r * m + cols) * co];
                // SAFETY: (b, m·ty + r, m·tx..m·tx + cols) lies inside the output, which
                // z holds, and only this tile writes it (the caller's).
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), z.at(at), src.len()) };
            }
        }
    }

    /// The backward pass from `gz`, the gradient at the convolution's output (NHWC): returns
    /// the kernel's gradient (`[ky][kx][cin][cout]`) and, when `gx` is given, adds the input's
    /// gradient to it. `x` is the forward pass's input and `u` its transformed kernel.
    pub fn backward(
        &self,
        x: &[f32],
        gz: &[f32],
        u: &[f32],
        batch: usize,
        mut gx: Option<&mut [f32]>,
    ) -> Vec<f32> {
        let (ci, out, m, xis) = (self.geo.input.c, self.geo.output, self.m, self.xi);
        let co = out.c;
        let tiles = batch * self.th * self.tw;
        let chunk = self.chunk().min(tiles);
        let ut = gx.as_ref().map(|_| self.kernel_transposed(u));
        let mut gu = vec![0.0; xis * ci * co];
        let zeros = vec![0.0; co];
        let gv_len = if gx.is_some() { chunk * xis * ci } else { 0 };
        let lens = [chunk * xis * ci, chunk * xis * co, gv_len];
        scratch::with(lens, |[v, gm, gv]| {
            for (first, len) in self.chunks(tiles) {
                let (vs, gms) = (&mut v[..len * xis * ci], &mut gm[..len * xis * co]);
                // Tiles are independent: the input's and the output gradient's transforms by
                // pieces of tiles on the threads.
                let tile_pieces = par::ranges(len, MIN_PIECE_TILES);
                par::each_mut2(vs, xis * ci, gms, xis * co, &tile_pieces, |r, v, gm| {
                    self.transform_input(x, first + r.start, r.len(), v);
                    self.grad_output_tiles(gz, first + r.start, gm, &zeros);
                });
                let (v, gm) = (&*vs, &*gms);
                // gU[ξ] += V[ξ]ᵀ · gM[ξ]: one pass over the chunk's tiles, the positions ξ on
                // the threads (each sums its own, in the same order).
                par::each_mut(&mut gu, ci * co, &par::ranges(xis, 1), |r, gu| {
                    for (xi, gu) in r.zip(gu.chunks_exact_mut(ci * co)) {
                        matmul_rows(
                            ci,
                            co,
                            len,
                            gu,
                            co,
                            true,
                            View {
                                data: &v[xi * ci..],
                                rs: 1,
                                cs: xis * ci,
                            },
                            View {
                                data: &gm[xi * co..],
                                rs: xis * co,
                                cs: 1,
                            },
                        );
                    }
                });
                let (Some(gx), Some(ut)) = (gx.as_deref_mut(), &ut) else {
                    continue;
                };
                // gV[ξ] = gM[ξ] · U[ξ]ᵀ by pieces of tiles on the threads, then the patch
                // gradient B gV Bᵀ, added back.
                let gvs = &mut gv[..len * xis * ci];
                par::each_mut(gvs, xis * ci, &Self::pieces(len, co, ci), |r, gv| {
                    let gm = &gm[r.start * xis * co..r.end * xis * co];
                    Self::products(xis, r.len(), co, ci, gm, ut, gv);
                });
                // Added back by pieces of whole samples on the threads (no two samples share an
                // input position; each sample's tiles are added in order, as on one thread).
                let per = self.th * self.tw;
                let (s0, s1) = (first / per, (first + len - 1) / per + 1);
                let inl = self.geo.input.len();
                let gv: &[f32] = gv;
                let samples = self.sample_pieces(first, len);
                par::each_mut(&mut gx[s0 * inl..s1 * inl], inl, &samples, |r, gx| {
                    let (a, b) = ((s0 + r.start) * per, (s0 + r.end) * per);
                    let tiles = a.max(first)..b.min(first + len);
                    scratch::with([xis * ci], |[patch]| {
                        for t in tiles {
                            let gt = &gv[(t - first) * xis * ci..(t - first + 1) * xis * ci];
                            match m {
                                2 => grad_input_tile(gt, ci, patch),
                                3 => F3.grad_input_tile(gt, ci, patch),
                                _ => F4.grad_input_tile(gt, ci, patch),
                            }
                            self.scatter_add(patch, t, s0 + r.start, gx);
                        }
                    });
                });
            }
        });
        self.kernel_grad(&gu)
    }

    /// The kernel's gradient `gw = Gᵀ gU G` (`[ky][kx][cin][cout]`) from the gradient of the
    /// transformed kernel, `gU` (laid out as [`Winograd::kernel`] lays out `U`).
    fn kernel_grad(&self, gu: &[f32]) -> Vec<f32> {
        let n = self.geo.input.c * self.geo.output.c;
        let mut gw = vec![0.0; 9 * n];
        match self.m {
            3 => return F3.kernel_grad_tiles(gu, n, gw),
            4 => return F4.kernel_grad_tiles(gu, n, gw),
            _ => {}
        }
        for j in 0..n {
            let q = |a: usize, b: usize| gu[(a * 4 + b) * n + j];
            // t = Gᵀ gU (3×4), one column b at a time, then t G (3×3).
            let t: [[f32; 3]; 4] = std::array::from_fn(|b| {
                let (q0, q1, q2, q3) = (q(0, b), q(1, b), q(2, b), q(3, b));
                [q0 + (q1 + q2) * 0.5, (q1 - q2) * 0.5, (q1 + q2) * 0.5 + q3]
            });
            for ky in 0..3 {
                let [q0, q1, q2, q3] = [t[0][ky], t[1][ky], t[2][ky], t[3][ky]];
                gw[(ky * 3) * n + j] = q0 + (q1 + q2) * 0.5;
                gw[(ky * 3 + 1) * n + j] = (q1 - q2) * 0.5;
                gw[(ky * 3 + 2) * n + j] = (q1 + q2) * 0.5 + q3;
            }
        }
        gw
    }
}

/// Channels a tile kernel computes at once (as fixed-size arrays, which the compiler turns
/// into vector registers); the rest one at a time. Each channel's arithmetic is the same
/// either way.
const LANES: usize = 16;

type Lanes<const L: usize> = [f32; L];

fn load<const L: usize>(src: &[f32], ch: usize) -> Lanes<L> {
    src[ch..ch + L].try_into().expect("L values")
}

fn store<const L: usize>(dst: &mut [f32], ch: usize, v: Lanes<L>) {
    dst[ch..ch + L].copy_from_slice(&v);
}

fn add<const L: usize>(a: Lanes<L>, b: Lanes<L>) -> Lanes<L> {
    std::array::from_fn(|i| a[i] + b[i])
}

fn sub<const L: usize>(a: Lanes<L>, b: Lanes<L>) -> Lanes<L> {
    std::array::from_fn(|i| a[i] - b[i])
}

fn neg<const L: usize>(a: Lanes<L>) -> Lanes<L> {
    std::array::from_fn(|i| -a[i])
}

/// Runs `block::<LANES>` on whole blocks of `c` channels, then `block::<1>` on the rest.
macro_rules! by_lanes {
    ($c:expr, $block:ident ( $($arg:expr),* )) => {{
        let c = $c;
        let mut ch = 0;
        while ch + LANES <= c {
            $block::<LANES>($($arg,)* ch);
            ch += LANES;
        }
        while ch < c {
            $block::<1>($($arg,)* ch);
            ch += 1;
        }
    }};
}

/// The 16 `c`-value slices of a `[ξ][c]` block.
fn split16(buf: &mut [f32], c: usize) -> [&mut [f32]; XI] {
    let mut it = buf.chunks_exact_mut(c);
    std::array::from_fn(|_| it.next().expect("16 rows"))
}

/// The matrices of Winograd F(m×m, 3×3) for m = M, on tiles of side N = M + 2 (Lavin & Gray's
/// `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`), from the Toom-Cook interpolation points they name.
/// Computed from exact rationals and checked against the direct correlation (see the tests);
/// each f32 entry is its rational rounded once.
struct Points<const N: usize, const M: usize> {
    bt: [[f32; N]; N],
    g: [[f32; 3]; N],
    at: [[f32; N]; M],
}

/// F(3×3, 3×3), points 0, 1, −1, 2, ∞: 25 multiplies per 9 outputs.
const F3: Points<5, 3> = Points {
    bt: [
        [2.0, -1.0, -2.0, 1.0, 0.0],
        [0.0, 2.0, 1.0, -1.0, 0.0],
        [0.0, -2.0, 3.0, -1.0, 0.0],
        [0.0, -1.0, 0.0, 1.0, 0.0],
        [0.0, 2.0, -1.0, -2.0, 1.0],
    ],
    g: [
        [0.5, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [1.0 / 6.0, -1.0 / 6.0, 1.0 / 6.0],
        [1.0 / 6.0, 1.0 / 3.0, 2.0 / 3.0],
        [0.0, 0.0, 1.0],
    ],
    at: [
        [1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 2.0, 0.0],
        [0.0, 1.0, 1.0, 4.0, 1.0],
    ],
};

/// F(4×4, 3×3), points 0, 1, −1, 2, −2, ∞: 36 multiplies per 16 outputs.
const F4: Points<6, 4> = Points {
    bt: [
        [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
        [0.0, 4.0, 4.0, -1.0, -1.0, 0.0],
        [0.0, -4.0, 4.0, 1.0, -1.0, 0.0],
        [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
        [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
        [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
    ],
    g: [
        [0.25, 0.0, 0.0],
        [1.0 / 6.0, 1.0 / 6.0, 1.0 / 6.0],
        [1.0 / 6.0, -1.0 / 6.0, 1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ],
    at: [
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
        [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
        [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
    ],
};

/// `Σ_q c(q)·x(q)` over the nonzero `c(q)`, in the order of q: ±1 by an addition or a
/// subtraction, any other coefficient by one multiply and one addition (never a fused
/// multiply-add, so every CPU rounds it the same way).
#[inline(always)]
fn combo<const Q: usize>(c: impl Fn(usize) -> f32, x: impl Fn(usize) -> f32) -> f32 {
    let mut acc = None;
    for q in 0..Q {
        let (k, v) = (c(q), x(q));
        acc = match (acc, k) {
            (_, 0.0) => acc,
            (None, 1.0) => Some(v),
            (None, -1.0) => Some(-v),
            (None, _) => Some(v * k),
            (Some(a), 1.0) => Some(a + v),
            (Some(a), -1.0) => Some(a - v),
            (Some(a), _) => Some(a + v * k),
        };
    }
    acc.unwrap_or(0.0)
}

/// `y = mat · x`, lane by lane. The matrix loops are innermost and short, so the compiler
/// unrolls them (the coefficients become constants and the zero terms vanish) and vectorizes
/// the loop over the lanes.
#[inline(always)]
fn apply<const L: usize, const P: usize, const Q: usize>(
    mat: &[[f32; Q]; P],
    x: &[Lanes<L>; Q],
    y: &mut [Lanes<L>; P],
) {
    for i in 0..L {
        for p in 0..P {
            y[p][i] = combo::<Q>(|q| mat[p][q], |q| x[q][i]);
        }
    }
}

/// `y = matᵀ · x`, as [`apply`].
#[inline(always)]
fn apply_t<const L: usize, const P: usize, const Q: usize>(
    mat: &[[f32; Q]; P],
    x: &[Lanes<L>; P],
    y: &mut [Lanes<L>; Q],
) {
    for i in 0..L {
        for q in 0..Q {
            y[q][i] = combo::<P>(|p| mat[p][q], |p| x[p][i]);
        }
    }
}

/// Runs `$block::<LANES>` on whole blocks of `c` channels, then `$block::<1>` on the rest
/// (a method's version of [`by_lanes`]).
macro_rules! by_lanes_of {
    ($self:ident, $c:expr, $block:ident ( $($arg:expr),* )) => {{
        let c = $c;
        let mut ch = 0;
        while ch + LANES <= c {
            $self.$block::<LANES>($($arg,)* ch);
            ch += LANES;
        }
        while ch < c {
            $self.$block::<1>($($arg,)* ch);
            ch += 1;
        }
    }};
}

/// K·v of a column v of P lanes into Q lanes, for [`sandwich`]: a transform matrix as it is
/// ([`Mat`]) or transposed ([`MatT`]). A trait method, not a closure, so that it can be
/// `#[inline(always)]`: a closure is inlined at the compiler's discretion, and one build left
/// the output gradient's out of line, passing its lanes through memory (3× that transform's
/// time, 4% of a modern step).
trait Kernel<const L: usize, const P: usize, const Q: usize> {
    fn k(&self, x: &[Lanes<L>; P], y: &mut [Lanes<L>; Q]);
}

/// A matrix of R rows and C columns, applied as it is: C lanes in, R out ([`apply`]).
struct Mat<'a, const R: usize, const C: usize>(&'a [[f32; C]; R]);

/// A matrix of R rows and C columns, applied transposed: R lanes in, C out ([`apply_t`]).
struct MatT<'a, const R: usize, const C: usize>(&'a [[f32; C]; R]);

impl<const L: usize, const R: usize, const C: usize> Kernel<L, C, R> for Mat<'_, R, C> {
    #[inline(always)]
    fn k(&self, x: &[Lanes<L>; C], y: &mut [Lanes<L>; R]) {
        apply(self.0, x, y)
    }
}

impl<const L: usize, const R: usize, const C: usize> Kernel<L, R, C> for MatT<'_, R, C> {
    #[inline(always)]
    fn k(&self, x: &[Lanes<L>; R], y: &mut [Lanes<L>; C]) {
        apply_t(self.0, x, y)
    }
}

/// `Y = K X Kᵀ` for one block of L lanes, the shape of every transform: X (P×P) is read by
/// `x(r, s)`, `k` computes K·v for a column v of P values, and Y (Q×Q) goes to `y(a, b, ·)`.
/// The columns of X first (`t[s] = K X[·][s]`), then each row of Y is `K (t[·][a])`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `a` indexes the inner arrays of t: a column of it.
fn sandwich<const L: usize, const P: usize, const Q: usize>(
    k: impl Kernel<L, P, Q>,
    x: impl Fn(usize, usize) -> Lanes<L>,
    mut y: impl FnMut(usize, usize, Lanes<L>),
) {
    let mut t = [[[0.0; L]; Q]; P];
    let mut col = [[0.0; L]; P];
    for (s, ts) in t.iter_mut().enumerate() {
        for (r, d) in col.iter_mut().enumerate() {
            *d = x(r, s);
        }
        k.k(&col, ts);
    }
    let mut row = [[0.0; L]; Q];
    for a in 0..Q {
        for (s, d) in col.iter_mut().enumerate() {
            *d = t[s][a];
        }
        k.k(&col, &mut row);
        for (b, &v) in row.iter().enumerate() {
            y(a, b, v);
        }
    }
}

impl<const N: usize, const M: usize> Points<N, M> {
    /// `Bᵀ d B` of one tile: `rows[r]` holds the patch's row r as `[s][c]`; writes `[ξ][c]`.
    #[inline(always)]
    fn input_tile(&self, rows: &[&[f32]; MAX_N], c: usize, out: &mut [f32]) {
        by_lanes_of!(self, c, input_block(rows, c, out));
    }

    #[inline(always)]
    fn input_block<const L: usize>(
        &self,
        rows: &[&[f32]; MAX_N],
        c: usize,
        out: &mut [f32],
        ch: usize,
    ) {
        sandwich::<L, N, N>(
            Mat(&self.bt),
            |r, s| load(rows[r], s * c + ch),
            |a, b, v| store(out, (a * N + b) * c + ch, v),
        );
    }

    /// `Aᵀ M A + bias` of one tile: `mm` is `[ξ][c]`; writes the m×m outputs as `[r][s][c]`.
    #[inline(always)]
    fn output_tile(&self, mm: &[f32], c: usize, bias: &[f32], out: &mut [f32]) {
        by_lanes_of!(self, c, output_block(mm, c, bias, out));
    }

    #[inline(always)]
    fn output_block<const L: usize>(
        &self,
        mm: &[f32],
        c: usize,
        bias: &[f32],
        out: &mut [f32],
        ch: usize,
    ) {
        let b = load::<L>(bias, ch);
        sandwich::<L, N, M>(
            Mat(&self.at),
            |q, s| load(mm, (q * N + s) * c + ch),
            |r, s, y| store(out, (r * M + s) * c + ch, add(y, b)),
        );
    }

    /// `A gY Aᵀ` of one tile: `g[r * m + s]` is the output gradient at (r, s); writes `[ξ][c]`.
    #[inline(always)]
    fn grad_output_tile(&self, g: &[&[f32]; MAX_N * MAX_N], c: usize, out: &mut [f32]) {
        by_lanes_of!(self, c, grad_output_block(g, c, out));
    }

    #[inline(always)]
    fn grad_output_block<const L: usize>(
        &self,
        g: &[&[f32]; MAX_N * MAX_N],
        c: usize,
        out: &mut [f32],
        ch: usize,
    ) {
        sandwich::<L, M, N>(
            MatT(&self.at),
            |r, s| load(g[r * M + s], ch),
            |a, b, v| store(out, (a * N + b) * c + ch, v),
        );
    }

    /// `B gV Bᵀ` of one tile: `gv` is `[ξ][c]`; writes the patch gradient as `[r][s][c]`.
    #[inline(always)]
    fn grad_input_tile(&self, gv: &[f32], c: usize, out: &mut [f32]) {
        by_lanes_of!(self, c, grad_input_block(gv, c, out));
    }

    #[inline(always)]
    fn grad_input_block<const L: usize>(&self, gv: &[f32], c: usize, out: &mut [f32], ch: usize) {
        sandwich::<L, N, N>(
            MatT(&self.bt),
            |a, s| load(gv, (a * N + s) * c + ch),
            |r, s, p| store(out, (r * N + s) * c + ch, p),
        );
    }

    /// `U = G g Gᵀ` of the `n` 3×3 kernels in `w` (`[ky][kx][n]`), written as `[ξ][n]`.
    fn kernel_tiles(&self, w: &[f32], n: usize, mut u: Vec<f32>) -> Vec<f32> {
        by_lanes_of!(self, n, kernel_block(w, n, &mut u));
        u
    }

    #[inline(always)]
    fn kernel_block<const L: usize>(&self, w: &[f32], n: usize, u: &mut [f32], j: usize) {
        sandwich::<L, 3, N>(
            Mat(&self.g),
            |ky, kx| load(w, (ky * 3 + kx) * n + j),
            |a, b, v| store(u, (a * N + b) * n + j, v),
        );
    }

    /// The kernels' gradient `Gᵀ gU G` (`[ky][kx][n]`) from `gU`, the gradient of `U`
    /// (`[ξ][n]`).
    fn kernel_grad_tiles(&self, gu: &[f32], n: usize, mut gw: Vec<f32>) -> Vec<f32> {
        by_lanes_of!(self, n, kernel_grad_block(gu, n, &mut gw));
        gw
    }

    #[inline(always)]
    fn kernel_grad_block<const L: usize>(&self, gu: &[f32], n: usize, gw: &mut [f32], j: usize) {
        sandwich::<L, N, 3>(
            MatT(&self.g),
            |a, b| load(gu, (a * N + b) * n + j),
            |ky, kx, v| store(gw, (ky * 3 + kx) * n + j, v),
        );
    }
}

/// `Bᵀ d B` of one tile: `rows[r]` holds the patch's row r as `[s][c]`; writes `[ξ][c]`.
fn input_tile(rows: [&[f32]; 4], c: usize, out: &mut [f32]) {
    /// Column `s` of `Bᵀ d`.
    #[inline(always)]
    fn e<const L: usize>(rows: &[&[f32]; 4], c: usize, ch: usize, s: usize) -> [Lanes<L>; 4] {
        let d = |r: usize| load::<L>(rows[r], s * c + ch);
        let (d0, d1, d2, d3) = (d(0), d(1), d(2), d(3));
        [sub(d0, d2), add(d1, d2), sub(d2, d1), sub(d1, d3)]
    }
    fn block<const L: usize>(rows: &[&[f32]; 4], c: usize, o: &mut [&mut [f32]; XI], ch: usize) {
        let e = |s: usize| e::<L>(rows, c, ch, s);
        let (e0, e1, e2, e3) = (e(0), e(1), e(2), e(3));
        for a in 0..4 {
            store(o[a * 4], ch, sub(e0[a], e2[a]));
            store(o[a * 4 + 1], ch, add(e1[a], e2[a]));
            store(o[a * 4 + 2], ch, sub(e2[a], e1[a]));
            store(o[a * 4 + 3], ch, sub(e1[a], e3[a]));
        }
    }
    let mut o = split16(out, c);
    by_lanes!(c, block(&rows, c, &mut o));
}

/// `Aᵀ M A + bias` of one tile: `m` is `[ξ][c]`; writes the 2×2 outputs as `[r][s][c]`.
fn output_tile(m: &[f32], c: usize, bias: &[f32], out: &mut [f32]) {
    /// Column `s` of `Aᵀ M` (its rows 0 and 1).
    #[inline(always)]
    fn f<const L: usize>(m: &[f32], c: usize, ch: usize, s: usize) -> [Lanes<L>; 2] {
        let mv = |xi: usize| load::<L>(m, xi * c + ch);
        let (m0, m1, m2, m3) = (mv(s), mv(4 + s), mv(8 + s), mv(12 + s));
        [add(add(m0, m1), m2), sub(sub(m1, m2), m3)]
    }
    fn block<const L: usize>(m: &[f32], c: usize, bias: &[f32], out: &mut [f32], ch: usize) {
        let f = |s: usize| f::<L>(m, c, ch, s);
        let (f0, f1, f2, f3) = (f(0), f(1), f(2), f(3));
        let b = load::<L>(bias, ch);
        for r in 0..2 {
            store(out, (r * 2) * c + ch, add(add(add(f0[r], f1[r]), f2[r]), b));
            store(
                out,
                (r * 2 + 1) * c + ch,
                add(sub(sub(f1[r], f2[r]), f3[r]), b),
            );
        }
    }
    by_lanes!(c, block(m, c, bias, out));
}

/// `A gY Aᵀ` of one tile: `g[r * 2 + s]` is the output gradient at (r, s); writes `[ξ][c]`.
fn grad_output_tile(g: [&[f32]; 4], c: usize, out: &mut [f32]) {
    fn block<const L: usize>(g: &[&[f32]; 4], o: &mut [&mut [f32]; XI], ch: usize) {
        // h = A gY (4×2), column s.
        let h = |s: usize| {
            let (g0, g1) = (load::<L>(g[s], ch), load::<L>(g[2 + s], ch));
            [g0, add(g0, g1), sub(g0, g1), neg(g1)]
        };
        let (h0, h1) = (h(0), h(1));
        for a in 0..4 {
            store(o[a * 4], ch, h0[a]);
            store(o[a * 4 + 1], ch, add(h0[a], h1[a]));
            store(o[a * 4 + 2], ch, sub(h0[a], h1[a]));
            store(o[a * 4 + 3], ch, neg(h1[a]));
        }
    }
    let mut o = split16(out, c);
    by_lanes!(c, block(&g, &mut o));
}

/// `B gV Bᵀ` of one tile: `gv` is `[ξ][c]`; writes the patch gradient as `[r][s][c]`.
fn grad_input_tile(gv: &[f32], c: usize, out: &mut [f32]) {
    /// Column `s` of `B gV`.
    #[inline(always)]
    fn e<const L: usize>(gv: &[f32], c: usize, ch: usize, s: usize) -> [Lanes<L>; 4] {
        let q = |xi: usize| load::<L>(gv, xi * c + ch);
        let (q0, q1, q2, q3) = (q(s), q(4 + s), q(8 + s), q(12 + s));
        [q0, add(sub(q1, q2), q3), sub(add(q1, q2), q0), neg(q3)]
    }
    fn block<const L: usize>(gv: &[f32], c: usize, o: &mut [&mut [f32]; XI], ch: usize) {
        let e = |s: usize| e::<L>(gv, c, ch, s);
        let (e0, e1, e2, e3) = (e(0), e(1), e(2), e(3));
        for r in 0..4 {
            store(o[r * 4], ch, e0[r]);
            store(o[r * 4 + 1], ch, add(sub(e1[r], e2[r]), e3[r]));
            store(o[r * 4 + 2], ch, sub(add(e1[r], e2[r]), e0[r]));
            store(o[r * 4 + 3], ch, neg(e3[r]));
        }
    }
    let mut o = split16(out, c);
    by_lanes!(c, block(gv, c, &mut o));
}

#[cfg(test)]
mod tests {
    use dfdx::prelude::*;

    use super::*;
    use crate::model::geometry::Padding;
    use crate::model::gradcheck::{check, random};
    use crate::model::layer::{Forward, Mode, Shape};
    use crate::model::layers::conv::tests::strided;
    use crate::model::layers::conv::Conv;
    use crate::model::Act;
    use crate::rng::Rng;

    /// Output, then the gradients of `sum(conv(x) ⊙ r)` for the input, the kernel and the
    /// bias, computed by Winograd F(m×m, 3×3) (`Some(m)`) or directly.
    fn run(c: &Conv, tile: Option<usize>, x: &[f32], batch: usize) -> Vec<Vec<f32>> {
        let dev = Cpu::default();
        let mut c = c.clone();
        c.winograd = tile.map(|m| Winograd::new(c.geo, m));
        let mut block = c;
        let xt: Act = dev.tensor_from_vec(x.to_vec(), (batch, x.len() / batch));
        let mut rng = Rng::new(0, 0);
        let y = block.forward(xt.clone().leaky_traced(), &mut Mode::Train(&mut rng));
        let r: Act = dev.tensor_from_vec(random(y.shape().0 * y.shape().1, 7), *y.shape());
        let out = y.retaped::<NoneTape>().as_vec();
        let grads = (y * r).sum::<(), _>().backward();
        vec![
            out,
            grads.get(&xt).as_vec(),
            grads.get(&block.w.key).as_vec(),
            grads.get(&block.b.key).as_vec(),
        ]
    }

    #[test]
    fn matches_the_direct_convolution_forward_and_backward() {
        // Odd and even sides, 'valid' and 'same', one tile and many, channels that are not a
        // multiple of a vector; the batch is large enough for several chunks in the last case.
        for (seed, (h, w, ci, co, padding, batch)) in [
            (5, 5, 2, 3, Padding::Same),
            (6, 7, 3, 2, Padding::Valid),
            (4, 4, 1, 5, Padding::Valid),
            (3, 3, 2, 2, Padding::Same),
            (9, 8, 5, 7, Padding::Same),
            (13, 13, 32, 64, Padding::Valid),
            (14, 14, 24, 40, Padding::Same),
        ]
        .into_iter()
        .map(|(h, w, ci, co, p)| (h, w, ci, co, p, if h > 10 { 9 } else { 3 }))
        .enumerate()
        {
            let c = strided(
                Shape::image(h, w, ci),
                3,
                co,
                Activation::Linear,
                1,
                padding,
            );
            let x = random(batch * h * w * ci, 60 + seed as u64);
            let direct = run(&c, None, &x, batch);
            // Larger tiles add larger multiples of the inputs before they cancel (F(4×4)'s
            // transforms have entries up to 8): their bound is looser. Worst seen on these
            // and deeper's shapes: 7·10⁻⁷, 3.2·10⁻⁶ and 5.3·10⁻⁶.
            for (m, bound) in [(2, 2e-6), (3, 6e-6), (4, 1e-5)] {
                let fast = run(&c, Some(m), &x, batch);
                let names = [
                    "output",
                    "input gradient",
                    "kernel gradient",
                    "bias gradient",
                ];
                for ((a, b), name) in fast.iter().zip(&direct).zip(names) {
                    assert_eq!(a.len(), b.len());
                    // Error relative to the largest value of the array (Winograd's transforms
                    // add values of that size before they cancel).
                    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let worst = a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
                    assert!(
                        worst <= bound * scale.max(1e-3),
                        "case {seed} ({h}×{w}×{ci}→{co} {padding:?}), F({m}×{m}): {name} \
                         differs by {worst}, scale {scale}"
                    );
                }
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (seed, padding, m) in [
            (0, Padding::Same, 2),
            (1, Padding::Valid, 2),
            (2, Padding::Same, 3),
            (3, Padding::Valid, 4),
        ] {
            let mut c = strided(Shape::image(5, 6, 2), 3, 3, Activation::Linear, 1, padding);
            c.winograd = Some(Winograd::new(c.geo, m));
            check(&mut c, random(2 * 5 * 6 * 2, 70 + seed), 2, 1e-2, 2e-3);
        }
    }

    #[test]
    fn chunks_cover_every_tile_once_in_order() {
        let c = strided(
            Shape::image(28, 28, 32),
            3,
            32,
            Activation::Linear,
            1,
            Padding::Same,
        );
        let wg = Winograd::new(c.geo, 2);
        assert_eq!(wg.chunk(), 256);
        for tiles in [0, 1, 255, 256, 257, 12544, 12545] {
            let chunks: Vec<_> = wg.chunks(tiles).collect();
            let mut next = 0;
            for &(first, len) in &chunks {
                assert_eq!(first, next);
                assert!(len <= MAX_CHUNK && len <= wg.chunk());
                next += len;
            }
            assert_eq!(next, tiles);
            // Equal sizes up to one: no tiny last chunk.
            let (lo, hi) = chunks
                .iter()
                .fold((usize::MAX, 0), |(l, h), c| (l.min(c.1), h.max(c.1)));
            assert!(hi - lo <= 1, "{tiles}: {chunks:?}");
        }
    }
}

#[cfg(test)]
mod golden {
    //! The exact bits Winograd computes, pinned: a change here changes trained numbers (bump
    //! `NUMERICS_VERSION`), and the same bits on every CPU are what keeps results identical
    //! across machines.
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::model::geometry::{ConvGeometry, Padding};
    use crate::model::layer::Shape;
    use crate::rng::Rng;

    fn digest(arrays: &[&[f32]]) -> String {
        let mut h = Sha256::new();
        for a in arrays {
            for v in a.iter() {
                h.update(v.to_bits().to_le_bytes());
            }
        }
        format!("{:x}", h.finalize())[..16].to_string()
    }

    fn case(
        m: usize,
        h: usize,
        w: usize,
        ci: usize,
        co: usize,
        padding: Padding,
        batch: usize,
    ) -> String {
        let inp = Shape::image(h, w, ci);
        let (oh, _) = padding.side(h, 3, 1).unwrap();
        let (ow, _) = padding.side(w, 3, 1).unwrap();
        let geo = ConvGeometry::new(inp, Shape::image(oh, ow, co), 3, 1, padding);
        let wg = Winograd::new(geo, m);
        let mut rng = Rng::new(17, 3);
        let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform(1.0)).collect() };
        let (x, w, b) = (draw(batch * inp.len()), draw(9 * ci * co), draw(co));
        let gz = draw(batch * oh * ow * co);
        let u = wg.kernel(&w);
        let y = wg.forward(&x, batch, &u, &b, Activation::Linear);
        let mut gx = vec![0.0; x.len()];
        let gw = wg.backward(&x, &gz, &u, batch, Some(&mut gx));
        digest(&[&y, &gw, &gx])
    }

    #[test]
    fn computes_the_pinned_bits() {
        let got = [
            case(2, 28, 28, 32, 32, Padding::Same, 3),
            case(2, 13, 13, 32, 64, Padding::Valid, 2),
            case(2, 7, 6, 17, 19, Padding::Same, 2),
        ];
        assert_eq!(
            got,
            ["243b0b2b96f890f2", "fa0bf863a0a42c81", "dba7216baed77954"]
        );
    }

    #[test]
    fn computes_the_pinned_bits_of_larger_tiles() {
        let got = [
            case(3, 28, 28, 32, 32, Padding::Same, 3),
            case(3, 11, 11, 64, 64, Padding::Valid, 2),
            case(3, 7, 6, 17, 19, Padding::Same, 2),
            case(4, 28, 28, 32, 32, Padding::Same, 3),
            case(4, 13, 13, 32, 64, Padding::Valid, 2),
            case(4, 7, 6, 17, 19, Padding::Same, 2),
        ];
        assert_eq!(
            got,
            [
                "ccdceea30722880c",
                "8ea4073356cc2b7b",
                "bd00163f9193977a",
                "24bf1a87ec800613",
                "c081b8598240c9bb",
                "e2fade46b643d35b"
            ]
        );
    }
}
