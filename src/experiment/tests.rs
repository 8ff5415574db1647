//! Tests of experiment files: schema, extends, sweeps and validation.

use std::path::{Path, PathBuf};

use super::*;
use crate::data::prep::Scaling;
use crate::data::DatasetInfo;
use crate::model::layer::Shape;
use crate::optim::OptimizerSpec;

/// MNIST's shape and classes (known by name: no file is read).
fn mnist() -> DatasetInfo {
    crate::data::dataset::info(Path::new("."), "mnist").unwrap()
}

const BASELINE: &str = r#"
description = "baseline"
[[model.layers]]
conv = { filters = 32, kernel = 3, activation = "relu", init = "he_uniform" }
[[model.layers]]
maxpool = 2
[[model.layers]]
flatten = true
[[model.layers]]
dense = { units = 100, activation = "relu", init = "he_uniform" }
[[model.layers]]
dense = { units = 10, activation = "softmax" }
"#;

struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("exp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The error of loading `text` as x.toml (beside the baseline), or of checking its network
/// on MNIST.
fn load_err(tag: &str, text: &str) -> String {
    let d = Dir::new(tag);
    d.write("baseline.toml", BASELINE);
    let p = d.write("x.toml", text);
    let e = load(&p).and_then(|e| e.network(&mnist()));
    format!("{:#}", e.unwrap_err())
}

#[test]
fn baseline_summary_matches_keras_param_counts() {
    let d = Dir::new("summary");
    let e = load(&d.write("baseline.toml", BASELINE)).unwrap();
    let s = e.network(&mnist()).unwrap();
    let params: Vec<usize> = s.iter().map(|l| l.params).collect();
    assert_eq!(params, vec![320, 0, 0, 540_900, 1010]);
    assert_eq!(s[1].output, Shape::image(13, 13, 32));
    assert_eq!(e.train, TrainSpec::default());
}

#[test]
fn extends_overrides_one_key_and_keeps_the_rest() {
    let d = Dir::new("extends");
    d.write("baseline.toml", BASELINE);
    let p = d.write(
        "lr.toml",
        "extends = \"baseline\"\ndescription = \"lr\"\n[train]\nlearning_rate = 0.001\n",
    );
    let e = load(&p).unwrap();
    assert_eq!(e.name, "lr");
    assert_eq!(
        e.train.optimizer,
        OptimizerSpec::Sgd(crate::optim::sgd::SgdSpec {
            learning_rate: 0.001,
            momentum: 0.9,
            ..Default::default()
        })
    );
    assert_eq!(e.model.layers.len(), 5);
    assert_eq!(e.extends, None);
    // The resolved form round-trips.
    let mut back = Experiment::from_resolved_toml("lr", &e.to_toml()).unwrap();
    back.source = e.source.clone();
    assert_eq!(back, e);
}

#[test]
fn unknown_key_names_file_key_and_line() {
    let e = load_err(
        "unknown",
        "extends = \"baseline\"\n[train]\nlerning_rate = 0.1\n",
    );
    assert!(
        e.contains("x.toml") && e.contains("lerning_rate") && e.contains("line 3"),
        "{e}"
    );
}

#[test]
fn syntax_error_keeps_line_and_column() {
    let e = load_err("syntax", "[train\nepochs = 1\n");
    assert!(e.contains("x.toml") && e.contains("line 1"), "{e}");
}

#[test]
fn wrong_type_is_reported_with_its_key() {
    let e = load_err(
        "type",
        "extends = \"baseline\"\n[train]\nepochs = \"ten\"\n",
    );
    assert!(
        e.contains("x.toml") && e.contains("line 3") && e.contains("epochs"),
        "{e}"
    );
}

#[test]
fn kernel_larger_than_input_names_the_layer() {
    let text = BASELINE.replace("kernel = 3", "kernel = 29");
    let e = load_err("kernel", &text);
    assert!(
        e.contains("model.layers[0] (conv)") && e.contains("larger than its 28×28"),
        "{e}"
    );
}

#[test]
fn dense_before_flatten_is_an_error() {
    let text = BASELINE.replace("[[model.layers]]\nflatten = true\n", "");
    let e = load_err("flatten", &text);
    assert!(
        e.contains("model.layers[2] (dense)") && e.contains("add `flatten = true`"),
        "{e}"
    );
}

#[test]
fn last_layer_must_have_ten_softmax_units() {
    let text = BASELINE.replace("units = 10", "units = 9");
    let e = load_err("last", &text);
    assert!(
        e.contains("model.layers[4]") && e.contains("units = 10"),
        "{e}"
    );
}

#[test]
fn missing_parent_and_cycles_are_errors() {
    let e = load_err("parent", "extends = \"nope\"\n");
    assert!(e.contains("nope.toml does not exist"), "{e}");
    let d = Dir::new("cycle");
    d.write("a.toml", "extends = \"b\"\n");
    let b = d.write("b.toml", "extends = \"a\"\n");
    let e = format!("{:#}", load(&b).unwrap_err());
    assert!(e.contains("cycle"), "{e}");
}

#[test]
fn sweep_expands_into_named_variants() {
    let d = Dir::new("sweep");
    d.write("baseline.toml", BASELINE);
    let p = d.write(
        "lr-sweep.toml",
        "extends = \"baseline\"\n[sweep]\n\"train.learning_rate\" = [0.01, 0.001]\n\"data.scaling\" = [\"unit\", \"center\"]\n",
    );
    let all = load_all(&p).unwrap();
    let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "lr-sweep-scaling=unit-learning_rate=0.01",
            "lr-sweep-scaling=unit-learning_rate=0.001",
            "lr-sweep-scaling=center-learning_rate=0.01",
            "lr-sweep-scaling=center-learning_rate=0.001"
        ]
    );
    assert_eq!(all[1].train.optimizer.spec().learning_rate(), 0.001);
    assert_eq!(all[2].data.scaling, Scaling::Center);
    assert!(all
        .iter()
        .all(|e| e.sweep.is_empty() && !e.to_toml().contains("sweep")));
    assert!(format!("{:#}", load(&p).unwrap_err()).contains("4 variants"));
    let bad = d.write(
        "bad-sweep.toml",
        "extends = \"baseline\"\n[sweep]\n\"train.lerning_rate\" = [0.1]\n",
    );
    let e = format!("{:#}", load_all(&bad).unwrap_err());
    assert!(
        e.contains("variant bad-sweep-lerning_rate=0.1") && e.contains("lerning_rate"),
        "{e}"
    );
}

