//! Per-batch transforms of training images: the place augmentation plugs in. The training loop
//! runs them on every training batch after scaling; evaluation never does, so validation and
//! test images are always seen untouched.
//!
//! A transform is one file implementing [`Transform`] and one line in [`pipeline`].

use crate::data::ImageShape;
use crate::experiment::DataSpec;
use crate::rng::Rng;

/// What a transform knows about the batch it changes.
#[derive(Debug, Clone, Copy)]
pub struct BatchInfo {
    /// Shape of each image (images lie one after the other, channels last).
    pub image: ImageShape,
    /// The input value of a background (zero) pixel after scaling: what uncovered areas of a
    /// moved image should hold.
    pub background: f32,
}

/// A change to a batch of scaled training images, drawing its randomness from `rng` (a stream
/// seeded by the experiment's seed, the fold and the epoch).
pub trait Transform: Send + Sync + std::fmt::Debug {
    /// Changes the images of `batch` in place.
    fn apply(&self, batch: &mut [f32], info: &BatchInfo, rng: &mut Rng);
}

/// The transforms the experiment's `[data]` table asks for, in the order they run. The seed's
/// vocabulary has none yet; each new one is registered here.
pub fn pipeline(_data: &DataSpec) -> Vec<Box<dyn Transform>> {
    Vec::new()
}
