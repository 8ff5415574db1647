//! Running a search: its variants' fold jobs, the state [`super::search::state`] derives from
//! the rows on disk, the jobs that state lists, and what a decided search leaves behind (its
//! table, the stopped variants' checkpoints removed, the survivors' merged files).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Result};

use super::cache::{fold_file, trained_rows};
use super::plan::{plan_experiment, DataCache, FoldJob};
use super::search::{state, SearchState, Status};
use crate::experiment::search::SearchGroup;
use crate::experiment::Experiment;
use crate::files::{write_atomic, Paths};
use crate::results::search::{search_csv, SearchInfo, SearchRow};

/// One search of a run: its group and every variant's fold jobs (keys, data, split).
pub struct SearchRun {
    /// The search.
    pub group: Arc<SearchGroup>,
    /// Every variant's jobs, fold 1 first, by name.
    pub jobs: BTreeMap<String, Vec<FoldJob>>,
    /// Epochs of every variant.
    pub epochs: usize,
    /// Folds of every variant.
    pub folds: usize,
}

impl SearchRun {
    /// The searches among `exps` (each with every one of its variants), planned against the
    /// data.
    pub fn plan_all(
        exps: &[Experiment],
        paths: &Paths,
        data: &mut DataCache,
    ) -> Result<Vec<SearchRun>> {
        let mut runs: BTreeMap<String, SearchRun> = BTreeMap::new();
        for exp in exps {
            let Some(group) = &exp.search else { continue };
            let (_, all) = plan_experiment(exp, paths, data, None, false)?;
            let run = runs.entry(group.name.clone()).or_insert_with(|| SearchRun {
                group: group.clone(),
                jobs: BTreeMap::new(),
                epochs: exp.train.epochs,
                folds: exp.cv.folds,
            });
            run.jobs.insert(exp.name.clone(), all);
        }
        for run in runs.values() {
            if let Some(missing) = run
                .group
                .variants
                .iter()
                .find(|v| !run.jobs.contains_key(*v))
            {
                bail!(
                    "search {}: variant {missing} is not among the experiments given (name the search's file, and pick a variant with --experiment)",
                    run.group.name
                );
            }
        }
        Ok(runs.into_values().collect())
    }

    /// Where the search stands, from the rows on disk.
    pub fn state(&self, paths: &Paths) -> SearchState {
        let acc = |variant: &str, fold: usize| -> Vec<f64> {
            let job = &self.jobs[variant][fold - 1];
            let dir = paths.exp_dir(variant);
            trained_rows(&dir, fold, &job.key, self.epochs)
                .iter()
                .map(|r| r.row.val_acc)
                .collect()
        };
        state(&self.group, self.epochs, self.folds, &acc)
    }

    /// The jobs that can run now, as fold jobs (of the variant `only_exp` and the folds `only`
    /// when given), labelled with their rung.
    pub fn runnable(
        &self,
        paths: &Paths,
        only: Option<&[usize]>,
        only_exp: Option<&str>,
    ) -> Vec<FoldJob> {
        let st = self.state(paths);
        st.runnable
            .iter()
            .filter(|n| only.is_none_or(|o| o.contains(&n.fold)))
            .filter(|n| only_exp.is_none_or(|e| e == n.variant))
            .map(|n| {
                let mut job = self.jobs[&n.variant][n.fold - 1].clone();
                let dir = paths.exp_dir(&n.variant);
                let trained = trained_rows(&dir, n.fold, &job.key, self.epochs).len();
                job.cost *= (n.until - trained) as f64 / self.epochs as f64;
                job.until = n.until;
                let rung_fold = self
                    .group
                    .halving
                    .as_ref()
                    .is_some_and(|h| h.folds.contains(&n.fold));
                job.note = match st.rungs.iter().position(|&e| e == n.until) {
                    Some(r) if rung_fold => {
                        format!(" (search rung {}: to epoch {})", r + 1, n.until)
                    }
                    _ => String::new(),
                };
                job
            })
            .collect()
    }

    /// Writes `results/<search>/search.toml` and `search.csv` (see [`crate::results::search`])
    /// and removes the checkpoints of stopped variants; returns the state.
    pub fn record(&self, paths: &Paths) -> Result<SearchState> {
        let st = self.state(paths);
        let mut rows = Vec::with_capacity(st.variants.len());
        for v in &st.variants {
            let (mut folds_done, mut fold_epochs, mut epochs) = (0, 0, 0);
            for (f, job) in self.jobs[&v.name].iter().enumerate() {
                let n = trained_rows(&paths.exp_dir(&v.name), f + 1, &job.key, self.epochs).len();
                folds_done += usize::from(n == self.epochs);
                fold_epochs += n;
                epochs = epochs.max(n);
            }
            let values: Vec<String> = self.jobs[&v.name][0]
                .exp
                .values
                .iter()
                .map(|(k, v)| format!("{}={v}", k.rsplit('.').next().unwrap_or(k)))
                .collect();
            rows.push(SearchRow {
                variant: v.name.clone(),
                values: values.join(" "),
                epochs,
                folds_done,
                fold_epochs,
                rung_acc: v.rung_acc.clone(),
                status: v.status.words(),
            });
            if matches!(v.status, Status::Stopped { .. } | Status::RacedOut { .. }) {
                for f in 1..=self.folds {
                    crate::files::remove_if_present(&fold_file(
                        &paths.exp_dir(&v.name),
                        f,
                        "ckpt",
                    ))?;
                }
            }
        }
        let g = &self.group;
        let info = SearchInfo {
            name: g.name.clone(),
            variants: g.variants.len(),
            epochs: self.epochs,
            folds: self.folds,
            rungs: st.rungs.clone(),
            rung_folds: g.halving.as_ref().map_or(vec![1], |h| h.folds.clone()),
            halving: g.halving.as_ref().map(|h| {
                format!(
                    "min_epochs {}, eta {}, folds {:?}",
                    h.min_epochs, h.eta, h.folds
                )
            }),
            race: g
                .race
                .as_ref()
                .map(|r| format!("after {}, alpha {}", r.after, r.alpha)),
            fold_epochs: rows.iter().map(|r| r.fold_epochs).sum(),
            unpruned_fold_epochs: g.variants.len() * self.folds * self.epochs,
            done: st.done(),
            space: g.space.clone(),
        };
        let dir = paths.exp_dir(&g.name);
        write_atomic(&dir.join("search.toml"), toml::to_string(&info)?.as_bytes())?;
        write_atomic(&dir.join("search.csv"), search_csv(&rows).as_bytes())?;
        Ok(st)
    }
}
