//! The helper threads of one training thread: a fork-join for the many short parallel regions
//! of a training step (a step of the seed's models has hundreds, some of 20 µs).
//!
//! Each thread that trains a model owns its team (thread-local), of as many helpers as it has
//! asked for so far. Piece 0 of a region is the caller's and piece i + 1 helper i's, so the
//! same thread keeps working on the same part of the data from one region to the next (its
//! caches hold it), but a piece is claimed, not handed over: a thread that has finished its own
//! takes any piece not yet claimed. So a helper that is not on a core (asleep, or preempted on
//! a machine whose cores other programs use too) never holds the caller up: the caller does its
//! piece itself. (Waiting for it made one model on 2 threads 5× slower than on one thread
//! beside two busy programs.) A helper stays awake for a while after a region (a few
//! microseconds spinning, then yielding its core to anyone who wants it) before it sleeps, so
//! the next region of the same step finds it awake: waking a sleeping thread costs 10–50 µs,
//! which made a general pool (rayon, whose calling thread also waits idle) slower on 2 threads
//! than on one for the seed's models. Which thread runs a piece never changes what it computes
//! (see [`super::par`]).

use std::cell::{RefCell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a helper stays awake after a piece before it sleeps: about the gap between two
/// parallel regions of a step.
const SPIN: Duration = Duration::from_millis(2);

/// Turns of a busy loop (a few microseconds) before a waiting thread yields its core on each
/// turn instead, so that a machine with more threads than cores is not slowed by spinning.
const SPIN_TURNS: u32 = 2048;

/// A region's function, its lifetime erased: the caller waits for every piece before the
/// function goes out of scope.
type Job = *const (dyn Fn(usize) + Sync);

/// `f` with its lifetime erased.
///
/// # Safety
/// The caller must keep `f` alive as long as the pointer is dereferenced.
unsafe fn erase(f: &(dyn Fn(usize) + Sync)) -> Job {
    // SAFETY: only the lifetime changes; the caller keeps `f` alive.
    unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f) }
}

/// The most pieces of one region (one bit each in the state's claim mask).
pub const MAX_PIECES: usize = 32;

/// A region's state in one word: generation (bits 32–63) and which pieces are claimed (bits
/// 0–31; the bits of pieces past the region's last are set when it starts). A piece is claimed
/// by a compare-and-swap of the whole word, so a thread that read the state of an earlier
/// region can never claim a piece of a later one.
fn pack(generation: u32, claimed: u32) -> u64 {
    (generation as u64) << 32 | claimed as u64
}

fn generation(state: u64) -> u32 {
    (state >> 32) as u32
}

/// The claim mask of a region of `pieces` pieces none of which is claimed yet.
fn unclaimed(pieces: usize) -> u32 {
    match pieces {
        MAX_PIECES => 0,
        n => u32::MAX << n,
    }
}

/// What a caller and its helpers share.
struct Shared {
    /// The current region (see [`pack`]).
    state: AtomicU64,
    /// Pieces of the current region finished.
    finished: AtomicUsize,
    /// Pieces of the current region (a helper without a piece of its own in it stays out, so
    /// that it takes no piece from the thread whose part of the data that piece is).
    pieces: AtomicUsize,
    /// Whether a piece of the current region panicked.
    panicked: AtomicBool,
    /// Set when the team is dropped.
    stop: AtomicBool,
    /// The current region's function; written by the caller only between regions (every
    /// piece of the last one finished), read by a thread only after it claimed a piece.
    job: UnsafeCell<Option<Job>>,
}

// SAFETY: `job` is written by the caller only while no piece of a region is unfinished, so no
// thread is between claiming a piece and finishing it; it is published by the release store of
// the next region's state and read only after a successful claim (acquire) of that state. The
// function it points to is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: as above.
unsafe impl Send for Shared {}

impl Shared {
    /// Claims and runs pieces of region `generation_seen` until none is left unclaimed, piece
    /// `own` first when it is still free; returns how many this thread ran.
    fn work(&self, generation_seen: u32, own: usize) -> usize {
        let mut ran = 0;
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let free = !(state as u32);
            if generation(state) != generation_seen || free == 0 {
                return ran;
            }
            let piece = match own < MAX_PIECES && free & (1 << own) != 0 {
                true => own,
                false => free.trailing_zeros() as usize,
            };
            match self.state.compare_exchange_weak(
                state,
                state | 1 << piece,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // SAFETY: the claim succeeded, so the region is unfinished and its caller
                    // keeps `job` and the function alive until this piece is finished.
                    let f = unsafe { &*(*self.job.get()).expect("a posted job") };
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(piece))).is_err()
                    {
                        self.panicked.store(true, Ordering::Release);
                    }
                    ran += 1;
                    self.finished.fetch_add(1, Ordering::Release);
                    state = self.state.load(Ordering::Acquire);
                }
                Err(now) => state = now,
            }
        }
    }
}

