//! The experiment file: TOML schema, `extends`, defaults and validation.
//!
//! Every key has a default (the seed tutorial's settings), so a file that `extends` another
//! holds only what it changes. Each file is first checked on its own text (unknown keys and
//! wrong types keep the toml crate's line and column), then merged onto its parent table by
//! table (arrays such as `model.layers` are replaced whole), then validated as a network.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::mnist::{CLASSES, SIDE};
use crate::data::prep::Scaling;

/// A resolved experiment: one model variant and how to train and score it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Experiment {
    /// The experiment's name (its file stem, plus the swept values for a sweep variant); not
    /// part of the file.
    #[serde(skip)]
    pub name: String,
    /// The file it was loaded from; not part of the file.
    #[serde(skip)]
    pub source: PathBuf,
    /// One line saying what this variant is.
    pub description: String,
    /// Name of the experiment this one starts from (`experiments/<name>.toml`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// Whether `make all` trains a final model of this experiment on all training data.
    #[serde(rename = "final")]
    pub final_model: bool,
    /// Which data and how it is scaled.
    pub data: DataSpec,
    /// The network.
    pub model: ModelSpec,
    /// Optimizer and schedule.
    pub train: TrainSpec,
    /// Cross-validation.
    pub cv: CvSpec,
    /// `[sweep] "train.learning_rate" = [0.01, 0.001]`: one variant per combination of values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sweep: BTreeMap<String, Vec<toml::Value>>,
}

/// `[data]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSpec {
    /// Folder name under the data root: `mnist` or `fashion-mnist`.
    pub dataset: String,
    /// Pixel scaling.
    pub scaling: Scaling,
    /// Use only the first `limit` training images (quick runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `[model]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSpec {
    /// Layers in order, input first.
    pub layers: Vec<LayerSpec>,
}

/// One `[[model.layers]]` entry: exactly one of these keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum LayerSpec {
    /// `conv = { filters, kernel, activation, init }`: valid padding, stride 1.
    Conv(ConvSpec),
    /// `maxpool = N`: N×N window, stride N (Keras MaxPooling2D((N, N))).
    Maxpool(usize),
    /// `flatten = true`
    Flatten(bool),
    /// `dense = { units, activation, init }`
    Dense(DenseSpec),
    /// `batchnorm = {}` (optionally `momentum`, `epsilon`)
    Batchnorm(BatchNormSpec),
}

/// Convolution settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvSpec {
    /// Number of output channels.
    pub filters: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Applied after the bias.
    #[serde(default)]
    pub activation: Activation,
    /// Weight initializer (biases start at zero).
    #[serde(default)]
    pub init: Init,
}

/// Fully connected layer settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseSpec {
    /// Output size.
    pub units: usize,
    /// Applied after the bias; `softmax` only on the last layer.
    #[serde(default)]
    pub activation: Activation,
    /// Weight initializer (biases start at zero).
    #[serde(default)]
    pub init: Init,
}

/// Batch normalization settings (Keras defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchNormSpec {
    /// Running statistics: r = momentum·r + (1 − momentum)·batch.
    pub momentum: f32,
    /// Added to the variance.
    pub epsilon: f32,
}

impl Default for BatchNormSpec {
    fn default() -> Self {
        BatchNormSpec {
            momentum: 0.99,
            epsilon: 1e-3,
        }
    }
}

/// Activation functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Identity (Keras' default).
    #[default]
    Linear,
    /// max(0, x)
    Relu,
    /// Softmax over classes, trained with categorical cross-entropy; last layer only.
    Softmax,
}

/// Weight initializers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// U(±sqrt(6 / (fan_in + fan_out))), Keras' default.
    #[default]
    GlorotUniform,
    /// U(±sqrt(6 / fan_in)).
    HeUniform,
}

/// Optimizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// SGD with classic momentum: v = m·v − lr·g; w += v.
    #[default]
    Sgd,
}

/// `[train]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSpec {
    /// Optimizer kind.
    pub optimizer: Optimizer,
    /// Step size.
    pub learning_rate: f32,
    /// Momentum coefficient.
    pub momentum: f32,
    /// Passes over the training data.
    pub epochs: usize,
    /// Samples per step (the last batch of an epoch may be smaller, as in Keras).
    pub batch_size: usize,
    /// Seed for weight init and batch order.
    pub seed: u64,
}

/// `[cv]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CvSpec {
    /// Number of folds.
    pub folds: usize,
    /// Seed of the one shuffle that assigns images to folds.
    pub seed: u64,
}

impl Default for DataSpec {
    fn default() -> Self {
        DataSpec {
            dataset: "mnist".into(),
            scaling: Scaling::Unit,
            limit: None,
        }
    }
}

