//! `onecycle`: PyTorch's OneCycleLR (two phases, cosine annealing), per batch: from base /
//! `div_factor` up to the base rate over the first `pct_start` of the run, then down to base /
//! (`div_factor` · `final_div_factor`) at the last batch. Unlike PyTorch's, it leaves the
//! optimizer's momentum (β₁) alone.

use serde::{Deserialize, Serialize};

use super::{cos_anneal, Progress, ScheduleKind};

/// One-cycle settings (PyTorch's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OneCycleSpec {
    /// Fraction of the run spent rising.
    pub pct_start: f64,
    /// The starting rate is base / div_factor.
    pub div_factor: f64,
    /// The final rate is the starting rate / final_div_factor.
    pub final_div_factor: f64,
}

impl Default for OneCycleSpec {
    fn default() -> Self {
        OneCycleSpec {
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
        }
    }
}

impl ScheduleKind for OneCycleSpec {
    fn rate(&self, base: f64, at: Progress) -> f64 {
        let initial = base / self.div_factor;
        let min = initial / self.final_div_factor;
        // PyTorch's phase ends: step pct_start·T − 1, then T − 1.
        let up_end = self.pct_start * at.total_steps as f64 - 1.0;
        let down_end = at.total_steps as f64 - 1.0;
        let t = at.step as f64;
        if t <= up_end {
            let pct = if up_end > 0.0 { t / up_end } else { 1.0 };
            cos_anneal(initial, base, pct)
        } else {
            cos_anneal(base, min, (t - up_end) / (down_end - up_end))
        }
    }

    fn validate(&self) -> Result<(), String> {
        if !(self.pct_start > 0.0 && self.pct_start < 1.0) {
            return Err(format!(
                "pct_start is {}, expected 0 < pct_start < 1",
                self.pct_start
            ));
        }
        if !(self.div_factor >= 1.0 && self.final_div_factor >= 1.0) {
            return Err("div_factor and final_div_factor must be at least 1".into());
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("one-cycle, peak at {}%", self.pct_start * 100.0)
    }
}
