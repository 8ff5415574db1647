//! Where a search stands and what it runs next, decided from scores alone.
//!
//! A search is a plan of (variant, fold, epochs) jobs with barriers. Successive halving trains
//! every variant's rung folds (fold 1 unless declared) to the first rung's epochs; once every
//! job of the rung is done, the best ⌈n/η⌉ by validation accuracy at that epoch (the mean over
//! the rung folds; ties broken by name) go on to the next rung's epochs, from where they
//! stopped, and the rest stop. The last rung is the full length; its best ⌈n/η⌉ are the
//! finalists, whose cross-validation is completed. Racing completes the folds one at a time:
//! once every running variant has finished fold k (k ≥ `after`), a variant whose corrected
//! paired t-test against the leader (the best mean so far) is significantly negative stops.
//!
//! [`state`] is a pure function of the rows each (variant, fold) has on disk, so the decisions
//! and the files are the same whatever the number of workers, the interruptions or the machine;
//! the scheduler only runs the jobs it lists.

use std::collections::BTreeMap;

use crate::experiment::search::SearchGroup;
use crate::results::stats::corrected_paired;

/// What a variant of a search has come to.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Still in the running: a rung or fold of it is to be trained or decided.
    Running,
    /// Stopped by halving at a rung (0-based), after training to `epochs`.
    Stopped { rung: usize, epochs: usize },
    /// Stopped by the race after fold `fold`, with the paired test's p-value.
    RacedOut { fold: usize, p: f64 },
    /// Cross-validated in full.
    Survivor,
}

impl Status {
    /// The words of the report's table.
    pub fn words(&self) -> String {
        match self {
            Status::Running => "running".into(),
            Status::Stopped { rung, epochs } => format!(
                "stopped at rung {} ({epochs} epoch{})",
                rung + 1,
                if *epochs == 1 { "" } else { "s" }
            ),
            Status::RacedOut { fold, p } => format!("raced out after fold {fold} (p = {p:.3})"),
            Status::Survivor => "survivor".into(),
        }
    }
}

/// One job of a search: train `fold` of `variant` up to epoch `until`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Need {
    /// The variant's name.
    pub variant: String,
    /// 1-based fold.
    pub fold: usize,
    /// The epoch to train up to.
    pub until: usize,
}

/// A variant's place in the search.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantState {
    /// Its name.
    pub name: String,
    /// Its validation accuracy at each rung it reached (the mean over the rung folds).
    pub rung_acc: Vec<f64>,
    /// What it came to.
    pub status: Status,
}

/// Where a search stands.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchState {
    /// The epochs of each rung (halving), the last one the full length.
    pub rungs: Vec<usize>,
    /// Every variant, in name order.
    pub variants: Vec<VariantState>,
    /// The jobs that can run now (all of one rung, or one fold of the race), in order.
    pub runnable: Vec<Need>,
}

impl SearchState {
    /// Whether nothing is left to train or decide.
    pub fn done(&self) -> bool {
        self.runnable.is_empty()
    }
}

/// The rungs' epochs: `min_epochs`, times η (rounded up) each rung, up to `epochs`.
pub fn rungs(min_epochs: usize, eta: f64, epochs: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut e = min_epochs.min(epochs);
    loop {
        out.push(e);
        if e >= epochs {
            return out;
        }
        e = ((e as f64 * eta).ceil() as usize).clamp(e + 1, epochs);
    }
}

/// The most fold-epochs the search `group` can train, for variants of `epochs` epochs and
/// `folds` folds: every rung in full, then every finalist's cross-validation (a race can only
/// train less). Without pruning: variants × folds × epochs.
pub fn worst_fold_epochs(group: &SearchGroup, epochs: usize, folds: usize) -> usize {
    let mut n = group.variants.len();
    let Some(h) = &group.halving else {
        return n * folds * epochs;
    };
    let (mut total, mut trained) = (0, 0);
    for e in rungs(h.min_epochs, h.eta, epochs) {
        total += n * (e - trained) * h.folds.len();
        trained = e;
        n = keep(n, h.eta);
    }
    total + n * (folds - h.folds.len()) * epochs
}

/// How many of `n` go on: ⌈n/η⌉.
fn keep(n: usize, eta: f64) -> usize {
    ((n as f64 / eta).ceil() as usize).clamp(1, n.max(1))
}

