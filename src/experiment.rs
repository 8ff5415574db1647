//! The experiment file: TOML schema, `extends`, defaults and validation.
//!
//! Every key has a default (the seed tutorial's settings), so a file that `extends` another
//! holds only what it changes. Each file is first checked on its own text (unknown keys and
//! wrong types keep the toml crate's line and column), then merged onto its parent table by
//! table (arrays such as `model.layers` are replaced whole, and so is a tagged table such as
//! `[train.optimizer.<kind>]` whose kind changes), then validated. Layer kinds and optimizer
//! kinds are declared where they are implemented (`model::layers`, `optim`); the network is
//! checked against the dataset's image shape and classes by [`Experiment::network`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize, Serializer};

use crate::data::prep::Scaling;
use crate::data::transform::AugmentSpec;
use crate::data::DatasetInfo;
use crate::model::layers::LayerEntry;
use crate::model::{limits, step_bytes, summarize, LayerSummary};
use crate::optim::OptimizerSpec;
use crate::schedule::ScheduleSpec;

/// The most epochs an experiment may train (a history row each; 10,000 epochs of MNIST would
/// take weeks of the seed's model).
pub const MAX_EPOCHS: usize = 10_000;

/// The most variants one `[sweep]` may make (each is a whole cross-validation); checked before
/// the grid is expanded.
pub const MAX_VARIANTS: u64 = 1_000;

/// A resolved experiment: one model variant and how to train and score it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "an experiment table")]
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
#[serde(deny_unknown_fields, default, expecting = "a [data] table")]
pub struct DataSpec {
    /// Folder name under the data root: `mnist`, `fashion-mnist`, or any folder of
    /// MNIST-format IDX files.
    pub dataset: String,
    /// Pixel scaling.
    pub scaling: Scaling,
    /// Use only the first `limit` training images (quick runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Transforms of training batches (augmentation).
    #[serde(skip_serializing_if = "AugmentSpec::is_empty")]
    pub augment: AugmentSpec,
}

/// `[model]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a [model] table")]
pub struct ModelSpec {
    /// Layers in order, input first.
    pub layers: Vec<LayerEntry>,
}

/// `[train]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "TrainFields")]
pub struct TrainSpec {
    /// The optimizer and its settings.
    pub optimizer: OptimizerSpec,
    /// Passes over the training data.
    pub epochs: usize,
    /// Samples per step (the last batch of an epoch may be smaller, as in Keras).
    pub batch_size: usize,
    /// Seed for weight init and batch order.
    pub seed: u64,
    /// Learning-rate schedule (none: constant).
    pub schedule: Option<ScheduleSpec>,
    /// Label smoothing ε of the training loss: targets (1 − ε)·one-hot + ε/classes (Keras).
    pub label_smoothing: f32,
}

/// `[train]` as a file may write it: the optimizer as a table or a name, and the seed's flat
/// `learning_rate` and `momentum`, which set the optimizer's keys of the same names.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [train] table")]
struct TrainFields {
    #[serde(default, deserialize_with = "crate::optim::deserialize_named")]
    optimizer: Option<OptimizerSpec>,
    #[serde(default, deserialize_with = "crate::optim::deserialize_named")]
    schedule: Option<ScheduleSpec>,
    label_smoothing: Option<f32>,
    learning_rate: Option<f32>,
    momentum: Option<f32>,
    epochs: Option<usize>,
    batch_size: Option<usize>,
    seed: Option<u64>,
}

impl TryFrom<TrainFields> for TrainSpec {
    type Error = String;

    fn try_from(f: TrainFields) -> Result<Self, String> {
        let defaults = TrainSpec::default();
        let mut optimizer = f.optimizer.unwrap_or_default();
        if let Some(lr) = f.learning_rate {
            *optimizer.spec_mut().learning_rate_mut() = lr;
        }
        if let Some(m) = f.momentum {
            let key = optimizer.key();
            match optimizer.spec_mut().momentum_mut() {
                Some(slot) => *slot = m,
                None => {
                    return Err(format!(
                        "train.momentum: the {key} optimizer has no momentum"
                    ))
                }
            }
        }
        Ok(TrainSpec {
            optimizer,
            epochs: f.epochs.unwrap_or(defaults.epochs),
            batch_size: f.batch_size.unwrap_or(defaults.batch_size),
            seed: f.seed.unwrap_or(defaults.seed),
            schedule: f.schedule,
            label_smoothing: f.label_smoothing.unwrap_or(0.0),
        })
    }
}

