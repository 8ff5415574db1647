//! The vocabulary beyond the seed's, end to end on synthetic data: every new layer, optimizer,
//! schedule, loss setting and augmentation in one experiment file, through `check`, `run` (with
//! one and two jobs: byte-identical CSVs), `report` (augment.png), `final` and `predict`.

mod common;
use common::*;

const MODERN: &str = r#"
description = "every new key at once"
final = true
[data]
dataset = "synthetic"
limit = 600
[data.augment]
# Mild: the synthetic classes are rows 2 pixels apart.
affine = { rotation = 2, shift = 0.01, zoom = 0.02 }
elastic = { alpha = 2, sigma = 3 }
[[model.layers]]
conv = { filters = 16, kernel = 3, padding = "same", init = "he_uniform" }
[[model.layers]]
batchnorm = { activation = "relu", momentum = 0.8 }
[[model.layers]]
maxpool = { pool = 3, stride = 2, padding = "same" }
[[model.layers]]
dropout = { rate = 0.25 }
[[model.layers]]
conv = { filters = 16, kernel = 3, stride = 2, padding = "same", activation = { leaky_relu = 0.1 } }
[[model.layers]]
avgpool = 2
[[model.layers]]
conv = { filters = 32, kernel = 1, activation = "elu" }
[[model.layers]]
globalavgpool = true
[[model.layers]]
dense = { units = 16, init = "he_uniform" }
[[model.layers]]
batchnorm = { activation = "relu", momentum = 0.8 }
[[model.layers]]
dropout = { rate = 0.1 }
[[model.layers]]
dense = { units = 10, activation = "softmax" }
[train]
epochs = 6
batch_size = 32
label_smoothing = 0.1
schedule = "onecycle"
[train.optimizer.adam]
learning_rate = 0.01
[cv]
folds = 2
"#;

fn workspace_modern(tag: &str) -> TempDir {
    let w = workspace(tag);
    std::fs::write(w.path().join("experiments/modern.toml"), MODERN).unwrap();
    w
}

fn file(d: &std::path::Path, rel: &str) -> Vec<u8> {
    std::fs::read(d.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn every_new_key_trains_reproducibly_and_reports() {
    let w = workspace_modern("vocab");
    let d = w.path();

    let out = mnist_lab(d, &["check", "experiments/modern.toml"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for want in [
        "(28, 28, 16)",
        "(14, 14, 16)",
        "(7, 7, 16)",
        "(3, 3, 16)",
        "(3, 3, 32)",
        "global_average_pooling2d",
        "(32)",
        "dropout",
        "Adam lr 0.01",
        "one-cycle",
        "label smoothing 0.1",
        "rotation ±2°",
        "elastic α 2 σ 3",
    ] {
        assert!(t.contains(want), "check lacks {want:?}:\n{t}");
    }

    let out = mnist_lab(d, &["run", "experiments/modern.toml", "--jobs", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = mnist_lab(
        d,
        &[
            "run",
            "experiments/modern.toml",
            "--jobs",
            "2",
            "--results",
            "again",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    for f in [
        "modern/history.csv",
        "modern/folds.csv",
        "modern/spec.toml",
        "modern/folds/fold-1.csv",
        "modern/folds/fold-2.csv",
    ] {
        assert_eq!(
            file(d, &format!("results/{f}")),
            file(d, &format!("again/{f}")),
            "{f} differs between --jobs 1 and --jobs 2"
        );
    }
    let history = String::from_utf8(file(d, "results/modern/history.csv")).unwrap();
    assert!(
        history.starts_with("fold,epoch,train_loss,train_acc,val_loss,val_acc,lr\n"),
        "{history}"
    );
    // One-cycle: the rate rises, then ends far below its peak of 0.01.
    let lrs: Vec<f64> = history
        .lines()
        .skip(1)
        .take(6)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(lrs[1] > 0.005 && lrs[5] < 1e-5, "{lrs:?}");
    let folds = String::from_utf8(file(d, "results/modern/folds.csv")).unwrap();
    for line in folds.lines().skip(1) {
        let acc: f64 = line.split(',').nth(1).unwrap().parse().unwrap();
        assert!(acc > 0.3, "better than chance (0.1): {folds}");
    }
    // The resolved spec reads back as the same experiment (new keys included).
    let spec = String::from_utf8(file(d, "results/modern/spec.toml")).unwrap();
    for want in [
        "padding = \"same\"",
        "leaky_relu = 0.1",
        "onecycle",
        "label_smoothing = 0.1",
    ] {
        assert!(spec.contains(want), "spec.toml lacks {want:?}:\n{spec}");
    }

    let out = mnist_lab(d, &["report"]);
    assert!(out.status.success(), "{}", text(&out));
    let png = file(d, "results/modern/augment.png");
    assert_eq!(&png[1..4], b"PNG");
    let readme = String::from_utf8(file(d, "results/README.md")).unwrap();
    assert!(readme.contains("modern/augment.png"), "{readme}");
    // Experiments without augmentation get none.
    assert!(!d.join("results/tiny/augment.png").exists());

    let out = mnist_lab(d, &["final", "--marked", "experiments/modern.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = mnist_lab(d, &["evaluate", "results/modern/final/model.safetensors"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn bad_new_settings_name_the_key_and_what_was_expected() {
    let w = workspace_modern("vocab-bad");
    let d = w.path();
    for (from, to, want) in [
        ("rate = 0.1", "rate = 1.5", "expected 0 <= rate < 1"),
        (
            "label_smoothing = 0.1",
            "label_smoothing = 1.0",
            "train.label_smoothing",
        ),
        (
            "schedule = \"onecycle\"",
            "schedule = \"linear\"",
            "unknown schedule \"linear\"",
        ),
        (
            "rotation = 2",
            "rotation = 400",
            "data.augment.affine: rotation is 400",
        ),
        (
            "padding = \"same\", init",
            "padding = \"full\", init",
            "full",
        ),
        (
            "learning_rate = 0.01",
            "learning_rate = 0.01\nbeta_1 = 1.5",
            "beta_1 is 1.5",
        ),
        ("stride = 2", "stride = 0", "stride must be at least 1"),
    ] {
        assert!(MODERN.contains(from), "{from}");
        std::fs::write(d.join("experiments/bad.toml"), MODERN.replacen(from, to, 1)).unwrap();
        let out = mnist_lab(d, &["check", "experiments/bad.toml"]);
        assert!(
            !out.status.success() && text(&out).contains(want) && text(&out).contains("bad.toml"),
            "{to:?}: {}",
            text(&out)
        );
    }
}