impl Default for TrainSpec {
    fn default() -> Self {
        TrainSpec {
            optimizer: Optimizer::Sgd,
            learning_rate: 0.01,
            momentum: 0.9,
            epochs: 10,
            batch_size: 32,
            seed: 1,
        }
    }
}

impl Default for CvSpec {
    fn default() -> Self {
        CvSpec { folds: 5, seed: 1 }
    }
}

/// Shape of an activation: height × width × channels (flat vectors are 1 × 1 × n).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape3 {
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
    /// Channels (or features, when flat).
    pub c: usize,
}

impl Shape3 {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One row of the network summary (`mnist-lab check`).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSummary {
    /// Layer kind as Keras names it.
    pub kind: &'static str,
    /// Output shape.
    pub output: Shape3,
    /// Whether the output is a flat vector.
    pub flat: bool,
    /// Number of parameters (Keras counts batch-norm's running statistics too).
    pub params: usize,
}

impl fmt::Display for LayerSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shape = if self.flat {
            format!("({})", self.output.c)
        } else {
            format!("({}, {}, {})", self.output.h, self.output.w, self.output.c)
        };
        write!(f, "{:<20} {:<16} {:>10}", self.kind, shape, self.params)
    }
}

/// The input shape of every MNIST-format dataset.
pub const INPUT: Shape3 = Shape3 {
    h: SIDE,
    w: SIDE,
    c: 1,
};

impl Experiment {
    /// Computes every layer's output shape and parameter count, or says which layer cannot chain.
    pub fn summary(&self) -> Result<Vec<LayerSummary>> {
        let layers = &self.model.layers;
        if layers.is_empty() {
            bail!("model.layers is empty: expected at least one `[[model.layers]]` entry");
        }
        let mut shape = INPUT;
        let mut flat = false;
        let mut out = Vec::with_capacity(layers.len());
        let last = layers.len() - 1;
        for (i, layer) in layers.iter().enumerate() {
            let at = |what: String| anyhow::anyhow!("model.layers[{i}] ({}): {what}", layer.kind());
            let (kind, params) = match layer {
                LayerSpec::Conv(c) => {
                    if flat {
                        return Err(at(format!(
                            "input is flat ({}); a conv layer needs an image",
                            shape.c
                        )));
                    }
                    if c.filters == 0 || c.kernel == 0 {
                        return Err(at("filters and kernel must be at least 1".into()));
                    }
                    if c.kernel > shape.h || c.kernel > shape.w {
                        return Err(at(format!(
                            "kernel {} is larger than its {}×{} input",
                            c.kernel, shape.h, shape.w
                        )));
                    }
                    if c.activation == Activation::Softmax {
                        return Err(at("softmax is only allowed on the last dense layer".into()));
                    }
                    let params = c.kernel * c.kernel * shape.c * c.filters + c.filters;
                    shape = Shape3 {
                        h: shape.h - c.kernel + 1,
                        w: shape.w - c.kernel + 1,
                        c: c.filters,
                    };
                    ("conv2d", params)
                }
                LayerSpec::Maxpool(k) => {
                    if flat {
                        return Err(at("input is flat; max pooling needs an image".into()));
                    }
                    if *k == 0 || *k > shape.h || *k > shape.w {
                        return Err(at(format!(
                            "pool size {k} does not fit its {}×{} input (expected 1..={})",
                            shape.h,
                            shape.w,
                            shape.h.min(shape.w)
                        )));
                    }
                    shape = Shape3 {
                        h: shape.h / k,
                        w: shape.w / k,
                        c: shape.c,
                    };
                    ("max_pooling2d", 0)
                }
                LayerSpec::Flatten(on) => {
                    if !on {
                        return Err(at(
                            "`flatten = false` is not a layer; remove the entry".into()
                        ));
                    }
                    if flat {
                        return Err(at("input is already flat".into()));
                    }
                    flat = true;
                    shape = Shape3 {
                        h: 1,
                        w: 1,
                        c: shape.len(),
                    };
                    ("flatten", 0)
                }
                LayerSpec::Dense(d) => {
                    if !flat {
                        return Err(at(format!(
                            "input is an image ({}, {}, {}); add `flatten = true` before a dense layer",
                            shape.h, shape.w, shape.c
                        )));
                    }
                    if d.units == 0 {
                        return Err(at("units must be at least 1".into()));
                    }
                    if d.activation == Activation::Softmax && i != last {
                        return Err(at("softmax is only allowed on the last layer".into()));
                    }
                    let params = shape.c * d.units + d.units;
                    shape = Shape3 {
                        h: 1,
                        w: 1,
                        c: d.units,
                    };
                    ("dense", params)
                }
                LayerSpec::Batchnorm(b) => {
                    if !(0.0..1.0).contains(&b.momentum) || b.epsilon <= 0.0 {
                        return Err(at("expected 0 <= momentum < 1 and epsilon > 0".into()));
                    }
                    ("batch_normalization", 4 * shape.c)
                }
            };
            out.push(LayerSummary {
                kind,
                output: shape,
                flat,
                params,
            });
        }
        match layers.last() {
            Some(LayerSpec::Dense(d)) if d.units == CLASSES && d.activation == Activation::Softmax => {}
            _ => bail!(
                "model.layers[{last}] ({}): the last layer must be `dense = {{ units = {CLASSES}, activation = \"softmax\" }}`",
                layers[last].kind()
            ),
        }
        Ok(out)
    }

