//! One model's training step on several threads, with bytes that do not depend on how many.
//!
//! Work is split only along dimensions that are not summed: samples (activations, input
//! gradients), tiles, output channels or rows of a product, parameters. Every value is then
//! computed by exactly the same operations in the same order, whichever thread computes it and
//! however many there are; a sum is never split. The pieces run on the calling thread and its
//! helpers ([`super::team`]).
//!
//! The thread count belongs to the calling thread ([`set_threads`]); a helper sees its own
//! default of one, so pieces never split again.

use std::cell::Cell;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The threads this process may use in all (`--threads`); 0: one per core.
static BUDGET: AtomicUsize = AtomicUsize::new(0);

/// Sets the threads this process may use in all (`--threads`).
pub fn set_budget(n: usize) {
    BUDGET.store(n.max(1), Ordering::SeqCst);
}

/// The threads this process may use in all: `--threads`, or one per core.
pub fn budget() -> usize {
    match BUDGET.load(Ordering::SeqCst) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

thread_local! {
    static THREADS: Cell<usize> = const { Cell::new(1) };
}

/// Sets how many threads the training step of the calling thread may use (at most
/// [`super::team::MAX_PIECES`]: a batch of a few dozen samples gains nothing from more).
pub fn set_threads(n: usize) {
    THREADS.with(|t| t.set(n.clamp(1, super::team::MAX_PIECES)));
}

/// How many threads the training step of the calling thread may use.
pub fn threads() -> usize {
    THREADS.with(|t| t.get())
}

/// `0..n` cut into at most [`threads`] consecutive ranges of nearly equal length, none shorter
/// than `min` (so one range when `n < 2 × min`, or on one thread).
pub fn ranges(n: usize, min: usize) -> Vec<Range<usize>> {
    ranges_on(threads(), n, min)
}

/// [`ranges`] for `threads` threads.
pub fn ranges_on(threads: usize, n: usize, min: usize) -> Vec<Range<usize>> {
    let parts = threads.min(n / min.max(1)).max(1);
    (0..parts)
        .map(|i| n * i / parts..n * (i + 1) / parts)
        .collect()
}

/// Values below which a pass over an array stays on one thread (about 16 µs of memory-bound
/// work: splitting it would cost as much as it saves).
pub const MIN_VALUES: usize = 1 << 14;

/// The channels of `len` values with `c` channels per row, cut for the threads (one range
/// when the array is small): a per-channel sum over rows keeps its row order in each piece.
pub fn channel_ranges(c: usize, len: usize) -> Vec<Range<usize>> {
    match splits_channels(len) {
        true => ranges(c, 8),
        false => whole(c),
    }
}

/// Whether [`channel_ranges`] may cut an array of `len` values (a check that allocates
/// nothing, for kernels called once per row).
fn splits_channels(len: usize) -> bool {
    len >= 2 * MIN_VALUES && threads() > 1
}

/// Runs `f(channels, sums)`, which adds an array of `len` values (rows of `sums.len()`
/// channels) into its per-channel `sums`, by pieces of channels on the threads when the array
/// is large ([`channel_ranges`]), each piece's sums in row order. A piece sums into a copy of
/// its own, written back at its end: with both cores writing one cache line on every row, two
/// threads were no faster than one.
#[inline]
#[track_caller]
pub fn by_channels<T, F>(sums: &mut [T], len: usize, f: F)
where
    T: Copy + Send,
    F: Fn(Range<usize>, &mut [T]) + Sync,
{
    let c = sums.len();
    if !splits_channels(len) {
        return f(0..c, sums);
    }
    match &channel_ranges(c, len)[..] {
        [_] => f(0..c, sums),
        ranges => each_mut(sums, 1, ranges, |r, part| {
            let mut own = part.to_vec();
            f(r, &mut own);
            part.copy_from_slice(&own);
        }),
    }
}

/// `0..n` as one range: work that stays on the calling thread.
pub fn whole(n: usize) -> Vec<Range<usize>> {
    std::iter::once(0..n).collect()
}

/// The `rows` rows of `len` values cut for the threads (one range when the array is small).
pub fn row_ranges(rows: usize, len: usize) -> Vec<Range<usize>> {
    let min = (MIN_VALUES * rows).div_ceil(len.max(1)).max(1);
    ranges(rows, min)
}

/// A vector of `n × unit` values, piece `r` written by `f(r, part)`, the pieces in parallel.
///
/// # Safety
/// `f` must write every element of the part it is given.
#[track_caller]
pub unsafe fn build<F>(n: usize, unit: usize, ranges: &[Range<usize>], f: F) -> Vec<f32>
where
    F: Fn(Range<usize>, &mut [std::mem::MaybeUninit<f32>]) + Sync,
{
    let mut v = Vec::with_capacity(n * unit);
    each_mut(&mut v.spare_capacity_mut()[..n * unit], unit, ranges, f);
    // SAFETY: the ranges cover 0..n (consecutive from 0) and `f` wrote every element.
    unsafe { v.set_len(n * unit) };
    v
}

/// A destination pointer that the pieces of one region, on several threads, write disjoint
/// elements through (elements that do not form one slice per piece, such as a tile's rows in
/// an image).
#[derive(Clone, Copy)]
pub struct Dst(pub *mut f32);
// SAFETY: its users write disjoint elements from each piece and read none.
unsafe impl Send for Dst {}
// SAFETY: as above.
unsafe impl Sync for Dst {}

impl Dst {
    /// The pointer `at` elements further.
    ///
    /// # Safety
    /// As [`pointer::add`]: `at` stays inside the destination.
    pub unsafe fn at(&self, at: usize) -> *mut f32 {
        // SAFETY: the caller's.
        unsafe { self.0.add(at) }
    }
}

/// `v` filled with zeros, as initialized values.
pub fn zeroed(v: &mut [std::mem::MaybeUninit<f32>]) -> &mut [f32] {
    v.fill(std::mem::MaybeUninit::new(0.0));
    // SAFETY: every element was just written.
    unsafe { assume_init(v) }
}

/// `v` as the initialized values it holds.
///
/// # Safety
/// Every element of `v` must have been written.
pub unsafe fn assume_init(v: &mut [std::mem::MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has f32's layout, and the caller says every one is written.
    unsafe { &mut *(v as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) }
}

/// Runs `f` on each range, the ranges in parallel when there are several.
#[track_caller]
pub fn each<F>(ranges: &[Range<usize>], f: F)
where
    F: Fn(Range<usize>) + Sync,
{
    match ranges {
        [] => {}
        [one] => f(one.clone()),
        _ => super::team::run(ranges.len(), &|i| f(ranges[i].clone())),
    }
}

/// Runs `f` on each range with its part of `data` (`unit` values per item: items `r` own
/// `data[r.start × unit..r.end × unit]`), the ranges in parallel when there are several. The
/// ranges must be consecutive from 0, as [`ranges`] makes them.
#[track_caller]
pub fn each_mut<T, F>(data: &mut [T], unit: usize, ranges: &[Range<usize>], f: F)
where
    T: Send,
    F: Fn(Range<usize>, &mut [T]) + Sync,
{
    let parts = split(data, unit, ranges);
    each_part(parts, |(r, part)| f(r, part));
}

/// [`each_mut`] over two arrays cut by the same ranges (`unit_a` and `unit_b` values per item).
#[track_caller]
pub fn each_mut2<T, U, F>(
    a: &mut [T],
    unit_a: usize,
    b: &mut [U],
    unit_b: usize,
    ranges: &[Range<usize>],
    f: F,
) where
    T: Send,
    U: Send,
    F: Fn(Range<usize>, &mut [T], &mut [U]) + Sync,
{
    let parts: Vec<_> = split(a, unit_a, ranges)
        .into_iter()
        .zip(split(b, unit_b, ranges))
        .collect();
    each_part(parts, |((r, a), (_, b))| f(r, a, b));
}

/// `data` cut into the parts of consecutive `ranges` of items of `unit` values.
fn split<'a, T>(
    data: &'a mut [T],
    unit: usize,
    ranges: &[Range<usize>],
) -> Vec<(Range<usize>, &'a mut [T])> {
    let mut parts = Vec::with_capacity(ranges.len());
    let mut rest = &mut data[ranges.first().map_or(0, |r| r.start * unit)..];
    let mut at = ranges.first().map_or(0, |r| r.start);
    for r in ranges {
        assert!(r.start == at, "par: ranges must be consecutive");
        let (part, tail) = rest.split_at_mut((r.end - r.start) * unit);
        parts.push((r.clone(), part));
        rest = tail;
        at = r.end;
    }
    parts
}

/// Runs `f` on each part (whatever a piece owns: its slices of arrays cut alike), in parallel
/// when there are several.
#[track_caller]
pub fn each_part<P: Send, F: Fn(P) + Sync>(mut parts: Vec<P>, f: F) {
    if parts.len() <= 1 {
        return parts.pop().into_iter().for_each(f);
    }
    // Each piece takes its own part (the locks are never contended).
    let parts: Vec<std::sync::Mutex<Option<P>>> = parts
        .into_iter()
        .map(|p| std::sync::Mutex::new(Some(p)))
        .collect();
    super::team::run(parts.len(), &|i| {
        let part = parts[i].lock().expect("part").take().expect("taken once");
        f(part)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_everything_once_in_order_and_respect_the_minimum() {
        for threads in [1, 2, 3, 4, 7] {
            set_threads(threads);
            for (n, min) in [(0, 1), (1, 1), (10, 1), (10, 4), (100, 7), (5, 10)] {
                let rs = ranges(n, min);
                assert!(rs.len() <= threads && !rs.is_empty(), "{n} {min} {threads}");
                assert_eq!(rs[0].start, 0);
                assert_eq!(rs.last().expect("one").end, n);
                for w in rs.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                if rs.len() > 1 {
                    assert!(rs.iter().all(|r| r.len() >= min), "{rs:?} min {min}");
                }
            }
        }
        set_threads(1);
    }

    #[test]
    fn each_mut_gives_every_range_its_own_part() {
        set_threads(3);
        let mut data = vec![0usize; 30];
        let rs = ranges(10, 1);
        assert_eq!(rs.len(), 3);
        each_mut(&mut data, 3, &rs, |r, part| {
            assert_eq!(part.len(), 3 * r.len());
            for (i, v) in part.iter_mut().enumerate() {
                *v = r.start * 3 + i;
            }
        });
        assert_eq!(data, (0..30).collect::<Vec<_>>());
        set_threads(1);
    }
}
