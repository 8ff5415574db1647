//! `cosine`: linear warm-up from 0 to the base rate over `warmup` epochs, then cosine decay to
//! `alpha` × base at the last batch, per batch (Keras' CosineDecay with initial_learning_rate
//! 0, warmup_target = base, warmup_steps = warmup epochs, decay_steps = the rest of the run).

use serde::{Deserialize, Serialize};

use super::{cos_anneal, Progress, ScheduleKind};

/// Cosine decay settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CosineSpec {
    /// Warm-up length in epochs (may be fractional; 0: none).
    pub warmup: f64,
    /// Final rate as a fraction of the base.
    pub alpha: f64,
}

impl Default for CosineSpec {
    fn default() -> Self {
        CosineSpec {
            warmup: 0.0,
            alpha: 0.0,
        }
    }
}

impl ScheduleKind for CosineSpec {
    fn rate(&self, base: f64, at: Progress) -> f64 {
        let warm = ((self.warmup * at.steps_per_epoch as f64).round() as usize).min(at.total_steps);
        if at.step < warm {
            return base * at.step as f64 / warm as f64;
        }
        let decay = (at.total_steps - warm).max(1) as f64;
        let t = ((at.step - warm) as f64).min(decay);
        base * cos_anneal(1.0, self.alpha, t / decay)
    }

    fn validate(&self) -> Result<(), String> {
        if !(self.warmup >= 0.0 && self.warmup.is_finite()) {
            return Err(format!("warmup is {}, expected >= 0 epochs", self.warmup));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(format!("alpha is {}, expected 0 <= alpha <= 1", self.alpha));
        }
        Ok(())
    }

    fn validate_for(&self, epochs: usize) -> Result<(), String> {
        if self.warmup > epochs as f64 {
            return Err(format!(
                "warmup is {} epochs, more than the run's train.epochs ({epochs}); expected at most {epochs}",
                self.warmup
            ));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        if self.warmup > 0.0 {
            format!("cosine, {} warm-up epochs", self.warmup)
        } else {
            "cosine".into()
        }
    }
}