#[test]
fn bad_settings_are_named() {
    let e = load_err("epochs", "extends = \"baseline\"\n[train]\nepochs = 0\n");
    assert!(e.contains("train.epochs is 0"), "{e}");
    let e = load_err("folds", "extends = \"baseline\"\n[cv]\nfolds = 1\n");
    assert!(e.contains("cv.folds is 1"), "{e}");
}

fn sgd(lr: f32, momentum: f32) -> OptimizerSpec {
    OptimizerSpec::Sgd(crate::optim::sgd::SgdSpec {
        learning_rate: lr,
        momentum,
        ..Default::default()
    })
}

#[test]
fn the_optimizer_is_a_tagged_table_a_name_or_the_seeds_flat_keys() {
    let d = Dir::new("optimizer");
    d.write("baseline.toml", BASELINE);
    let child = |name: &str, text: &str| {
        load(&d.write(name, &format!("extends = \"baseline\"\n{text}"))).map(|e| e.train)
    };
    let nested = child("a.toml", "[train.optimizer.sgd]\nlearning_rate = 0.05\n").unwrap();
    assert_eq!(nested.optimizer, sgd(0.05, 0.9));
    let inline = child(
        "b.toml",
        "[train]\noptimizer = { sgd = { momentum = 0.5 } }\n",
    )
    .unwrap();
    assert_eq!(inline.optimizer, sgd(0.01, 0.5));
    let flat = child("c.toml", "[train]\noptimizer = \"sgd\"\nmomentum = 0.0\n").unwrap();
    assert_eq!(flat.optimizer, sgd(0.01, 0.0));
    // The resolved form of SGD is the seed's flat one, and it reads back the same.
    let e = load(&d.0.join("a.toml")).unwrap();
    let text = e.to_toml();
    assert!(
        text.contains("[train]\noptimizer = \"sgd\"\nlearning_rate = 0.05")
            && !text.contains("[train.optimizer"),
        "{text}"
    );
    assert_eq!(
        Experiment::from_resolved_toml("a", &text).unwrap().train,
        e.train
    );

    let err = |name: &str, text: &str| format!("{:#}", child(name, text).unwrap_err());
    let e = err(
        "d.toml",
        "[train]\nlearning_rate = 0.1\n[train.optimizer.sgd]\nlearning_rate = 0.2\n",
    );
    assert!(e.contains("d.toml") && e.contains("both set"), "{e}");
    let e = err("e.toml", "[train]\noptimizer = \"adamx\"\n");
    assert!(
        e.contains("e.toml") && e.contains("unknown optimizer \"adamx\"") && e.contains("sgd"),
        "{e}"
    );
    let e = err("f.toml", "[train.optimizer.sgd]\nmomentm = 0.5\n");
    assert!(
        e.contains("f.toml") && e.contains("momentm") && e.contains("line 3"),
        "{e}"
    );
    let e = err("g.toml", "[train.optimizer.sgd]\nmomentum = 1.5\n");
    assert!(e.contains("train.optimizer.sgd: momentum is 1.5"), "{e}");
}

