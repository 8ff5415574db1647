//! IEEE f32 arithmetic on subnormal numbers without the CPU's slow path, bit for bit.
//!
//! x86 CPUs compute a multiply whose operand or result is subnormal (|x| < 2⁻¹²⁶) in microcode,
//! about a hundred times slower than a normal one. Optimizer state meets them all the time: a
//! weight whose gradient is exactly zero step after step (a dead ReLU unit, an input that is
//! always zero) has its momentum decay geometrically, 0.9 per step, into the subnormals, and it
//! stays there: 0.9 × the smallest subnormal rounds back to the smallest subnormal. On the seed
//! baseline `perf` put 43% of a real training run in `vmulps` of the SGD update.
//!
//! Flushing subnormals to zero (the FTZ/DAZ modes) would be fast but changes results, so
//! instead the few operations optimizer updates do on subnormal state are computed here exactly
//! as IEEE round-to-nearest-even defines them, in integer and f64 arithmetic that never touches
//! an f32 subnormal: the same bits, without the microcode.

use crate::model::par;

/// `true` for a subnormal (not zero, |x| < 2⁻¹²⁶).
#[inline(always)]
pub fn is_subnormal(x: f32) -> bool {
    (x.to_bits() & 0x7fff_ffff).wrapping_sub(1) < 0x007f_ffff
}

/// `true` when some value in `xs` is subnormal (branch-free, so it vectorizes).
#[inline(always)]
pub fn any_subnormal(xs: &[f32]) -> bool {
    xs.iter().fold(false, |a, &x| a | is_subnormal(x))
}

/// Elements an optimizer checks for subnormal state at once: a chunk without any (every chunk
/// early in training) takes the plain loop whole, the others go block by block.
pub const CHUNK: usize = 256;

/// Elements per block of a chunk that holds subnormal state.
pub const BLOCK: usize = 16;

/// Runs an optimizer's update over the weights and its state arrays `xs` (each as long as
/// the gradient `g`), chunk by chunk: `plain` (the update as written) for a chunk in which
/// `subnormal` finds no subnormal state; in the others, block by block (the last one padded
/// with zeros), `exact` for a block in which `subnormal` finds some, unless it declines
/// (returns `false`, having written nothing), and `plain` for the rest.
///
/// A long parameter is cut into runs of whole chunks, one per thread of the step
/// ([`par::ranges`]): each element's update reads only its own values, and a chunk or block is
/// the same whichever run holds it, so the bits do not depend on the number of threads.
#[inline(always)]
pub fn by_chunks<const K: usize>(
    xs: [&mut [f32]; K],
    g: &[f32],
    subnormal: impl Fn(&[&mut [f32]; K]) -> bool + Sync,
    plain: impl Fn([&mut [f32]; K], &[f32]) + Sync,
    exact: impl Fn([&mut [f32; BLOCK]; K], &[f32; BLOCK]) -> bool + Sync,
) {
    let runs = par::ranges(g.len().div_ceil(CHUNK), par::MIN_VALUES / CHUNK);
    if runs.len() <= 1 {
        return in_order(xs, g, &subnormal, &plain, &exact);
    }
    let mut parts = Vec::with_capacity(runs.len());
    let (mut rest, mut g_rest) = (xs, g);
    for r in &runs {
        let len = (r.len() * CHUNK).min(g_rest.len());
        let head: [&mut [f32]; K] = std::array::from_fn(|i| {
            let (head, tail) = std::mem::take(&mut rest[i]).split_at_mut(len);
            rest[i] = tail;
            head
        });
        let (g_head, g_tail) = g_rest.split_at(len);
        parts.push((head, g_head));
        g_rest = g_tail;
    }
    par::each_part(parts, |(xs, g)| in_order(xs, g, &subnormal, &plain, &exact));
}

/// [`by_chunks`] on the calling thread, chunk after chunk.
#[inline(always)]
fn in_order<const K: usize>(
    mut xs: [&mut [f32]; K],
    g: &[f32],
    subnormal: &impl Fn(&[&mut [f32]; K]) -> bool,
    plain: &impl Fn([&mut [f32]; K], &[f32]),
    exact: &impl Fn([&mut [f32; BLOCK]; K], &[f32; BLOCK]) -> bool,
) {
    let block = |mut b: [&mut [f32; BLOCK]; K], g: &[f32; BLOCK]| {
        let held = subnormal(&b.each_mut().map(|x| x.as_mut_slice()));
        if !(held && exact(b.each_mut().map(|x| &mut **x), g)) {
            plain(b.map(|x| x.as_mut_slice()), g);
        }
    };
    for (c, g) in g.chunks(CHUNK).enumerate() {
        let range = c * CHUNK..c * CHUNK + g.len();
        let mut part = xs.each_mut().map(|x| &mut x[range.clone()]);
        if !subnormal(&part) {
            plain(part, g);
            continue;
        }
        let (gb, gr) = g.as_chunks::<BLOCK>();
        for (i, g) in gb.iter().enumerate() {
            block(
                part.each_mut()
                    .map(|x| &mut x.as_chunks_mut::<BLOCK>().0[i]),
                g,
            );
        }
        if !gr.is_empty() {
            let (n, at) = (gr.len(), gb.len() * BLOCK);
            let (mut pad, mut gpad) = ([[0f32; BLOCK]; K], [0f32; BLOCK]);
            for (p, x) in pad.iter_mut().zip(part.iter()) {
                p[..n].copy_from_slice(&x[at..]);
            }
            gpad[..n].copy_from_slice(gr);
            block(pad.each_mut(), &gpad);
            for (p, x) in pad.iter().zip(part.iter_mut()) {
                x[at..].copy_from_slice(&p[..n]);
            }
        }
    }
}

