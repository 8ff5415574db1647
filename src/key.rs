//! Cache keys: what a trained result (a fold's scores, a final model) is identified by, so that
//! it is reused exactly when training it again would give the same numbers.

use sha2::{Digest, Sha256};

use crate::experiment::Experiment;
use crate::rng::Run;

/// Bumped whenever a change alters what training computes (kernels, init, batching, loss), so
/// cached folds made by older code are recomputed. Speed-only changes keep it.
///
/// 2: 3×3 stride-1 convolutions with at least 16 channels in and out are computed by Winograd
/// F(2×2, 3×3) (`algorithm = "auto"`), which rounds differently from im2col + GEMM.
pub const NUMERICS_VERSION: u32 = 2;

/// The key of one training run of `exp`: the crate version and [`NUMERICS_VERSION`], the run
/// (a fold, with the hash of the split it is a fold of, or the final model), the sha256 of the
/// training data, and the resolved experiment without its description and `final` flag, which
/// change no number.
pub fn key(exp: &Experiment, run: Run, split_hash: &str, data_sha: &str) -> String {
    let run = match run {
        Run::Fold(k) => format!("fold {k}\nsplit {split_hash}"),
        Run::Final => "final".to_string(),
    };
    let mut h = Sha256::new();
    h.update(format!(
        "mnist-lab {} numerics {NUMERICS_VERSION}\n{run}\ndata {data_sha}\n",
        env!("CARGO_PKG_VERSION")
    ));
    h.update(exp.trained_toml());
    format!("{:x}", h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "description = \"a\"\n[[model.layers]]\nflatten = true\n[[model.layers]]\ndense = { units = 10, activation = \"softmax\" }\n";

    #[test]
    fn description_and_final_do_not_change_the_key_but_training_settings_do() {
        let a = Experiment::from_resolved_toml("x", SPEC).unwrap();
        let k = |e: &Experiment| key(e, Run::Fold(1), "s", "d");
        let mut b = a.clone();
        b.description = "another description".into();
        b.final_model = true;
        assert_eq!(k(&a), k(&b));
        let mut c = a.clone();
        c.train.epochs += 1;
        assert_ne!(k(&a), k(&c));
        let mut d = a.clone();
        *d.train.optimizer.spec_mut().learning_rate_mut() = 0.5;
        assert_ne!(k(&a), k(&d));
        assert_ne!(k(&a), key(&a, Run::Fold(2), "s", "d"));
        assert_ne!(k(&a), key(&a, Run::Fold(1), "t", "d"));
        assert_ne!(k(&a), key(&a, Run::Fold(1), "s", "e"));
        assert_ne!(k(&a), key(&a, Run::Final, "", "d"));
    }
}
