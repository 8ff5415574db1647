//! The helper threads of one training thread: a fork-join for the many short parallel regions
//! of a training step (a step of the seed's models has hundreds, some of 20 µs).
//!
//! Each thread that trains a model owns its team (thread-local), of as many helpers as it has
//! asked for so far; the caller runs piece 0 itself and helper i runs piece i + 1. A helper
//! stays awake for a while after each piece (a few microseconds spinning, then yielding its
//! core to anyone who wants it) before it sleeps, so the next region of the same step finds it
//! awake: waking a sleeping thread costs 10–50 µs, which made a general pool (rayon,
//! whose calling thread also waits idle) slower on 2 threads than on one for the seed's models.
//! Which thread runs a piece never changes what it computes (see [`super::par`]).

use std::cell::{RefCell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a helper stays awake after a piece before it sleeps: about the gap between two
/// parallel regions of a step.
const SPIN: Duration = Duration::from_millis(2);

/// Turns of a busy loop (a few microseconds) before a waiting thread yields its core on each
/// turn instead, so that a machine with more threads than cores is not slowed by spinning.
const SPIN_TURNS: u32 = 2048;

/// A piece of work: the region's function (its lifetime erased: the caller waits for every
/// piece before the function goes out of scope) and the piece's index.
type Job = (*const (dyn Fn(usize) + Sync), usize);

/// What a caller and one helper share.
struct Slot {
    /// Pieces posted to this helper so far.
    posted: AtomicUsize,
    /// Pieces it has finished.
    done: AtomicUsize,
    /// Whether a piece it ran panicked.
    panicked: AtomicBool,
    /// Set when the team is dropped.
    stop: AtomicBool,
    /// The piece posted last; written by the caller only while the helper is idle
    /// (`done == posted`), read by the helper once it sees `posted` grow.
    job: UnsafeCell<Option<Job>>,
}

// SAFETY: `job` is handed over through `posted`/`done` (release/acquire): the caller writes it
// only while `done == posted` (the helper is not reading it), the helper reads it only after
// seeing `posted` grow. The function it points to is `Sync`.
unsafe impl Sync for Slot {}
// SAFETY: as above.
unsafe impl Send for Slot {}

struct Helper {
    slot: Arc<Slot>,
    handle: Option<JoinHandle<()>>,
}

impl Helper {
    fn start() -> Self {
        let slot = Arc::new(Slot {
            posted: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            job: UnsafeCell::new(None),
        });
        let s = Arc::clone(&slot);
        let handle = std::thread::Builder::new()
            .name("mnist-lab-helper".into())
            .spawn(move || serve(&s))
            .expect("starting a helper thread");
        Helper {
            slot,
            handle: Some(handle),
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.slot.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

/// A helper's loop: wait for a piece (spinning, then parked), run it, say it is done.
fn serve(slot: &Slot) {
    let mut seen = 0;
    loop {
        let since = Instant::now();
        let mut spins = 0u32;
        while slot.posted.load(Ordering::Acquire) == seen {
            if slot.stop.load(Ordering::Acquire) {
                return;
            }
            spins = spins.wrapping_add(1);
            if spins < SPIN_TURNS {
                std::hint::spin_loop();
            } else if !spins.is_multiple_of(64) || since.elapsed() < SPIN {
                // Awake, but giving the core to any other thread that wants it.
                std::thread::yield_now();
            } else {
                std::thread::park_timeout(Duration::from_millis(50));
            }
        }
        // SAFETY: `posted` grew, so the caller wrote `job` before it (release/acquire) and
        // does not touch it until `done` catches up.
        let (f, i) = unsafe { (*slot.job.get()).expect("a posted job") };
        // SAFETY: the caller keeps the function alive until this piece is done.
        let f = unsafe { &*f };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i))).is_err() {
            slot.panicked.store(true, Ordering::Release);
        }
        seen += 1;
        slot.done.store(seen, Ordering::Release);
    }
}

thread_local! {
    static TEAM: RefCell<Vec<Helper>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f(0)`, …, `f(pieces - 1)`: piece 0 on the calling thread, the others on its helpers
/// (started on first need), and returns once every piece is done.
pub fn run(pieces: usize, f: &(dyn Fn(usize) + Sync)) {
    if pieces <= 1 {
        if pieces == 1 {
            f(0);
        }
        return;
    }
    TEAM.with(|team| {
        let mut team = team.borrow_mut();
        while team.len() < pieces - 1 {
            team.push(Helper::start());
        }
        // SAFETY (lifetime): `Wait` below blocks until every posted piece is done, also when
        // `f(0)` panics, so no helper uses `f` after this call returns.
        let erased: *const (dyn Fn(usize) + Sync) = unsafe {
            std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f)
        };
        let helpers = &team[..pieces - 1];
        for (i, h) in helpers.iter().enumerate() {
            // SAFETY: the helper is idle (the last region waited for it), so it does not read
            // `job` until `posted` grows below.
            unsafe { *h.slot.job.get() = Some((erased, i + 1)) };
            h.slot.posted.fetch_add(1, Ordering::Release);
            if let Some(handle) = &h.handle {
                handle.thread().unpark();
            }
        }
        let wait = Wait(helpers);
        f(0);
        drop(wait);
        if helpers
            .iter()
            .any(|h| h.slot.panicked.load(Ordering::Acquire))
        {
            panic!("a helper thread's piece of work panicked");
        }
    });
}

/// Waits, when dropped, for the helpers to finish the pieces posted to them.
struct Wait<'a>(&'a [Helper]);

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        for h in self.0 {
            let mut spins = 0u32;
            while h.slot.done.load(Ordering::Acquire) != h.slot.posted.load(Ordering::Relaxed) {
                spins = spins.wrapping_add(1);
                if spins < SPIN_TURNS {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_piece_runs_once_per_region() {
        let hits: Vec<AtomicU64> = (0..5).map(|_| AtomicU64::new(0)).collect();
        for _ in 0..1000 {
            run(5, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
        }
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1000));
        // Fewer pieces than helpers: the others stay idle.
        let count = AtomicU64::new(0);
        run(2, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }
}