    /// Checks every setting outside the layer list.
    fn validate_settings(&self) -> Result<()> {
        let t = &self.train;
        if t.epochs == 0 {
            bail!("train.epochs is 0, expected at least 1");
        }
        if t.batch_size == 0 {
            bail!("train.batch_size is 0, expected at least 1");
        }
        if !(t.learning_rate > 0.0 && t.learning_rate.is_finite()) {
            bail!(
                "train.learning_rate is {}, expected a positive number",
                t.learning_rate
            );
        }
        if !(0.0..1.0).contains(&t.momentum) {
            bail!(
                "train.momentum is {}, expected 0 <= momentum < 1",
                t.momentum
            );
        }
        if self.cv.folds < 2 {
            bail!("cv.folds is {}, expected at least 2", self.cv.folds);
        }
        if let Some(limit) = self.data.limit {
            if limit < self.cv.folds {
                bail!(
                    "data.limit is {limit}, expected at least cv.folds ({})",
                    self.cv.folds
                );
            }
        }
        let ds = &self.data.dataset;
        if ds.is_empty()
            || !ds
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            bail!("data.dataset is {ds:?}, expected a folder name such as \"mnist\" or \"fashion-mnist\"");
        }
        Ok(())
    }

    /// The resolved experiment as TOML (written next to results and inside saved models).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("an Experiment always serializes")
    }

    /// Parses a resolved experiment written by [`Experiment::to_toml`].
    pub fn from_resolved_toml(name: &str, text: &str) -> Result<Self> {
        let mut e: Experiment = toml::from_str(text).context("not a resolved experiment")?;
        e.name = name.to_string();
        e.validate_settings()?;
        e.summary()?;
        Ok(e)
    }
}

impl LayerSpec {
    /// The key that names this layer kind in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Conv(_) => "conv",
            LayerSpec::Maxpool(_) => "maxpool",
            LayerSpec::Flatten(_) => "flatten",
            LayerSpec::Dense(_) => "dense",
            LayerSpec::Batchnorm(_) => "batchnorm",
        }
    }
}

/// Merges `child` onto `base`: tables merge key by key, anything else is replaced.
fn merge(base: &mut toml::Table, child: toml::Table) {
    for (k, v) in child {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(c)) => merge(b, c),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Reads one file, checks it alone against the schema, and returns it merged onto its parents.
fn load_table(path: &Path, seen: &mut BTreeSet<PathBuf>) -> Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let shown = path.display();
    // Each file alone must fit the schema: unknown keys and wrong types keep their line/column.
    let own: Experiment = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    let Some(parent) = own.extends else {
        return Ok(table);
    };
    table.remove("extends");
    if parent.is_empty() || parent.contains(['/', '\\']) || parent.ends_with(".toml") {
        bail!("{shown}: extends = {parent:?}, expected the name of another experiment in the same folder (e.g. \"baseline\")");
    }
    let parent_path = path.with_file_name(format!("{parent}.toml"));
    let canonical = parent_path
        .canonicalize()
        .unwrap_or_else(|_| parent_path.clone());
    if !seen.insert(canonical) {
        bail!("{shown}: extends = {parent:?} makes a cycle");
    }
    if !parent_path.is_file() {
        bail!(
            "{shown}: extends = {parent:?}, but {} does not exist",
            parent_path.display()
        );
    }
    let mut base = load_table(&parent_path, seen)
        .with_context(|| format!("{shown}: in its parent {parent:?}"))?;
    // The parent's description and final flag describe the parent, not this variant.
    base.remove("description");
    base.remove("final");
    merge(&mut base, table);
    Ok(base)
}

/// Loads, resolves (`extends`) and validates an experiment file without a `[sweep]`.
pub fn load(path: &Path) -> Result<Experiment> {
    let mut all = load_all(path)?;
    if all.len() != 1 {
        bail!(
            "{}: has a [sweep] of {} variants where one experiment was expected",
            path.display(),
            all.len()
        );
    }
    Ok(all.remove(0))
}

