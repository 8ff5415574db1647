//! Statistics on fold scores: mean and population std (as the seed's numpy), the Nadeau–Bengio
//! corrected resampled paired t-test between experiments on shared folds, and Welch's test when
//! folds are not shared. Scores are in percent.

use anyhow::{bail, Result};
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::results::csv::FoldRow;

/// Mean and population standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    (
        mean,
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt(),
    )
}

/// Fold accuracies in percent.
pub fn fold_percents(folds: &[FoldRow]) -> Vec<f64> {
    folds.iter().map(|r| r.val_acc * 100.0).collect()
}

/// Mean and population standard deviation of fold accuracies, in percent.
pub fn fold_mean_std(folds: &[FoldRow]) -> (f64, f64) {
    mean_std(&fold_percents(folds))
}

/// Outcome of comparing a candidate with a reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Mean difference candidate − reference (percentage points).
    pub delta: f64,
    /// 95% confidence interval of the difference.
    pub ci: (f64, f64),
    /// Two-sided p-value.
    pub p: f64,
    /// Degrees of freedom of the t distribution used.
    pub df: f64,
    /// Whether the test was paired by fold (else Welch).
    pub paired: bool,
}

/// What a comparison lets us say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The CI lies above zero.
    Better,
    /// The CI lies below zero.
    Worse,
    /// The CI contains zero.
    NoDifference,
}

impl Verdict {
    /// The words the report and `diff` print.
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::NoDifference => "no detectable difference",
        }
    }
}

impl Comparison {
    /// Better / worse only when the 95% CI excludes zero.
    pub fn verdict(&self) -> Verdict {
        if self.ci.0 > 0.0 {
            Verdict::Better
        } else if self.ci.1 < 0.0 {
            Verdict::Worse
        } else {
            Verdict::NoDifference
        }
    }
}

fn t_test(delta: f64, se: f64, df: f64, paired: bool) -> Comparison {
    if se == 0.0 || !se.is_finite() {
        // No spread at all: the difference is exact.
        let p = if delta == 0.0 { 1.0 } else { 0.0 };
        return Comparison {
            delta,
            ci: (delta, delta),
            p,
            df,
            paired,
        };
    }
    let dist = StudentsT::new(0.0, 1.0, df).expect("df > 0");
    let t = delta / se;
    let p = (2.0 * (1.0 - dist.cdf(t.abs()))).clamp(0.0, 1.0);
    let q = dist.inverse_cdf(0.975);
    Comparison {
        delta,
        ci: (delta - q * se, delta + q * se),
        p,
        df,
        paired,
    }
}

/// Nadeau–Bengio corrected resampled t-test on per-fold differences of k-fold CV:
/// t = d̄ / sqrt((1/k + n_test/n_train)·s_d²), k − 1 degrees of freedom; for k-fold,
/// n_test/n_train = 1/(k − 1).
pub fn corrected_paired(candidate: &[f64], reference: &[f64]) -> Result<Comparison> {
    if candidate.len() != reference.len() || candidate.len() < 2 {
        bail!("a paired test needs the same number (≥ 2) of folds on both sides");
    }
    let k = candidate.len() as f64;
    let d: Vec<f64> = candidate
        .iter()
        .zip(reference)
        .map(|(a, b)| a - b)
        .collect();
    let mean = d.iter().sum::<f64>() / k;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0);
    let se = ((1.0 / k + 1.0 / (k - 1.0)) * var).sqrt();
    Ok(t_test(mean, se, k - 1.0, true))
}

/// Welch's unpaired t-test (for scores not measured on the same folds).
pub fn welch(candidate: &[f64], reference: &[f64]) -> Result<Comparison> {
    if candidate.len() < 2 || reference.len() < 2 {
        bail!("Welch's test needs at least 2 scores on each side");
    }
    let var = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        (
            m,
            v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0),
        )
    };
    let ((m1, v1), (m2, v2)) = (var(candidate), var(reference));
    let (a, b) = (v1 / candidate.len() as f64, v2 / reference.len() as f64);
    let se = (a + b).sqrt();
    let df = if a + b == 0.0 {
        (candidate.len() + reference.len() - 2) as f64
    } else {
        (a + b).powi(2)
            / (a * a / (candidate.len() as f64 - 1.0) + b * b / (reference.len() as f64 - 1.0))
    };
    Ok(t_test(m1 - m2, se, df, false))
}