impl Serialize for TrainSpec {
    /// The flat form of the seed's files when it says everything (see
    /// [`crate::optim::OptimizerKind::flat`]), else `[train.optimizer.<kind>]`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Flat<'a> {
            optimizer: &'a str,
            learning_rate: f32,
            momentum: f32,
            epochs: usize,
            batch_size: usize,
            seed: u64,
            #[serde(skip_serializing_if = "crate::optim::is_zero")]
            label_smoothing: f32,
            #[serde(skip_serializing_if = "Option::is_none")]
            schedule: Option<&'a ScheduleSpec>,
        }
        #[derive(Serialize)]
        struct Nested<'a> {
            epochs: usize,
            batch_size: usize,
            seed: u64,
            #[serde(skip_serializing_if = "crate::optim::is_zero")]
            label_smoothing: f32,
            optimizer: &'a OptimizerSpec,
            #[serde(skip_serializing_if = "Option::is_none")]
            schedule: Option<&'a ScheduleSpec>,
        }
        match self.optimizer.spec().flat() {
            Some((learning_rate, momentum)) => Flat {
                optimizer: self.optimizer.key(),
                learning_rate,
                momentum,
                epochs: self.epochs,
                batch_size: self.batch_size,
                seed: self.seed,
                label_smoothing: self.label_smoothing,
                schedule: self.schedule.as_ref(),
            }
            .serialize(s),
            None => Nested {
                epochs: self.epochs,
                batch_size: self.batch_size,
                seed: self.seed,
                label_smoothing: self.label_smoothing,
                optimizer: &self.optimizer,
                schedule: self.schedule.as_ref(),
            }
            .serialize(s),
        }
    }
}

/// `[cv]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a [cv] table")]
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
            augment: AugmentSpec::default(),
        }
    }
}

impl Default for TrainSpec {
    fn default() -> Self {
        TrainSpec {
            optimizer: OptimizerSpec::default(),
            epochs: 10,
            batch_size: 32,
            seed: 1,
            schedule: None,
            label_smoothing: 0.0,
        }
    }
}

impl Default for CvSpec {
    fn default() -> Self {
        CvSpec { folds: 5, seed: 1 }
    }
}

impl Experiment {
    /// Where this experiment came from, to start an error message: `path: ` (and `variant
    /// NAME: ` for a sweep variant).
    fn origin(&self) -> String {
        if self.source.as_os_str().is_empty() {
            return String::new();
        }
        let stem = self.source.file_stem().and_then(|s| s.to_str());
        if stem == Some(self.name.as_str()) {
            format!("{}: ", self.source.display())
        } else {
            format!("{}: variant {}: ", self.source.display(), self.name)
        }
    }

    /// Where it came from, for messages: the file, and the variant for a sweep variant.
    fn origin_or_path(&self) -> String {
        let o = self.origin();
        o.strip_suffix(": ").unwrap_or(&o).to_string()
    }

    /// Checks the network against the dataset's image shape and classes: every layer's output
    /// shape and parameter count, or which layer cannot take its input and why.
    ///
    /// Also refuses what could not fit in memory (see [`crate::model::limits`]): the estimate
    /// of one training step at `train.batch_size` and the layer that holds the most.
    pub fn network(&self, info: &DatasetInfo) -> Result<Vec<LayerSummary>> {
        let rows = summarize(&self.model.layers, info).map_err(|e| {
            anyhow::anyhow!(
                "{}{e:#} (dataset {:?}, images {})",
                self.origin(),
                self.data.dataset,
                info.image
            )
        })?;
        let batch = self.train.batch_size;
        let (bytes, largest) = step_bytes(&rows, batch, crate::train::EVAL_BATCH);
        if bytes > limits::STEP_BYTES {
            bail!(
                "{}a training step needs about {:.1} GB (batch {batch}; most per image in model.layers[{largest}] ({}), output {}), above the limit of {:.1} GB; lower train.batch_size or the layer sizes",
                self.origin(),
                bytes / 1e9,
                self.model.layers[largest].key(),
                rows[largest].output,
                limits::STEP_BYTES / 1e9
            );
        }
        Ok(rows)
    }