/// Text of a swept value for a variant name: `0.001`, `center`, `true`.
fn value_label(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Sets `dotted` (e.g. `train.learning_rate`) in `table`, creating tables on the way.
fn set_dotted(table: &mut toml::Table, dotted: &str, value: toml::Value) -> Result<()> {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts.pop().filter(|l| !l.is_empty()).context("empty key")?;
    let mut t = table;
    for p in parts {
        t = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("{p} is not a table"))?;
    }
    t.insert(last.to_string(), value);
    Ok(())
}

/// Loads, resolves and validates an experiment file: one experiment, or one variant per
/// combination of a `[sweep]`'s values, named `<stem>-<key>=<value>[-<key>=<value>…]`.
pub fn load_all(path: &Path) -> Result<Vec<Experiment>> {
    let stem = experiment_name(path)?;
    let shown = path.display();
    let mut seen = BTreeSet::new();
    seen.insert(path.canonicalize().unwrap_or_else(|_| path.to_path_buf()));
    let mut table = load_table(path, &mut seen)?;
    let sweep: BTreeMap<String, Vec<toml::Value>> = match table.remove("sweep") {
        Some(v) => v
            .try_into()
            .map_err(|e| anyhow::anyhow!("{shown}: [sweep]: {e}"))?,
        None => BTreeMap::new(),
    };
    let mut combos: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for (key, values) in &sweep {
        if values.is_empty() {
            bail!("{shown}: [sweep] {key:?} has no values");
        }
        if key.starts_with("sweep") || key == "extends" {
            bail!("{shown}: [sweep] {key:?} cannot be swept");
        }
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values
                    .iter()
                    .map(move |v| [c.clone(), vec![(key.clone(), v.clone())]].concat())
            })
            .collect();
    }
    let mut out = Vec::with_capacity(combos.len());
    for combo in combos {
        let mut t = table.clone();
        let mut name = stem.clone();
        for (key, value) in &combo {
            let what = format!("{shown}: [sweep] {key} = {value}");
            set_dotted(&mut t, key, value.clone()).with_context(|| what.clone())?;
            let last = key.rsplit('.').next().unwrap_or(key);
            name += &format!("-{last}={}", value_label(value));
        }
        let at = |err: &dyn std::fmt::Display| {
            if combo.is_empty() {
                anyhow::anyhow!("{shown}: {err}")
            } else {
                anyhow::anyhow!("{shown}: variant {name}: {err}")
            }
        };
        let mut e: Experiment = toml::Value::Table(t).try_into().map_err(|err| at(&err))?;
        e.name = name.clone();
        e.source = path.to_path_buf();
        e.extends = None;
        e.validate_settings().map_err(|err| at(&err))?;
        e.summary().map_err(|err| at(&err))?;
        if !e
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.=".contains(c))
        {
            bail!("{shown}: variant name {name:?} would not make a plain folder name; sweep numbers, booleans or simple strings");
        }
        out.push(e);
    }
    Ok(out)
}

/// The experiment's name: the file stem, which must make a plain folder name.
pub fn experiment_name(path: &Path) -> Result<String> {
    let stem = path.file_stem().and_then(|s| s.to_str()).with_context(|| {
        format!(
            "{}: cannot take an experiment name from this path",
            path.display()
        )
    })?;
    if stem.is_empty()
        || !stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.=".contains(c))
    {
        bail!(
            "{}: the file name {stem:?} must use only letters, digits, '-', '_', '.' and '=' (it names the results folder)",
            path.display()
        );
    }
    if path.extension().and_then(|e| e.to_str()) != Some("toml") {
        bail!("{}: expected a .toml experiment file", path.display());
    }
    Ok(stem.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn load_err(tag: &str, text: &str) -> String {
        let d = Dir::new(tag);
        d.write("baseline.toml", BASELINE);
        let p = d.write("x.toml", text);
        format!("{:#}", load(&p).unwrap_err())
    }

    #[test]
    fn baseline_summary_matches_keras_param_counts() {
        let d = Dir::new("summary");
        let e = load(&d.write("baseline.toml", BASELINE)).unwrap();
        let s = e.summary().unwrap();
        let params: Vec<usize> = s.iter().map(|l| l.params).collect();
        assert_eq!(params, vec![320, 0, 0, 540_900, 1010]);
        assert_eq!(
            s[1].output,
            Shape3 {
                h: 13,
                w: 13,
                c: 32
            }
        );
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
        assert_eq!(e.train.learning_rate, 0.001);
        assert_eq!(e.train.momentum, 0.9);
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
        assert_eq!(all[1].train.learning_rate, 0.001);
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
}