/// Compares two experiments' fold scores: paired by fold when both used the same split and
/// the same folds, else Welch. `require_shared` refuses differing splits instead.
pub fn compare(
    candidate: &[FoldRow],
    reference: &[FoldRow],
    require_shared: bool,
) -> Result<Comparison> {
    let split = |f: &[FoldRow]| {
        let mut s: Vec<&str> = f.iter().map(|r| r.split.as_str()).collect();
        s.dedup();
        s.join("+")
    };
    let same_folds = candidate
        .iter()
        .map(|r| r.fold)
        .eq(reference.iter().map(|r| r.fold));
    let shared = split(candidate) == split(reference) && same_folds;
    if shared {
        corrected_paired(&fold_percents(candidate), &fold_percents(reference))
    } else if require_shared {
        bail!(
            "the fold splits differ (split {} with folds {:?} vs split {} with folds {:?}); a paired comparison needs the same [cv] folds, seed and data",
            split(candidate),
            candidate.iter().map(|r| r.fold).collect::<Vec<_>>(),
            split(reference),
            reference.iter().map(|r| r.fold).collect::<Vec<_>>()
        )
    } else {
        welch(&fold_percents(candidate), &fold_percents(reference))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values computed independently with scipy 1.17.1:
    //   d = a - b; k = 5; se = sqrt((1/k + 1/(k-1)) * d.var(ddof=1)); t = d.mean()/se
    //   p = 2*stats.t.sf(abs(t), k-1); ci = d.mean() ± stats.t.ppf(0.975, k-1)*se
    const A: [f64; 5] = [99.058, 99.150, 98.983, 99.108, 99.008];
    const B: [f64; 5] = [98.675, 98.633, 98.750, 98.592, 98.692];

    #[test]
    fn corrected_paired_t_matches_scipy() {
        let c = corrected_paired(&A, &B).unwrap();
        assert!((c.delta - 0.393).abs() < 1e-9, "{}", c.delta);
        // scipy: se = 0.0836067, t = 4.700582, p = 0.00930439, CI = [0.160871, 0.625129]
        assert!((c.p - 0.009304389).abs() < 1e-7, "p {}", c.p);
        assert!(
            (c.ci.0 - 0.160871).abs() < 1e-5 && (c.ci.1 - 0.625129).abs() < 1e-5,
            "{:?}",
            c.ci
        );
        assert_eq!(c.verdict(), Verdict::Better);
        assert_eq!(corrected_paired(&B, &A).unwrap().verdict(), Verdict::Worse);
    }

    #[test]
    fn welch_matches_scipy() {
        // stats.ttest_ind(A, B, equal_var=False): t = 9.619706, p = 1.2945074e-05, df = 7.845649
        let c = welch(&A, &B).unwrap();
        assert!((c.df - 7.845649).abs() < 1e-5, "df {}", c.df);
        assert!((c.p - 1.2945074e-05).abs() < 1e-10, "p {}", c.p);
        assert!(!c.paired);
    }

    #[test]
    fn mean_and_population_std_in_percent() {
        let f = |a| FoldRow {
            fold: 1,
            val_acc: a,
            val_loss: 0.0,
            split: String::new(),
        };
        let (m, s) = fold_mean_std(&[f(0.98), f(0.99)]);
        assert!((m - 98.5).abs() < 1e-9 && (s - 0.5).abs() < 1e-9);
    }

    #[test]
    fn identical_scores_are_no_difference() {
        let c = corrected_paired(&B, &B).unwrap();
        assert_eq!((c.delta, c.p), (0.0, 1.0));
        assert_eq!(c.verdict(), Verdict::NoDifference);
    }

    #[test]
    fn differing_splits_are_refused_when_pairing_is_required() {
        let rows = |split: &str| {
            (1..=3)
                .map(|f| FoldRow {
                    fold: f,
                    val_acc: 0.9 + f as f64 * 0.01,
                    val_loss: 0.1,
                    split: split.into(),
                })
                .collect::<Vec<_>>()
        };
        let e = compare(&rows("aaaa"), &rows("bbbb"), true).unwrap_err();
        assert!(format!("{e}").contains("fold splits differ"));
        assert!(!compare(&rows("aaaa"), &rows("bbbb"), false).unwrap().paired);
        assert!(compare(&rows("aaaa"), &rows("aaaa"), true).unwrap().paired);
    }
}
