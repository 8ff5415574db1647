//! Datasets: the IDX reader, the datasets known by name, loading, fetching and verifying,
//! pixel scaling, and the per-batch transforms of training images.

pub mod catalog;
pub mod dataset;
pub mod fetch;
pub mod idx;
pub mod prep;
pub mod transform;

pub use dataset::{Dataset, DatasetInfo, ImageShape, Split};
