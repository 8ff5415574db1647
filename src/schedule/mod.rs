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
    /// Checks the settings against the run's length in epochs (a setting that would be
    /// clamped to the run is refused, not silently shortened).
    fn validate_for(&self, _epochs: usize) -> Result<(), String> {
        Ok(())
    }
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

    fn parse(toml: &str) -> ScheduleSpec {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn one_cycle_matches_pytorch() {
        // torch.optim.lr_scheduler.OneCycleLR(SGD([p], lr=0.01), max_lr=0.01, total_steps=20)
        // (defaults: pct_start 0.3, cos, div_factor 25, final_div_factor 1e4), the rate read
        // before each scheduler.step(), torch 2.15.
        let want = [
            0.0004,
            0.00131671843,
            0.00371671843,
            0.00668328157,
            0.00908328157,
            0.01,
            0.00987464006,
            0.00950484632,
            0.00890916178,
            0.00811745654,
            0.00716943002,
            0.00611262022,
            0.00500002,
            0.00388741978,
            0.00283060998,
            0.00188258346,
            0.00109087822,
            0.00049519368,
            0.000125399938,
            4e-08,
        ];
        close(&rates(&parse("[onecycle]"), 0.01, 4, 5), &want);
    }

    #[test]
    fn cosine_with_warmup_matches_keras() {
        // keras.optimizers.schedules.CosineDecay(0.0, decay_steps=12, alpha=0.1,
        // warmup_target=0.01, warmup_steps=4) at steps 0..16, Keras 3.15.1: here 4 epochs of 4
        // batches, one warm-up epoch.
        let want = [
            0.0,
            0.00249999994,
            0.00499999989,
            0.00749999983,
            0.00999999978,
            0.0098466659,
            0.00939711463,
            0.00868198089,
            0.00774999941,
            0.0066646859,
            0.0054999995,
            0.00433531404,
            0.0032499996,
            0.00231801951,
            0.00160288566,
            0.00115333358,
        ];
        close(
            &rates(&parse("[cosine]\nwarmup = 1\nalpha = 0.1"), 0.01, 4, 4),
            &want,
        );
    }

    #[test]
    fn exponential_and_step_match_keras_exponential_decay() {
        // ExponentialDecay(0.01, decay_steps=4, decay_rate=0.5): 4 batches an epoch.
        let want = [
            0.00999999978,
            0.00840896368,
            0.00707106758,
            0.00594603503,
            0.00499999989,
            0.00420448184,
            0.00353553379,
            0.00297301752,
            0.00249999994,
            0.00210224092,
        ];
        let got = rates(&parse("[exponential]\nrate = 0.5"), 0.01, 3, 4);
        close(&got[..10], &want);
        // ExponentialDecay(0.01, decay_steps=8, decay_rate=0.5, staircase=True): every 2
        // epochs of 4 batches, Keras 3.15.1.
        let got = rates(&parse("[step]\nevery = 2\nfactor = 0.5"), 0.01, 5, 4);
        let want = [[0.00999999978; 8], [0.00499999989; 8], [0.00249999994; 8]].concat();
        close(&got, &want[..20]);
    }

    #[test]
    fn kinds_and_defaults_are_listed() {
        assert_eq!(
            ScheduleSpec::KINDS,
            ["step", "exponential", "cosine", "onecycle"]
        );
        for k in ScheduleSpec::KINDS {
            assert!(ScheduleSpec::defaults(k).unwrap().spec().validate().is_ok());
        }
    }
}
