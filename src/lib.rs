//! mnist-lab: a declarative experiment runner for CNNs on MNIST-format data, built on dfdx.
//!
//! Data flows one way: experiment files → training → result rows → exporters.

pub mod alloc;
pub mod bench;
pub mod check;
pub mod checkpoint;
pub mod cv;
pub mod data;
pub mod experiment;
pub mod files;
pub mod final_model;
pub mod key;
pub mod model;
pub mod optim;
pub mod output;
pub mod predict;
pub mod progress;
pub mod results;
pub mod rng;
pub mod schedule;
pub mod train;
