//! Reading, verifying, fetching and scaling MNIST-format data.

pub mod idx;
pub mod mnist;
pub mod prep;

pub use mnist::{Dataset, Split};