    /// How many of `available` training images it uses: the first `data.limit`, or all. A limit
    /// above what the dataset has is a warning (on stderr), not silently clamped.
    pub fn images_used(&self, available: usize) -> usize {
        match self.data.limit {
            Some(l) if l > available => {
                crate::output::eprintln(&format!(
                    "warning: {}data.limit is {l}, but dataset {:?} has {available} training images; using all {available}",
                    self.origin(),
                    self.data.dataset
                ));
                available
            }
            Some(l) => l,
            None => available,
        }
    }

    /// How it trains, in a few words per line: epochs, batch, optimizer, schedule, label
    /// smoothing, then the augmentation (if any).
    pub fn describe_training(&self) -> Vec<String> {
        let t = &self.train;
        let mut lines = vec![format!(
            "train: {} epochs, batch {}, {}{}",
            t.epochs,
            t.batch_size,
            t.optimizer.spec().describe(),
            self.describe_schedule_and_loss()
        )];
        let augment = self.describe_augment();
        if !augment.is_empty() {
            lines.push(format!("augment: {}", augment.join("; ")));
        }
        lines
    }

    /// ", <schedule> schedule, label smoothing ε" for what is set, else nothing.
    pub fn describe_schedule_and_loss(&self) -> String {
        let t = &self.train;
        let mut s = String::new();
        if let Some(schedule) = &t.schedule {
            s += &format!(", {} schedule", schedule.spec().describe());
        }
        if t.label_smoothing != 0.0 {
            s += &format!(", label smoothing {}", t.label_smoothing);
        }
        s
    }

    /// A few words for each `[data.augment]` transform, in the order they run.
    pub fn describe_augment(&self) -> Vec<String> {
        self.data
            .augment
            .specs()
            .iter()
            .map(|(_, s)| s.describe())
            .collect()
    }