/// Where the search `group` stands, for variants that train `epochs` epochs over `folds` folds,
/// given `acc(variant, fold)`: the validation accuracy after each epoch trained so far (a
/// prefix of the full run; the full run when that fold is done).
pub fn state(
    group: &SearchGroup,
    epochs: usize,
    folds: usize,
    acc: &dyn Fn(&str, usize) -> Vec<f64>,
) -> SearchState {
    let mut variants: BTreeMap<String, VariantState> = group
        .variants
        .iter()
        .map(|n| {
            (
                n.clone(),
                VariantState {
                    name: n.clone(),
                    rung_acc: Vec::new(),
                    status: Status::Running,
                },
            )
        })
        .collect();
    let finish = |variants: BTreeMap<String, VariantState>, rungs, runnable| SearchState {
        rungs,
        variants: variants.into_values().collect(),
        runnable,
    };
    let mut alive: Vec<String> = group.variants.clone();
    let mut rung_epochs = Vec::new();
    if let Some(h) = &group.halving {
        rung_epochs = rungs(h.min_epochs, h.eta, epochs);
        for (r, &e) in rung_epochs.iter().enumerate() {
            let runnable: Vec<Need> = alive
                .iter()
                .flat_map(|v| h.folds.iter().map(move |&f| (v, f)))
                .filter(|(v, f)| acc(v, *f).len() < e)
                .map(|(v, f)| Need {
                    variant: v.clone(),
                    fold: f,
                    until: e,
                })
                .collect();
            if !runnable.is_empty() {
                return finish(variants, rung_epochs, runnable);
            }
            let mut scored: Vec<(f64, String)> = alive
                .iter()
                .map(|v| {
                    let mean = h.folds.iter().map(|&f| acc(v, f)[e - 1]).sum::<f64>()
                        / h.folds.len() as f64;
                    (mean, v.clone())
                })
                .collect();
            for (mean, v) in &scored {
                variants.get_mut(v).expect("a variant").rung_acc.push(*mean);
            }
            // Best first; ties by name.
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            let kept = keep(scored.len(), h.eta);
            for (_, v) in &scored[kept..] {
                variants.get_mut(v).expect("a variant").status =
                    Status::Stopped { rung: r, epochs: e };
            }
            alive = scored[..kept].iter().map(|(_, v)| v.clone()).collect();
            alive.sort();
        }
    }
    // The finalists' cross-validation, fold by fold (raced or not).
    for fold in 1..=folds {
        let runnable: Vec<Need> = alive
            .iter()
            .filter(|v| acc(v, fold).len() < epochs)
            .map(|v| Need {
                variant: v.clone(),
                fold,
                until: epochs,
            })
            .collect();
        // Without a race every fold can train at once; a race waits for each fold.
        if group.race.is_none() {
            let all: Vec<Need> = (fold..=folds)
                .flat_map(|f| {
                    alive
                        .iter()
                        .filter(move |v| acc(v, f).len() < epochs)
                        .map(move |v| Need {
                            variant: v.clone(),
                            fold: f,
                            until: epochs,
                        })
                })
                .collect();
            if !all.is_empty() {
                return finish(variants, rung_epochs, all);
            }
            break;
        }
        if !runnable.is_empty() {
            return finish(variants, rung_epochs, runnable);
        }
        let race = group.race.as_ref().expect("a race");
        if fold < race.after || fold == folds || alive.len() < 2 {
            continue;
        }
        let scores =
            |v: &str| -> Vec<f64> { (1..=fold).map(|f| acc(v, f)[epochs - 1] * 100.0).collect() };
        let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
        let leader = alive
            .iter()
            .max_by(|a, b| {
                mean(&scores(a))
                    .total_cmp(&mean(&scores(b)))
                    .then_with(|| b.cmp(a))
            })
            .expect("a variant")
            .clone();
        let lead = scores(&leader);
        let mut still = Vec::new();
        for v in &alive {
            let out = (*v != leader)
                .then(|| corrected_paired(&scores(v), &lead).ok())
                .flatten()
                .filter(|c| c.delta < 0.0 && c.p < race.alpha);
            match out {
                Some(c) => {
                    variants.get_mut(v).expect("a variant").status =
                        Status::RacedOut { fold, p: c.p }
                }
                None => still.push(v.clone()),
            }
        }
        alive = still;
    }
    for v in &alive {
        variants.get_mut(v).expect("a variant").status = Status::Survivor;
    }
    finish(variants, rung_epochs, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::search::{Halving, Race};

    fn group(n: usize, halving: Option<Halving>, race: Option<Race>) -> SearchGroup {
        SearchGroup {
            name: "s".into(),
            variants: (0..n).map(|i| format!("s-v={i:02}")).collect(),
            halving,
            race,
            space: BTreeMap::new(),
        }
    }

    /// Accuracy of variant `v` (its number) on `fold` after epoch `e`: higher numbers learn
    /// faster, so the pruning must keep the highest.
    fn curve(v: &str, fold: usize, e: usize) -> f64 {
        let i: f64 = v.rsplit('=').next().unwrap().parse().unwrap();
        0.5 + 0.4 * (1.0 - (-(e as f64) * (0.05 + 0.01 * i)).exp()) + 0.001 * fold as f64
    }

    /// Runs a search to its end, training whatever it lists; returns the state and every job.
    fn run(g: &SearchGroup, epochs: usize, folds: usize) -> (SearchState, Vec<Need>) {
        let trained = std::cell::RefCell::new(BTreeMap::<(String, usize), usize>::new());
        let mut jobs = Vec::new();
        loop {
            let acc = |v: &str, f: usize| -> Vec<f64> {
                let n = trained
                    .borrow()
                    .get(&(v.to_string(), f))
                    .copied()
                    .unwrap_or(0);
                (1..=n).map(|e| curve(v, f, e)).collect()
            };
            let s = state(g, epochs, folds, &acc);
            if s.done() {
                return (s, jobs);
            }
            for need in &s.runnable {
                trained
                    .borrow_mut()
                    .insert((need.variant.clone(), need.fold), need.until);
            }
            jobs.extend(s.runnable);
        }
    }

    #[test]
    fn rungs_multiply_by_eta_up_to_the_full_length() {
        assert_eq!(rungs(2, 3.0, 12), [2, 6, 12]);
        assert_eq!(rungs(2, 3.0, 18), [2, 6, 18]);
        assert_eq!(rungs(1, 2.0, 5), [1, 2, 4, 5]);
        assert_eq!(rungs(5, 3.0, 5), [5]);
        assert_eq!(rungs(2, 1.2, 4), [2, 3, 4]);
    }

    #[test]
    fn halving_keeps_the_best_third_each_rung_then_cross_validates_the_finalist() {
        let h = Halving {
            min_epochs: 2,
            eta: 3.0,
            folds: vec![1],
        };
        let (s, jobs) = run(&group(27, Some(h), None), 12, 5);
        assert_eq!(s.rungs, [2, 6, 12]);
        let rung_jobs: Vec<usize> = [2, 6, 12]
            .iter()
            .map(|&e| jobs.iter().filter(|j| j.until == e && j.fold == 1).count())
            .collect();
        assert_eq!(rung_jobs, [27, 9, 3]);
        // The finalist is the fastest learner, cross-validated on folds 2..5.
        let survivors: Vec<&str> = s
            .variants
            .iter()
            .filter(|v| v.status == Status::Survivor)
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(survivors, ["s-v=26"]);
        assert_eq!(jobs.iter().filter(|j| j.fold > 1).count(), 4);
        // 27·2 + 9·4 + 3·6 + 4·12 fold-epochs instead of 27·5·12: the worst case, reached.
        let mut reached = BTreeMap::new();
        for j in &jobs {
            let e = reached.entry((j.variant.clone(), j.fold)).or_insert(0);
            *e = j.until.max(*e);
        }
        assert_eq!(reached.values().sum::<usize>(), 156);
        assert_eq!(
            worst_fold_epochs(
                &group(
                    27,
                    Some(Halving {
                        min_epochs: 2,
                        eta: 3.0,
                        folds: vec![1]
                    }),
                    None
                ),
                12,
                5
            ),
            156
        );
        assert_eq!(
            worst_fold_epochs(&group(27, None, None), 12, 5),
            27 * 5 * 12
        );
        let stopped = s.variants.iter().find(|v| v.name == "s-v=00").unwrap();
        assert_eq!(stopped.status, Status::Stopped { rung: 0, epochs: 2 });
        assert_eq!(stopped.rung_acc.len(), 1);
    }

    #[test]
    fn ties_are_broken_by_name() {
        let g = group(
            4,
            Some(Halving {
                min_epochs: 1,
                eta: 2.0,
                folds: vec![1],
            }),
            None,
        );
        let s = state(&g, 1, 3, &|_, _| vec![0.9]);
        let stopped: Vec<&str> = s
            .variants
            .iter()
            .filter(|v| matches!(v.status, Status::Stopped { .. }))
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(stopped, ["s-v=02", "s-v=03"]);
    }

    #[test]
    fn a_race_stops_variants_significantly_behind_the_leader() {
        // Variants 0..3 far behind 4 on every fold (and consistently): raced out after fold 2.
        let g = group(
            5,
            None,
            Some(Race {
                after: 2,
                alpha: 0.05,
            }),
        );
        let acc = |v: &str, f: usize| -> Vec<f64> {
            let i: f64 = v.rsplit('=').next().unwrap().parse().unwrap();
            let a = if i == 4.0 { 0.99 } else { 0.9 + 0.01 * i };
            vec![a + 0.0001 * f as f64; 3]
        };
        let s = state(&g, 3, 5, &acc);
        assert!(s.done());
        for v in &s.variants {
            if v.name == "s-v=04" {
                assert_eq!(v.status, Status::Survivor);
            } else {
                assert!(
                    matches!(v.status, Status::RacedOut { fold: 2, p } if p < 0.05),
                    "{v:?}"
                );
            }
        }
        // Before fold 2 is done for everyone, only fold 2's jobs run.
        let partial = |v: &str, f: usize| if f == 1 { acc(v, f) } else { Vec::new() };
        let s = state(&g, 3, 5, &partial);
        assert!(s.runnable.iter().all(|n| n.fold == 2 && n.until == 3));
        assert_eq!(s.runnable.len(), 5);
    }
}
