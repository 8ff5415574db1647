//! The schema of an experiment file: its tables, their defaults, and the resolved form (after
//! `extends` and defaults) that is written beside results and inside model files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize, Serializer};

use super::search::SearchGroup;
use crate::data::prep::Scaling;
use crate::data::transform::AugmentSpec;
use crate::model::layers::LayerEntry;
use crate::optim::OptimizerSpec;
use crate::schedule::ScheduleSpec;

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
    /// `[search]` as the file writes it (see [`super::search`]); a variant's is empty.
    #[serde(rename = "search", skip_serializing_if = "Option::is_none")]
    pub search_table: Option<toml::Table>,
    /// The search a variant belongs to; not part of the file (nor of any cache key).
    #[serde(skip)]
    pub search: Option<Arc<SearchGroup>>,
    /// A sweep's or search's variant: the dotted keys it varies and its values, as its name
    /// shows them.
    #[serde(skip)]
    pub values: Vec<(String, String)>,
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
        super::load::check_table(&table)
            .map_err(|e| anyhow::anyhow!("not a resolved experiment: {e}"))?;
        let mut e: Experiment = toml::from_str(text).context("not a resolved experiment")?;
        e.name = name.to_string();
        e.validate_settings()?;
        Ok(e)
    }
}
