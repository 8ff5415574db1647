//! The seeded k-fold split: which images each fold holds out. Every experiment with the same
//! `[cv]` settings on the same data shares it, so fold scores pair across experiments.

use sha2::{Digest, Sha256};

use crate::rng::Rng;

/// Which images are held out in each fold.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldSplit {
    /// Held-out image indices of each fold (0-based fold), ascending.
    pub test: Vec<Vec<usize>>,
    /// Number of images split.
    pub n: usize,
    /// Short hash of the assignment: equal hashes mean identical folds.
    pub hash: String,
}

impl FoldSplit {
    /// Shuffles 0..n once with `seed` and cuts it into `k` folds, the first n % k one larger
    /// (scikit-learn's KFold(shuffle=True) layout).
    pub fn new(n: usize, k: usize, seed: u64) -> Self {
        let mut order: Vec<usize> = (0..n).collect();
        Rng::new(seed, 0x5EED_F01D).shuffle(&mut order);
        let mut test = Vec::with_capacity(k);
        let mut start = 0;
        for f in 0..k {
            let size = n / k + usize::from(f < n % k);
            let mut fold = order[start..start + size].to_vec();
            fold.sort_unstable();
            test.push(fold);
            start += size;
        }
        let mut h = Sha256::new();
        h.update((n as u64).to_le_bytes());
        for fold in &test {
            h.update((fold.len() as u64).to_le_bytes());
            for &i in fold {
                h.update((i as u32).to_le_bytes());
            }
        }
        let hash = format!("{:x}", h.finalize())[..16].to_string();
        FoldSplit { test, n, hash }
    }

    /// Training indices of 0-based `fold`: every image not held out, ascending.
    pub fn train(&self, fold: usize) -> Vec<usize> {
        let mut held = vec![false; self.n];
        for &i in &self.test[fold] {
            held[i] = true;
        }
        (0..self.n).filter(|&i| !held[i]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_a_seeded_partition_with_sklearn_sizes() {
        let s = FoldSplit::new(103, 5, 1);
        let sizes: Vec<usize> = s.test.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![21, 21, 21, 20, 20]);
        let mut all: Vec<usize> = s.test.concat();
        all.sort_unstable();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        for f in 0..5 {
            let train = s.train(f);
            assert_eq!(train.len() + s.test[f].len(), 103);
            assert!(train.iter().all(|i| s.test[f].binary_search(i).is_err()));
        }
        assert_eq!(s, FoldSplit::new(103, 5, 1));
        assert_ne!(s.hash, FoldSplit::new(103, 5, 2).hash);
        assert_ne!(s.hash, FoldSplit::new(103, 4, 1).hash);
    }
}