#[test]
fn a_child_naming_another_optimizer_kind_replaces_the_parents_table() {
    let mut base: toml::Table =
        toml::from_str("[train.optimizer.sgd]\nlearning_rate = 0.1\nmomentum = 0.9\n").unwrap();
    let child: toml::Table = toml::from_str("[train.optimizer.other]\nbeta = 0.5\n").unwrap();
    load::merge(&mut base, child, "");
    assert_eq!(
        base["train"]["optimizer"]
            .as_table()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec!["other"]
    );
    let same: toml::Table = toml::from_str("[train.optimizer.other]\ngamma = 1\n").unwrap();
    load::merge(&mut base, same, "");
    assert_eq!(
        base["train"]["optimizer"]["other"]
            .as_table()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn trained_toml_leaves_out_only_what_changes_no_number() {
    let d = Dir::new("trained");
    let e = load(&d.write("baseline.toml", BASELINE)).unwrap();
    let mut f = e.clone();
    f.description = "other words".into();
    f.final_model = true;
    assert_eq!(e.trained_toml(), f.trained_toml());
    assert_ne!(e.to_toml(), f.to_toml());
    f.cv.seed = 2;
    assert_ne!(e.trained_toml(), f.trained_toml());
}

/// A residual network whose block is varied from outside: by a `[sweep]` key and a `[search]`
/// key that reach through `model.layers.N.residual.layers.M`.
const RESIDUAL: &str = r#"
description = "residual"
[[model.layers]]
conv = { filters = 8, kernel = 3, padding = "same", init = "he_uniform" }
[[model.layers]]
[model.layers.residual]
[[model.layers.residual.layers]]
conv = { filters = 8, kernel = 3, padding = "same", init = "he_uniform" }
[[model.layers.residual.layers]]
batchnorm = { activation = "relu" }
[[model.layers.residual.layers]]
dropout = { rate = 0.1 }
[[model.layers]]
globalavgpool = true
[[model.layers]]
dense = { units = 10, activation = "softmax" }
"#;

/// The (path, output channels) of every conv in a variant's network on MNIST.
fn convs(e: &Experiment) -> Vec<(String, usize)> {
    let rows = e.network(&mnist()).unwrap();
    rows.iter()
        .flat_map(|r| r.all())
        .filter(|r| r.kind == "conv2d")
        .map(|r| (r.path.clone(), r.output.c))
        .collect()
}

#[test]
fn sweeps_and_searches_reach_inside_residual_blocks() {
    let d = Dir::new("block-keys");
    d.write("res.toml", RESIDUAL);
    let p = d.write(
        "res-sweep.toml",
        "extends = \"res\"\n[sweep]\n\"model.layers.1.residual.layers.0.conv.filters\" = [8, 16]\n\"model.layers.1.residual.repeat\" = [1, 2]\n",
    );
    let all = load_all(&p).unwrap();
    let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "res-sweep-filters=8-repeat=1",
            "res-sweep-filters=8-repeat=2",
            "res-sweep-filters=16-repeat=1",
            "res-sweep-filters=16-repeat=2"
        ]
    );
    // 16 filters inside the block: the shortcut needs a projection, so a 1×1 conv appears.
    assert_eq!(convs(&all[0]), vec![("0".into(), 8), ("1.0.0".into(), 8)]);
    assert_eq!(
        convs(&all[1]),
        vec![("0".into(), 8), ("1.0.0".into(), 8), ("1.1.0".into(), 8)]
    );
    assert_eq!(
        convs(&all[3]),
        vec![
            ("0".into(), 8),
            ("1.0.0".into(), 16),
            ("1.0.s0".into(), 16),
            ("1.1.0".into(), 16)
        ]
    );

    let s = d.write(
        "res-search.toml",
        "extends = \"res\"\n[search]\ntrials = 3\nseed = 1\n\"model.layers.1.residual.layers.2.dropout.rate\" = { uniform = [0.2, 0.4] }\n",
    );
    let drawn = load_all(&s).unwrap();
    assert_eq!(drawn.len(), 3);
    for e in &drawn {
        let toml: toml::Table = toml::from_str(&e.to_toml()).unwrap();
        let rate = toml["model"]["layers"][1]["residual"]["layers"][2]["dropout"]["rate"]
            .as_float()
            .unwrap();
        assert!((0.2..=0.4).contains(&rate), "{} drew {rate}", e.name);
        assert!(
            e.name.contains(&format!("rate={}", e.values[0].1)),
            "{}",
            e.name
        );
    }

    let bad = d.write(
        "res-bad.toml",
        "extends = \"res\"\n[sweep]\n\"model.layers.1.residual.layers.5.conv.filters\" = [4]\n",
    );
    let e = format!("{:#}", load_all(&bad).unwrap_err());
    assert!(
        e.contains("model.layers.1.residual.layers.5.conv.filters")
            && e.contains("index 5 is beyond the list's 3 entries"),
        "{e}"
    );
}
