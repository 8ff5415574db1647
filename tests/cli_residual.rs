//! Residual blocks and the augmentations for clothing, end to end on synthetic data: `check`
//! (the block's rows indented under it), `run`, `report` (augment.png), `final` and `evaluate`
//! (its model file round-trips), and the errors a user meets.

mod common;
use common::*;

const RESNET: &str = r#"
description = "a residual network with flips, crops and erasing"
final = true
[data]
dataset = "synthetic"
limit = 320
[data.augment]
# Mild: the synthetic classes are bars whose rows are 2 pixels apart.
flip = "horizontal"
crop = { padding = 1 }
erasing = { probability = 0.2, area = [0.02, 0.1] }
[[model.layers]]
conv = { filters = 8, kernel = 3, padding = "same", init = "he_uniform" }
[[model.layers]]
batchnorm = { activation = "relu" }
[[model.layers]]
[model.layers.residual]
repeat = 2
[[model.layers.residual.layers]]
conv = { filters = 8, kernel = 3, padding = "same", init = "he_uniform" }
[[model.layers.residual.layers]]
batchnorm = { activation = "relu" }
[[model.layers.residual.layers]]
conv = { filters = 8, kernel = 3, padding = "same", init = "he_uniform" }
[[model.layers]]
[model.layers.residual]
[[model.layers.residual.layers]]
conv = { filters = 12, kernel = 3, stride = 2, padding = "same", init = "he_uniform" }
[[model.layers]]
maxpool = 2
[[model.layers]]
flatten = true
[[model.layers]]
dense = { units = 10, activation = "softmax" }
[train]
epochs = 3
[train.optimizer.adam]
learning_rate = 0.01
[cv]
folds = 2
"#;

#[test]
fn a_residual_network_checks_trains_reports_and_saves() {
    let w = workspace("resnet");
    let d = w.path();
    std::fs::write(d.join("experiments/resnet.toml"), RESNET).unwrap();
    let out = mnist_lab(d, &["check", "experiments/resnet.toml"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    // Rows as words: path, kind, output shape, parameters (Keras' count: the projection's
    // 1×1 conv 8·12 + 12, its batch norm 4·12).
    let rows: Vec<String> = t
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for want in [
        "2 residual (28, 28, 8) 2400",
        "2.0.0 conv2d (28, 28, 8) 584 direct",
        "2.1.2 conv2d (28, 28, 8) 584 direct",
        "2.1.+ add (28, 28, 8) 0",
        "3 residual (14, 14, 12) 1032",
        "3.0.s0 conv2d (14, 14, 12) 108 direct",
        "3.0.s1 batch_normalization (14, 14, 12) 48",
        "augment: horizontal flips; crops after padding 1; erasing p 0.2 of 0.02–0.1 of the area",
    ] {
        assert!(rows.iter().any(|r| r == want), "check lacks {want:?}:\n{t}");
    }
    // Nested rows are indented under their block.
    assert!(t.contains("  2.0.0      conv2d"), "{t}");
    let out = mnist_lab(d, &["run", "experiments/resnet.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let folds = std::fs::read_to_string(d.join("results/resnet/folds.csv")).unwrap();
    for line in folds.lines().skip(1) {
        let acc: f64 = line.split(',').nth(1).unwrap().parse().unwrap();
        assert!(acc > 0.3, "better than chance (0.1): {folds}");
    }
    let out = mnist_lab(d, &["report"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(d.join("results/resnet/augment.png").exists());
    let out = mnist_lab(d, &["final", "--marked", "experiments/resnet.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = mnist_lab(d, &["evaluate", "results/resnet/final/model.safetensors"]);
    assert!(out.status.success(), "{}", text(&out));
    let model = std::fs::read(d.join("results/resnet/final/model.safetensors")).unwrap();
    let header = String::from_utf8_lossy(&model[..model.len().min(8192)]).into_owned();
    for name in [
        "layers.2.1.2.weight",
        "layers.3.0.s0.weight",
        "layers.3.0.s1.running_var",
    ] {
        assert!(header.contains(name), "the model file lacks {name}");
    }
}

#[test]
fn bad_blocks_and_augmentations_name_the_key_and_what_was_expected() {
    let w = workspace("resnet-bad");
    let d = w.path();
    for (from, to, want) in [
        (
            "filters = 12, kernel = 3, stride = 2, padding = \"same\"",
            "filters = 12, kernel = 3, stride = 2",
            "model.layers[3] (residual): the inner path's output (13, 13, 12) cannot be added to the block's input (28, 28, 8): no 1×1 projection with a stride maps 28×28 to 13×13",
        ),
        ("repeat = 2", "repeat = 0", "model.layers[2] (residual): repeat is 0, expected 1..=64"),
        (
            "repeat = 2",
            "repeat = 2\nshortcut = \"sometimes\"",
            "unknown variant `sometimes`",
        ),
        ("flip = \"horizontal\"", "flip = \"sideways\"", "unknown variant `sideways`"),
        ("padding = 1 }", "padding = 0 }", "data.augment.crop: padding is 0, expected 1..=64"),
        ("area = [0.02, 0.1]", "area = [0.3, 0.1]", "data.augment.erasing: area is [0.3, 0.1]"),
    ] {
        assert!(RESNET.contains(from), "{from}");
        std::fs::write(d.join("experiments/bad.toml"), RESNET.replacen(from, to, 1)).unwrap();
        let out = mnist_lab(d, &["check", "experiments/bad.toml"]);
        assert!(
            !out.status.success() && text(&out).contains(want) && text(&out).contains("bad.toml"),
            "{to:?}: {}",
            text(&out)
        );
    }
}