    /// Checks every setting outside the layer list.
    fn validate_settings(&self) -> Result<()> {
        let t = &self.train;
        if t.epochs == 0 || t.epochs > MAX_EPOCHS {
            bail!("train.epochs is {}, expected 1..={MAX_EPOCHS}", t.epochs);
        }
        if t.batch_size == 0 {
            bail!("train.batch_size is 0, expected at least 1");
        }
        let opt = t.optimizer.spec();
        let lr = opt.learning_rate();
        if !(lr > 0.0 && lr.is_finite()) {
            bail!("train.learning_rate is {lr}, expected a positive number");
        }
        opt.validate()
            .map_err(|e| anyhow::anyhow!("train.optimizer.{}: {e}", t.optimizer.key()))?;
        if let Some(s) = &t.schedule {
            let key = s.key();
            s.spec()
                .validate()
                .and_then(|()| s.spec().validate_for(t.epochs))
                .map_err(|e| anyhow::anyhow!("train.schedule.{key}: {e}"))?;
        }
        if !(0.0..1.0).contains(&t.label_smoothing) {
            bail!(
                "train.label_smoothing is {}, expected 0 <= label_smoothing < 1",
                t.label_smoothing
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
        for (key, spec) in self.data.augment.specs() {
            spec.validate()
                .map_err(|e| anyhow::anyhow!("data.augment.{key}: {e}"))?;
        }
        crate::data::catalog::check_name(&self.data.dataset)
            .map_err(|e| anyhow::anyhow!("data.dataset: {e}"))?;
        Ok(())
    }

    /// The resolved experiment as TOML (written next to results and inside saved models).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("an Experiment always serializes")
    }

    /// The resolved experiment without what cannot change a trained number (its description
    /// and whether a final model is wanted): what cache keys are made of.
    pub fn trained_toml(&self) -> String {
        Experiment {
            description: String::new(),
            final_model: false,
            ..self.clone()
        }
        .to_toml()
    }

    /// Parses a resolved experiment written by [`Experiment::to_toml`]; its network is checked
    /// by [`Experiment::network`] once the dataset is known.
    pub fn from_resolved_toml(name: &str, text: &str) -> Result<Self> {
        let table: toml::Table = toml::from_str(text).context("not a resolved experiment")?;
        check_table(&table).map_err(|e| anyhow::anyhow!("not a resolved experiment: {e}"))?;
        let mut e: Experiment = toml::from_str(text).context("not a resolved experiment")?;
        e.name = name.to_string();
        e.validate_settings()?;
        Ok(e)
    }
}

/// Tables that hold exactly one key naming a kind (`[train.optimizer.sgd]`): a child that
/// names another kind replaces the parent's table instead of merging into it.
const TAGGED: [&str; 2] = ["train.optimizer", "train.schedule"];

/// What no schema check can see in an experiment file's table: a tagged table naming two kinds
/// (serde would keep one and drop the other silently) and a float that is not finite (TOML
/// writes `nan` and `inf`; no setting takes one).
fn check_table(table: &toml::Table) -> Result<(), String> {
    for (tagged, what) in TAGGED.iter().zip(["optimizer", "schedule"]) {
        let (section, key) = tagged.split_once('.').expect("a dotted path");
        let kinds = table
            .get(section)
            .and_then(|t| t.get(key))
            .and_then(|v| v.as_table())
            .map(|t| t.keys().map(String::as_str).collect::<Vec<_>>())
            .unwrap_or_default();
        if kinds.len() > 1 {
            return Err(format!(
                "{tagged} names {} kinds ({}), expected one: an experiment has one {what}; keep one [{tagged}.<kind>] table",
                kinds.len(),
                kinds.join(" and ")
            ));
        }
    }
    for (k, v) in table {
        check_finite(v, &toml_key(k))?;
    }
    Ok(())
}

/// `key` as it is written in a dotted TOML path (quoted when it holds a dot or space).
fn toml_key(key: &str) -> String {
    if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// Fails on the first float under `value` (at dotted `path`) that is NaN or infinite.
fn check_finite(value: &toml::Value, path: &str) -> Result<(), String> {
    match value {
        toml::Value::Float(f) if !f.is_finite() => {
            Err(format!("{path} is {f}, expected a finite number"))
        }
        toml::Value::Table(t) => t
            .iter()
            .try_for_each(|(k, v)| check_finite(v, &format!("{path}.{}", toml_key(k)))),
        toml::Value::Array(a) => a
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_finite(v, &format!("{path}[{i}]"))),
        _ => Ok(()),
    }
}

/// Merges `child` onto `base` (at dotted `path`): tables merge key by key, anything else is
/// replaced.
fn merge(base: &mut toml::Table, child: toml::Table, path: &str) {
    for (k, v) in child {
        let at = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(c))
                if !(TAGGED.contains(&at.as_str()) && b.keys().ne(c.keys())) =>
            {
                merge(b, c, &at)
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// The optimizer kind of a normalized table (`sgd` when it names none).
fn optimizer_kind(table: &toml::Table) -> String {
    table
        .get("train")
        .and_then(|t| t.get("optimizer"))
        .and_then(|o| o.as_table())
        .and_then(|o| o.keys().next().cloned())
        .unwrap_or_else(|| OptimizerSpec::default().key().to_string())
}

/// Rewrites one file's `[train]` into the form files merge in: `optimizer = "<kind>"` and the
/// flat `learning_rate` / `momentum` become `[train.optimizer.<kind>]` keys, the kind being the
/// file's own or else `inherited`.
fn normalize_train(table: &mut toml::Table, inherited: &str, shown: &str) -> Result<()> {
    let Some(toml::Value::Table(train)) = table.get_mut("train") else {
        return Ok(());
    };
    let flat: Vec<(String, toml::Value)> = ["learning_rate", "momentum"]
        .iter()
        .filter_map(|k| train.remove(*k).map(|v| (k.to_string(), v)))
        .collect();
    let (kind, mut settings) = match train.remove("optimizer") {
        Some(toml::Value::String(kind)) => (kind, toml::Table::new()),
        Some(toml::Value::Table(t)) => match t.into_iter().next() {
            Some((kind, toml::Value::Table(settings))) => (kind, settings),
            // The schema check has refused anything else already.
            _ => bail!("{shown}: [train.optimizer] must name one optimizer"),
        },
        Some(_) => bail!("{shown}: train.optimizer must be a name or a table"),
        None if flat.is_empty() => return Ok(()),
        None => (inherited.to_string(), toml::Table::new()),
    };
    for (key, value) in flat {
        if settings.contains_key(&key) {
            bail!("{shown}: train.{key} and train.optimizer.{kind}.{key} are both set; keep one");
        }
        settings.insert(key, value);
    }
    let mut optimizer = toml::Table::new();
    optimizer.insert(kind, toml::Value::Table(settings));
    train.insert("optimizer".into(), toml::Value::Table(optimizer));
    Ok(())
}

/// Reads one file, checks it alone against the schema, and returns it merged onto its parents
/// (normalized: see [`normalize_train`]).
fn load_table(path: &Path, seen: &mut BTreeSet<PathBuf>) -> Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let shown = path.display().to_string();
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    check_table(&table).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    // Each file alone must fit the schema: unknown keys and wrong types keep their line/column.
    let own: Experiment = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    let Some(parent) = own.extends else {
        normalize_train(&mut table, OptimizerSpec::default().key(), &shown)?;
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
    normalize_train(&mut table, &optimizer_kind(&base), &shown)?;
    // The parent's description and final flag describe the parent, not this variant.
    base.remove("description");
    base.remove("final");
    merge(&mut base, table, "");
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

/// Every experiment (and sweep variant) of `files`, or only the one named `only`.
pub fn load_files(files: &[PathBuf], only: Option<&str>) -> Result<Vec<Experiment>> {
    let mut all = Vec::new();
    for f in files {
        all.extend(load_all(f)?);
    }
    let mut all = unique_names(all)?;
    if let Some(name) = only {
        all.retain(|e| e.name == name);
        if all.is_empty() {
            let shown: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            bail!("no experiment named {name:?} in {}", shown.join(", "));
        }
    }
    Ok(all)
}

/// Drops an experiment given twice (the same file named twice, e.g. by overlapping globs) and
/// refuses two different sources of one name: both would write `results/<name>/`, each
/// overwriting the other's folds.
pub fn unique_names(exps: Vec<Experiment>) -> Result<Vec<Experiment>> {
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let mut seen: Vec<Experiment> = Vec::new();
    for e in exps {
        match seen.iter().find(|s| s.name == e.name) {
            Some(s) if canonical(&s.source) == canonical(&e.source) => {}
            Some(s) => bail!(
                "two experiments are named {:?}: {} and {}; both would write results/{}/ (rename one file, or the sweep)",
                e.name,
                s.origin_or_path(),
                e.origin_or_path(),
                e.name
            ),
            None => seen.push(e),
        }
    }
    Ok(seen)
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
/// combination of a `[sweep]`'s values, named `<stem>-<key>=<value>[-<key>=<value>…]`. Its
/// network is checked by [`Experiment::network`] once the dataset is known.
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
    let mut variants: u64 = 1;
    for (key, values) in &sweep {
        if values.is_empty() {
            bail!("{shown}: [sweep] {key:?} has no values");
        }
        if key.starts_with("sweep") || key == "extends" {
            bail!("{shown}: [sweep] {key:?} cannot be swept");
        }
        variants = variants.saturating_mul(values.len() as u64);
    }
    if variants > MAX_VARIANTS {
        let counts: Vec<String> = sweep.values().map(|v| v.len().to_string()).collect();
        bail!(
            "{shown}: [sweep] makes {} variants ({} values of {} keys), above the limit of {MAX_VARIANTS}; sweep fewer values at once",
            if variants == u64::MAX {
                "more than 2^64".to_string()
            } else {
                variants.to_string()
            },
            counts.join(" × "),
            sweep.len()
        );
    }
    let mut combos: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for (key, values) in &sweep {
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
    // A plain folder name: not `.` or `..` (the results root or its parent) and not hidden.
    if !stem.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.=".contains(c))
    {
        bail!(
            "{}: the file name {stem:?} must start with a letter or digit and use only letters, digits, '-', '_', '.' and '=' (it names the results folder)",
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
    use crate::model::layer::Shape;

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
        merge(&mut base, child, "");
        assert_eq!(
            base["train"]["optimizer"]
                .as_table()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            vec!["other"]
        );
        let same: toml::Table = toml::from_str("[train.optimizer.other]\ngamma = 1\n").unwrap();
        merge(&mut base, same, "");
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
}