/// `x` with its subnormals replaced by zero, for the plain formula in an exact block: opaque
/// to the optimizer, which would otherwise compute with the original values (the slow path)
/// and select the result where they are normal (it did, in the disassembly).
#[inline(always)]
pub fn without_subnormals(x: &[f32; BLOCK]) -> [f32; BLOCK] {
    std::hint::black_box(x.map(|x| if is_subnormal(x) { 0.0 } else { x }))
}

const SIGN: u32 = 0x8000_0000;
/// |x| ≥ 2⁻¹⁰⁰: adding a subnormal (< 2⁻¹²⁶) cannot move x to a neighbour (≥ 2⁻¹²⁴ away).
const BIG: u32 = (127 - 100) << 23;

/// `m · x` as f32 arithmetic rounds it, for `x` zero or subnormal and a factor `m` that is
/// zero or normal with |m| < 2 (see [`factor_ok`]). x = ±k·2⁻¹⁴⁹: k·|m| is exact in f64 (47
/// bits) and below 2²⁴; adding 2⁵² rounds it to an integer, ties to even, which is the f32
/// rounding (results below 2⁻¹²⁵ have the fixed spacing 2⁻¹⁴⁹), and k' encodes as the bits
/// sign | k'. Integer and f64 arithmetic only, so a loop of it vectorizes and never meets the
/// slow path. (For any other `x` the result means nothing.)
#[inline(always)]
pub fn scale(m: f32, x: f32) -> f32 {
    debug_assert!(factor_ok(m));
    let xb = x.to_bits();
    let k = (xb & 0x007f_ffff) as f64;
    let q = (k * m.abs() as f64 + TWO_52).to_bits() as u32;
    f32::from_bits(((xb ^ m.to_bits()) & SIGN) | q)
}

const TWO_52: f64 = 4_503_599_627_370_496.0;

/// Whether [`scale`] can take `m` as its factor: zero, or normal with |m| < 2.
pub fn factor_ok(m: f32) -> bool {
    let mb = m.to_bits() & !SIGN;
    mb == 0 || (0x0080_0000..0x4000_0000).contains(&mb)
}

/// `true` for a finite |x| ≥ 2⁻¹⁰⁰: adding a subnormal to it gives it back.
#[inline(always)]
pub fn is_big(x: f32) -> bool {
    at_least(x, BIG)
}

/// `true` for a finite x whose magnitude's bits are at least `bits`.
#[inline(always)]
pub fn at_least(x: f32, bits: u32) -> bool {
    let a = x.to_bits() & !SIGN;
    (a >= bits) & (a < 0x7f80_0000)
}

/// The bits of the smallest magnitude a weight w can have and be given back by
/// w − a·x/d for every zero or subnormal x and every d ≥ `eps` (Adam's α·m/(√v + ε)):
/// rounded, |a·x| ≤ |a|·2⁻¹²⁶ + 2⁻¹⁵⁰ and d ≥ ε(1 − 2⁻²⁴), so the quotient is below q (with a
/// margin), and a w of at least q·2²⁶ has no neighbour within 2q. Infinity's bits (no
/// weight) when there is no such bound.
pub fn swamping(a: f32, eps: f32) -> u32 {
    let q = (a.abs() as f64 * 2f64.powi(-126) + 2f64.powi(-149)) / eps as f64 * 1.01;
    let t = q * 2f64.powi(26);
    if !(eps > 0.0 && t < f32::MAX as f64 / 2.0) {
        return 0x7f80_0000;
    }
    // One unit more covers the cast's rounding down.
    (t as f32).to_bits() + 1
}

/// The bit patterns of `x`, for tests that compare updates bit for bit.
#[cfg(test)]
pub(crate) fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|x| x.to_bits()).collect()
}

