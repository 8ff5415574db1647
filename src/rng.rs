//! A small, seedable, platform-independent PRNG (SplitMix64 seeding a xoshiro256**).
//!
//! Our own so that weight init, fold splits and batch order never change when a dependency
//! updates its random-number algorithm: same seed, same numbers, forever.

/// Deterministic random-number generator used for init, shuffles and splits.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator for `seed`, with `stream` separating independent uses of the same seed.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut st = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let s = [
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
        ];
        Rng { s }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// The state after one step (xoshiro256**'s transition, without its output).
    fn step(s: [u64; 4]) -> [u64; 4] {
        let mut r = Rng { s };
        r.next_u64();
        r.s
    }

    /// Moves the generator `n` draws ahead, as `n` calls of [`Rng::next_u64`] would, in
    /// O(log n) steps: the transition is linear over GF(2), so its n-th power is a product of
    /// the precomputed powers T^(2^k) for the bits of n (see [`Jumps`]). This is what lets a
    /// long draw (a dropout mask) be cut into pieces for threads that each start where the
    /// sequential stream would be, and so draw the same numbers.
    pub fn advance(&mut self, n: u64) {
        if n < 512 {
            (0..n).for_each(|_| self.s = Self::step(self.s));
            return;
        }
        let jumps = Jumps::get();
        for (k, m) in jumps.powers.iter().enumerate() {
            if n >> k & 1 == 1 {
                self.s = m.apply(self.s);
            }
        }
    }

    /// Uniform in [0, 1) with 24 bits of precision (exact in f32).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in [-limit, limit).
    pub fn uniform(&mut self, limit: f32) -> f32 {
        (self.next_f32() * 2.0 - 1.0) * limit
    }

    /// Uniform integer in [0, n) without modulo bias.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0);
        let n = n as u64;
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return (v % n) as usize;
            }
        }
    }

    /// Fisher–Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// A linear map on the generator's 256 bits of state, as the images of the 256 unit states.
#[derive(Clone)]
struct Linear {
    columns: Vec<[u64; 4]>,
}

impl Linear {
    /// The transition of one draw.
    fn step() -> Self {
        let columns = (0..256)
            .map(|j| {
                let mut e = [0u64; 4];
                e[j / 64] = 1 << (j % 64);
                Rng::step(e)
            })
            .collect();
        Linear { columns }
    }

    /// The image of `s`: the columns of its set bits, added (XOR).
    fn apply(&self, s: [u64; 4]) -> [u64; 4] {
        let mut out = [0u64; 4];
        for (w, &word) in s.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let c = &self.columns[w * 64 + bits.trailing_zeros() as usize];
                for (o, c) in out.iter_mut().zip(c) {
                    *o ^= c;
                }
                bits &= bits - 1;
            }
        }
        out
    }

    /// This map applied twice.
    fn squared(&self) -> Self {
        Linear {
            columns: self.columns.iter().map(|&c| self.apply(c)).collect(),
        }
    }
}

/// The transition's powers T^(2^k), k < 64, computed once per process (a few milliseconds).
struct Jumps {
    powers: Vec<Linear>,
}

impl Jumps {
    fn get() -> &'static Jumps {
        static JUMPS: std::sync::OnceLock<Jumps> = std::sync::OnceLock::new();
        JUMPS.get_or_init(|| {
            let mut powers = vec![Linear::step()];
            while powers.len() < 64 {
                let next = powers.last().expect("one power").squared();
                powers.push(next);
            }
            Jumps { powers }
        })
    }
}

/// Which training run of an experiment a random stream belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// Cross-validation fold (1-based).
    Fold(usize),
    /// The final model, trained on all training images.
    Final,
}

/// The random streams of one training run, all derived from the experiment's seed and the run
/// (and, for those drawn anew each epoch, the epoch): never from threads or timing.
#[derive(Debug, Clone, Copy)]
pub struct Streams {
    seed: u64,
    run: Run,
}

impl Streams {
    /// The streams of `run` under the experiment's `seed`.
    pub fn new(seed: u64, run: Run) -> Self {
        Streams { seed, run }
    }

    /// Initial weights.
    pub fn init(&self) -> Rng {
        match self.run {
            Run::Fold(k) => Rng::new(self.seed, 1000 + k as u64),
            Run::Final => Rng::new(self.seed, 3000),
        }
    }

    /// Batch order (one stream for all epochs).
    pub fn shuffle(&self) -> Rng {
        match self.run {
            Run::Fold(k) => Rng::new(self.seed, 2000 + k as u64),
            Run::Final => Rng::new(self.seed, 3001),
        }
    }

    /// What layers draw in training mode during `epoch` (dropout masks).
    pub fn layers(&self, epoch: usize) -> Rng {
        Rng::new(self.seed, self.per_epoch(1, epoch))
    }

    /// What the training-batch transforms draw during `epoch` (augmentation).
    pub fn transforms(&self, epoch: usize) -> Rng {
        Rng::new(self.seed, self.per_epoch(2, epoch))
    }

    /// A stream id of its own for (`purpose`, run, epoch), far above the fixed ones.
    fn per_epoch(&self, purpose: u64, epoch: usize) -> u64 {
        let run = match self.run {
            Run::Fold(k) => k as u64,
            Run::Final => 0xF_FFFF,
        };
        (purpose << 44) | (run << 24) | epoch as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_n_draws_at_once_is_drawing_them_one_by_one() {
        for n in [0u64, 1, 7, 511, 512, 513, 1000, 4096, 65_537, 300_001] {
            let (mut a, mut b) = (Rng::new(5, n), Rng::new(5, n));
            for _ in 0..n {
                a.next_u64();
            }
            b.advance(n);
            assert_eq!(a.s, b.s, "after {n} draws");
            assert_eq!(a.next_u64(), b.next_u64());
        }
        // A jump far past anything drawn one by one: 2^40 + 3 draws as 2^40 then 3.
        let (mut a, mut b) = (Rng::new(9, 9), Rng::new(9, 9));
        a.advance(1 << 40);
        a.advance(3);
        b.advance((1 << 40) + 3);
        assert_eq!(a.s, b.s);
    }

    #[test]
    fn same_seed_gives_same_sequence_and_streams_differ() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(1, 0);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(1, 0);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(1, 1);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn uniform_stays_in_range_and_shuffle_is_a_permutation() {
        let mut r = Rng::new(7, 0);
        for _ in 0..10_000 {
            let v = r.uniform(0.5);
            assert!((-0.5..0.5).contains(&v));
        }
        let mut v: Vec<usize> = (0..100).collect();
        r.shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
