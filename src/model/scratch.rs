//! Working buffers that a kernel overwrites before it reads them, kept per thread and reused
//! from one call to the next.
//!
//! A kernel that asked for fresh zeroed vectors on every call paid for the zero-fill (and for
//! memory the cache no longer held) although it writes every value before reading it. Here it
//! borrows buffers that still hold whatever the last user left in them. In debug builds (the
//! tests) they are filled with NaN first, so a kernel that reads a value it did not write
//! poisons its result instead of passing by chance.

use std::cell::RefCell;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with `N` buffers of the given lengths, whose contents are unspecified: `f` must
/// write each value before it reads it.
pub fn with<const N: usize, R>(lens: [usize; N], f: impl FnOnce([&mut [f32]; N]) -> R) -> R {
    let mut bufs: [Vec<f32>; N] = POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        std::array::from_fn(|_| pool.pop().unwrap_or_default())
    });
    for (buf, &len) in bufs.iter_mut().zip(&lens) {
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        if cfg!(debug_assertions) {
            buf[..len].fill(f32::NAN);
        }
    }
    let result = {
        let mut it = bufs.iter_mut().zip(lens);
        f(std::array::from_fn(|_| {
            let (buf, len) = it.next().expect("N buffers");
            &mut buf[..len]
        }))
    };
    POOL.with(|pool| pool.borrow_mut().extend(bufs));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lends_buffers_of_the_asked_lengths_and_takes_them_back() {
        let lens = with([3, 5], |[a, b]| {
            a.fill(1.0);
            b.fill(2.0);
            [a.len(), b.len()]
        });
        assert_eq!(lens, [3, 5]);
        // Nested use gets other buffers, never the ones still lent out.
        with([4], |[outer]| {
            outer.fill(7.0);
            with([4], |[inner]| inner.fill(8.0));
            assert_eq!(outer, &[7.0; 4]);
        });
    }

    #[test]
    #[cfg(debug_assertions)]
    fn lends_poisoned_values_in_debug_builds() {
        with([8], |[a]| a.fill(1.0));
        with([8], |[a]| assert!(a.iter().all(|v| v.is_nan())));
    }
}
