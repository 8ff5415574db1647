//! The experiment file: TOML schema, `extends`, defaults and validation.
//!
//! Every key has a default (the seed tutorial's settings), so a file that `extends` another
//! holds only what it changes. Each file is first checked on its own text (unknown keys and
//! wrong types keep the toml crate's line and column), then merged onto its parent table by
//! table (arrays such as `model.layers` are replaced whole, and so is a tagged table such as
//! `[train.optimizer.<kind>]` whose kind changes), then validated. Layer kinds and optimizer
//! kinds are declared where they are implemented (`model::layers`, `optim`); the network is
//! checked against the dataset's image shape and classes by [`Experiment::network`].
//!
//! One concern a file: [`spec`] is the schema (the tables a file may hold, their defaults and
//! the resolved form written beside results), `load` reads files (`extends`, merging, the
//! checks no schema can make), `sweep` expands a `[sweep]` into variants, `validate` checks
//! the settings and the network against the data, and `describe` is how an experiment
//! introduces itself in messages and tables.

mod describe;
mod load;
pub mod search;
pub mod spec;
mod sweep;
mod validate;

pub use load::{experiment_name, load, load_all, load_files, unique_names};
pub use spec::{CvSpec, DataSpec, Experiment, ModelSpec, TrainSpec};
pub use sweep::MAX_VARIANTS;
pub use validate::MAX_EPOCHS;

#[cfg(test)]
mod tests;
