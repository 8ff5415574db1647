//! Datasets: the IDX reader, the datasets known by name, loading, fetching and verifying,
//! pixel scaling, the per-batch transforms of training images, and the recipes that made each
//! dataset's images from pictures.

pub mod catalog;
pub mod dataset;
pub mod fetch;
pub mod idx;
pub mod prep;
pub mod recipe;
pub mod transform;

pub use dataset::{Dataset, DatasetInfo, ImageShape, Split};
