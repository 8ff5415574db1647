//! Cache keys: what a trained result (a fold's scores, a final model) is identified by, so that
//! it is reused exactly when training it again would give the same numbers.

use sha2::{Digest, Sha256};

use crate::experiment::Experiment;
use crate::model::LayerSummary;
use crate::rng::Run;

/// Bumped whenever a change alters what training computes (kernels, init, batching, loss), so
/// cached folds made by older code are recomputed. Speed-only changes keep it.
///
/// 2: 3×3 stride-1 convolutions with at least 16 channels in and out are computed by Winograd
/// F(2×2, 3×3) (`algorithm = "auto"`), which rounds differently from im2col + GEMM.
///
/// 3: `auto` computes them by Winograd F(3×3, 3×3) instead, and `winograd3` / `winograd4` can
/// be named. Nothing else changed: a network without a layer computed by F(3×3) or F(4×4)
/// computes the same bits as under 2, so its runs keep version 2 in their key ([`numerics`])
/// and its committed results stay valid.
pub const NUMERICS_VERSION: u32 = 3;

/// The numerics version a run of `network` is keyed by: [`NUMERICS_VERSION`], or 2 for a
/// network that version 3's change does not touch.
pub fn numerics(network: &[LayerSummary]) -> u32 {
    let touched = network
        .iter()
        .flat_map(|l| l.all())
        .any(|l| matches!(l.algorithm, Some("winograd3" | "winograd4")));
    if touched {
        NUMERICS_VERSION
    } else {
        2
    }
}

/// The key of one training run of `exp`, whose layers are `network`: the crate version and the
/// run's [`numerics`] version, the run (a fold, with the hash of the split it is a fold of, or
/// the final model), the sha256 of the training data, and the resolved experiment without its
/// description and `final` flag, which change no number.
pub fn key(
    exp: &Experiment,
    network: &[LayerSummary],
    run: Run,
    split_hash: &str,
    data_sha: &str,
) -> String {
    let run = match run {
        Run::Fold(k) => format!("fold {k}\nsplit {split_hash}"),
        Run::Final => "final".to_string(),
    };
    let mut h = Sha256::new();
    h.update(format!(
        "mnist-lab {} numerics {}\n{run}\ndata {data_sha}\n",
        env!("CARGO_PKG_VERSION"),
        numerics(network)
    ));
    h.update(exp.trained_toml());
    format!("{:x}", h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "description = \"a\"\n[[model.layers]]\nflatten = true\n[[model.layers]]\ndense = { units = 10, activation = \"softmax\" }\n";

    fn mnist() -> crate::data::dataset::DatasetInfo {
        crate::data::dataset::info(std::path::Path::new(""), "mnist").unwrap()
    }

    #[test]
    fn description_and_final_do_not_change_the_key_but_training_settings_do() {
        let a = Experiment::from_resolved_toml("x", SPEC).unwrap();
        let net = a.network(&mnist()).unwrap();
        let k = |e: &Experiment| key(e, &net, Run::Fold(1), "s", "d");
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
        assert_ne!(k(&a), key(&a, &net, Run::Fold(2), "s", "d"));
        assert_ne!(k(&a), key(&a, &net, Run::Fold(1), "t", "d"));
        assert_ne!(k(&a), key(&a, &net, Run::Fold(1), "s", "e"));
        assert_ne!(k(&a), key(&a, &net, Run::Final, "", "d"));
    }

    #[test]
    fn only_networks_with_3x3_or_4x4_winograd_tiles_take_the_new_numerics_version() {
        let version = |convs: &[&str]| {
            let mut toml: String = convs
                .iter()
                .map(|c| format!("[[model.layers]]\nconv = {{ {c} }}\n"))
                .collect();
            toml += &SPEC["description = \"a\"\n".len()..];
            let exp = Experiment::from_resolved_toml("x", &toml).unwrap();
            numerics(&exp.network(&mnist()).unwrap())
        };
        assert_eq!(version(&[]), 2);
        // One input channel (direct), then too few channels for `auto`'s Winograd.
        assert_eq!(
            version(&["filters = 8, kernel = 3", "filters = 8, kernel = 3"]),
            2
        );
        assert_eq!(
            version(&[
                "filters = 16, kernel = 3",
                "filters = 16, kernel = 3, algorithm = \"winograd\""
            ]),
            2
        );
        assert_eq!(
            version(&["filters = 16, kernel = 3", "filters = 16, kernel = 3"]),
            3
        );
        assert_eq!(
            version(&[
                "filters = 16, kernel = 3",
                "filters = 16, kernel = 3, algorithm = \"winograd4\""
            ]),
            3
        );
    }
}