/// Helper `own - 1`'s loop: wait for a new region (spinning, then parked), take its pieces
/// (piece `own` first) while any is left.
fn serve(shared: &Shared, own: usize) {
    let mut seen = generation(shared.state.load(Ordering::Acquire));
    loop {
        let since = Instant::now();
        let mut spins = 0u32;
        while generation(shared.state.load(Ordering::Acquire)) == seen {
            if shared.stop.load(Ordering::Acquire) {
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
        seen = generation(shared.state.load(Ordering::Acquire));
        if own < shared.pieces.load(Ordering::Relaxed) {
            shared.work(seen, own);
        }
    }
}

/// A training thread's helpers and what they share with it.
struct Team {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
}

impl Team {
    fn new() -> Self {
        Team {
            shared: Arc::new(Shared {
                state: AtomicU64::new(pack(0, u32::MAX)),
                finished: AtomicUsize::new(0),
                pieces: AtomicUsize::new(0),
                panicked: AtomicBool::new(false),
                stop: AtomicBool::new(false),
                job: UnsafeCell::new(None),
            }),
            helpers: Vec::new(),
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for h in self.helpers.drain(..) {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

thread_local! {
    static TEAM: RefCell<Option<Team>> = const { RefCell::new(None) };
}

/// Runs `f(0)`, …, `f(pieces - 1)` on the calling thread and its helpers (started on first
/// need, `pieces - 1` of them), each piece once, and returns once every piece is done.
#[track_caller]
pub fn run(pieces: usize, f: &(dyn Fn(usize) + Sync)) {
    if pieces <= 1 {
        if pieces == 1 {
            f(0);
        }
        return;
    }
    assert!(pieces <= MAX_PIECES, "team: {pieces} pieces in one region");
    let started = profile::start(std::panic::Location::caller());
    TEAM.with(|team| {
        let mut team = team.borrow_mut();
        let team = team.get_or_insert_with(Team::new);
        while team.helpers.len() < pieces - 1 {
            let s = Arc::clone(&team.shared);
            let own = team.helpers.len() + 1;
            team.helpers.push(
                std::thread::Builder::new()
                    .name("mnist-lab-helper".into())
                    .spawn(move || serve(&s, own))
                    .expect("starting a helper thread"),
            );
        }
        let shared = &*team.shared;
        // SAFETY (lifetime): this call returns only once every piece is finished (also when a
        // piece panics: each is caught), and a thread dereferences `job` only after claiming an
        // unfinished piece, so no thread uses `f` after this call returns.
        let erased = unsafe { erase(f) };
        let generation = generation(shared.state.load(Ordering::Relaxed)).wrapping_add(1);
        // SAFETY: every piece of the last region is finished (this thread waited for them), so
        // no thread reads `job` until the store of the new state below publishes it.
        unsafe { *shared.job.get() = Some(erased) };
        shared.finished.store(0, Ordering::Relaxed);
        shared.pieces.store(pieces, Ordering::Relaxed);
        shared.panicked.store(false, Ordering::Relaxed);
        shared
            .state
            .store(pack(generation, unclaimed(pieces)), Ordering::Release);
        for h in &team.helpers[..pieces - 1] {
            h.thread().unpark();
        }
        // The caller's pieces run as a helper's do, on one thread: a piece never splits again
        // (a nested region would need the team this region holds).
        let threads = super::par::threads();
        super::par::set_threads(1);
        shared.work(generation, 0);
        super::par::set_threads(threads);
        let own_done = started.map(|_| Instant::now());
        let mut spins = 0u32;
        while shared.finished.load(Ordering::Acquire) != pieces {
            spins = spins.wrapping_add(1);
            if spins < SPIN_TURNS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if let (Some(start), Some(own_done)) = (started, own_done) {
            profile::end(start, own_done);
        }
        if shared.panicked.load(Ordering::Acquire) {
            panic!("a piece of a parallel region panicked");
        }
    });
}

/// Where a training thread's time goes around its parallel regions, when the environment sets
/// `MNIST_LAB_REGIONS` (a measuring aid; see docs/speed.md): the time it spends in its own
/// pieces, waiting for its helpers' pieces, and alone between two regions — the serial part of
/// a step, which no helper shares — added up by the call site of the region that ends it.
pub mod profile {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::panic::Location;
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    /// One thread's sums.
    #[derive(Default)]
    struct Sums {
        regions: u64,
        pieces: Duration,
        waiting: Duration,
        alone: HashMap<(&'static str, u32), Duration>,
        last_end: Option<Instant>,
    }

    thread_local! {
        static SUMS: RefCell<Sums> = RefCell::new(Sums::default());
    }

    /// Whether `MNIST_LAB_REGIONS` is set.
    pub fn enabled() -> bool {
        static ON: OnceLock<bool> = OnceLock::new();
        *ON.get_or_init(|| std::env::var_os("MNIST_LAB_REGIONS").is_some())
    }

    /// A region starts at `site`: the time alone since the last one ended goes to `site`.
    pub(super) fn start(site: &'static Location<'static>) -> Option<Instant> {
        enabled().then(|| note_start(site))
    }

    /// [`start`]'s bookkeeping.
    fn note_start(site: &'static Location<'static>) -> Instant {
        let now = Instant::now();
        SUMS.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(last) = s.last_end {
                *s.alone.entry((site.file(), site.line())).or_default() += now - last;
            }
        });
        now
    }

    /// A region that started at `start` ends now; the calling thread finished its own pieces
    /// at `own_done`.
    pub(super) fn end(start: Instant, own_done: Instant) {
        let now = Instant::now();
        SUMS.with(|s| {
            let mut s = s.borrow_mut();
            s.regions += 1;
            s.pieces += own_done - start;
            s.waiting += now - own_done;
            s.last_end = Some(now);
        });
    }

    /// This thread's sums so far, as text, the `top` sites with the most time alone first; and
    /// starts them again. Empty when not enabled or no region ran.
    pub fn take_report(top: usize) -> String {
        match enabled() {
            true => report(top),
            false => String::new(),
        }
    }

    /// [`take_report`] whether or not enabled.
    fn report(top: usize) -> String {
        let s = SUMS.with(|s| std::mem::take(&mut *s.borrow_mut()));
        if s.regions == 0 {
            return String::new();
        }
        let alone: Duration = s.alone.values().sum();
        let mut sites: Vec<_> = s.alone.into_iter().collect();
        sites.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut out = format!(
            "{} parallel regions: {:.3} s in the calling thread's own pieces, {:.3} s waiting \
             for helpers' pieces, {:.3} s alone between regions, before:\n",
            s.regions,
            s.pieces.as_secs_f64(),
            s.waiting.as_secs_f64(),
            alone.as_secs_f64()
        );
        for ((file, line), t) in sites.into_iter().take(top) {
            out += &format!("  {:>8.3} s  {file}:{line}\n", t.as_secs_f64());
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The environment variable is read once per process, so this drives the bookkeeping
        /// itself, on a thread of its own (the sums are per thread).
        #[test]
        fn time_alone_between_regions_goes_to_the_site_of_the_region_that_ends_it() {
            std::thread::spawn(|| {
                let first = Location::caller();
                let second = Location::caller();
                let t = note_start(first);
                end(t, t);
                std::thread::sleep(Duration::from_millis(30));
                let t = note_start(second);
                end(t, t + Duration::from_millis(1));
                let text = report(5);
                assert!(text.starts_with("2 parallel regions:"), "{text}");
                let line = text.lines().nth(1).expect("one site");
                let secs: f64 = line.split_whitespace().next().unwrap().parse().unwrap();
                assert!(secs >= 0.03, "{text}");
                assert!(line.ends_with(&format!("{}:{}", second.file(), second.line())));
                assert_eq!(
                    text.lines().count(),
                    2,
                    "nothing before the first region: {text}"
                );
                assert_eq!(report(5), "", "a report starts the sums again");
            })
            .join()
            .unwrap();
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
        // Fewer pieces than helpers: each piece still runs once.
        let count = AtomicU64::new(0);
        run(2, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }

    /// A region's pieces as a thread claims them when no helper is on a core: the caller
    /// alone takes every piece; a thread that saw an earlier region claims none of this one.
    #[test]
    fn a_caller_whose_helpers_are_away_runs_every_piece_itself() {
        let shared = Shared {
            state: AtomicU64::new(pack(7, u32::MAX)),
            finished: AtomicUsize::new(0),
            pieces: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            job: UnsafeCell::new(None),
        };
        let order = std::sync::Mutex::new(Vec::new());
        let f = |i: usize| order.lock().unwrap().push(i);
        let f: &(dyn Fn(usize) + Sync) = &f;
        // SAFETY: no other thread sees `shared`; `f` outlives every use below.
        unsafe { *shared.job.get() = Some(erase(f)) };
        shared.state.store(pack(8, unclaimed(4)), Ordering::Release);
        assert_eq!(shared.work(7, 0), 0, "a stale generation claims nothing");
        assert_eq!(shared.work(8, 2), 4);
        assert_eq!(shared.finished.load(Ordering::Acquire), 4);
        // Its own piece first, then the others in order.
        assert_eq!(*order.lock().unwrap(), vec![2, 0, 1, 3]);
        assert_eq!(shared.work(8, 0), 0, "nothing is left to claim");
        // A piece that panics is counted finished and reported.
        let g = |i: usize| assert!(i != 1, "piece 1 fails");
        let g: &(dyn Fn(usize) + Sync) = &g;
        // SAFETY: as above.
        unsafe { *shared.job.get() = Some(erase(g)) };
        shared.finished.store(0, Ordering::Relaxed);
        shared.state.store(pack(9, unclaimed(3)), Ordering::Release);
        assert_eq!(shared.work(9, 0), 3);
        assert!(shared.panicked.load(Ordering::Acquire));
    }
}