/// Gradients for testing an optimizer's exact path against its plain formula: random for the
/// first 20 steps, then every third element dead (a zero of either sign, so its state decays
/// into the subnormals) and the others zero, subnormal, tiny (below `tiny`) or random.
#[cfg(test)]
pub(crate) fn test_gradients(
    rng: &mut crate::rng::Rng,
    n: usize,
    step: usize,
    tiny: f32,
) -> Vec<f32> {
    (0..n)
        .map(|i| match (i % 3, step > 20) {
            (_, false) => rng.uniform(1.0),
            (0, true) => [0.0, -0.0][i % 2],
            _ => match rng.below(5) {
                0 => 0.0,
                1 => f32::from_bits((rng.next_u64() as u32) & 0x807f_ffff),
                2 => rng.uniform(tiny),
                _ => rng.uniform(1.0),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every class of f32 the helpers see: zeros, subnormals small and large, the smallest
    /// normals, the threshold of "big", ordinary values.
    fn samples() -> Vec<f32> {
        let mut v = Vec::new();
        for bits in [
            0u32,
            1,
            2,
            3,
            5,
            7,
            100,
            0x3ff,
            0x40_0000,
            0x7f_fffe,
            0x7f_ffff,
            0x80_0000,
            0x80_0001,
            0x0100_0000,
            BIG - 1,
            BIG,
            BIG + 1,
            0x3c23_d70a,
            0x3f66_6666,
            0x3f80_0000,
        ] {
            v.push(f32::from_bits(bits));
            v.push(-f32::from_bits(bits));
        }
        v.extend([1e-3, 0.9, 0.1, 0.999, 1.5, 1e-30, 1e-36]);
        v
    }

    /// `samples` and `n` random subnormals (with zeros among them) of either sign.
    fn tiny_samples(seed: u64, n: usize) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed, 0);
        let mut xs: Vec<f32> = samples()
            .into_iter()
            .filter(|&x| x.to_bits() & 0x7f80_0000 == 0)
            .collect();
        for _ in 0..n {
            let bits = rng.next_u64() as u32;
            // Small multiples of 2⁻¹⁴⁹ (where momentum gets stuck) and any.
            xs.push(f32::from_bits(bits & 0x8000_000f));
            xs.push(f32::from_bits(bits & 0x807f_ffff));
        }
        xs
    }

    #[test]
    fn products_match_the_hardware_bit_for_bit() {
        // The hardware's own (slow, microcoded) subnormal arithmetic is the reference.
        let mut rng = crate::rng::Rng::new(7, 0);
        let mut factors: Vec<f32> = samples().into_iter().filter(|&m| factor_ok(m)).collect();
        for _ in 0..1000 {
            factors.push(rng.uniform(1.999));
        }
        for &m in &factors {
            for &x in &tiny_samples(8, 500) {
                assert_eq!(scale(m, x).to_bits(), (m * x).to_bits(), "{m:e} · {x:e}");
            }
        }
    }

    #[test]
    fn a_swamped_weight_is_given_back_by_the_hardware_too() {
        // The worst case: the largest subnormal over the smallest denominator, at the
        // smallest weight said to be big enough, of either sign, and its float neighbours.
        for (a, eps) in [(1e-3f32, 1e-7f32), (0.1, 1e-7), (1.0, 1e-3), (1e-6, 1e-8)] {
            let t = f32::from_bits(swamping(a, eps));
            for x in [
                f32::from_bits(0x7f_ffff),
                -f32::from_bits(0x7f_ffff),
                f32::from_bits(1),
            ] {
                let step = a * x / (0.0f32.sqrt() + eps);
                for w in [
                    t,
                    -t,
                    t * 1.5,
                    f32::from_bits(t.to_bits() + 1),
                    2f32.powi(-40),
                ] {
                    if w.abs() >= t {
                        assert_eq!((w - step).to_bits(), w.to_bits(), "{a} {eps} {x:e} {w:e}");
                    }
                }
            }
        }
        assert_eq!(swamping(1e-3, 0.0), 0x7f80_0000);
        assert!(f32::from_bits(swamping(1e-3, 1e-7)) < 1e-25);
    }

    #[test]
    fn classes() {
        assert!(!is_subnormal(0.0) && !is_subnormal(-0.0));
        assert!(is_subnormal(f32::from_bits(1)) && is_subnormal(-f32::from_bits(0x7f_ffff)));
        assert!(!is_subnormal(f32::MIN_POSITIVE) && !is_subnormal(1.0));
        assert!(!is_subnormal(f32::INFINITY) && !is_subnormal(f32::NAN));
        assert!(any_subnormal(&[1.0, 0.0, f32::from_bits(3)]));
        assert!(!any_subnormal(&[1.0, 0.0, -2.0]));
        assert!(is_big(-1e-30) && is_big(f32::MAX) && !is_big(1e-31) && !is_big(0.0));
        assert!(!is_big(f32::INFINITY) && !is_big(f32::NAN));
        assert!(at_least(-2.0, 2f32.to_bits()) && !at_least(1.9, 2f32.to_bits()));
        assert!(!at_least(f32::INFINITY, 0x7f80_0000));
        assert!(factor_ok(0.0) && factor_ok(0.9) && factor_ok(1.99));
        assert!(!factor_ok(2.0) && !factor_ok(f32::from_bits(5)) && !factor_ok(f32::NAN));
    }
}
