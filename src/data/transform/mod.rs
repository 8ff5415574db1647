//! Per-batch transforms of training images: where augmentation plugs in. The training loop
//! runs them on every training batch after scaling; evaluation never does, so validation and
//! test images are always seen untouched.
//!
//! A transform kind is one file in this folder implementing [`TransformSpec`] (its settings, a
//! key of `[data.augment]`) and [`Transform`], plus one line in the registry below. Transforms
//! run in registry order.

use serde::{Deserialize, Serialize};

use crate::data::ImageShape;
use crate::rng::Rng;

/// What a transform knows about the batch it changes.
#[derive(Debug, Clone, Copy)]
pub struct BatchInfo {
    /// Shape of each image (images lie one after the other, channels last).
    pub image: ImageShape,
    /// The input value of a background (zero) pixel after scaling: what uncovered areas of a
    /// moved image should hold.
    pub background: f32,
    /// The input value of a full-intensity (255) pixel after scaling.
    pub foreground: f32,
}

/// A change to a batch of scaled training images, drawing its randomness from `rng` (a stream
/// seeded by the experiment's seed, the fold and the epoch).
pub trait Transform: Send + Sync + std::fmt::Debug {
    /// Changes the images of `batch` in place.
    fn apply(&self, batch: &mut [f32], info: &BatchInfo, rng: &mut Rng);
}

/// A transform's settings, as `[data.augment]` declares them.
pub trait TransformSpec {
    /// Checks the settings; says which is wrong and what was expected.
    fn validate(&self) -> Result<(), String>;
    /// A few words for the report.
    fn describe(&self) -> String;
    /// The transform.
    fn build(&self) -> Box<dyn Transform>;
}

/// Declares [`AugmentSpec`]: one optional key per transform kind, each in its own module.
macro_rules! registry {
    ($($key:ident => $spec:ident,)*) => {
        $(pub mod $key;)*

        /// `[data.augment]`: the transforms applied to training batches, each optional.
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct AugmentSpec {
            $(
                #[doc = concat!("`", stringify!($key), " = …`")]
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $key: Option<$key::$spec>,
            )*
        }

        impl AugmentSpec {
            /// The transforms asked for, with their keys, in the order they run.
            pub fn specs(&self) -> Vec<(&'static str, &dyn TransformSpec)> {
                let all: Vec<Option<(&'static str, &dyn TransformSpec)>> = vec![
                    $(self.$key.as_ref().map(|s| (stringify!($key), s as &dyn TransformSpec)),)*
                ];
                all.into_iter().flatten().collect()
            }

            /// Whether no transform is asked for.
            pub fn is_empty(&self) -> bool {
                self.specs().is_empty()
            }
        }
    };
}

// Each transform kind is one line here.
registry! {
    affine => AffineSpec,
    elastic => ElasticSpec,
    flip => FlipSpec,
    crop => CropSpec,
    erasing => ErasingSpec,
}

pub mod warp;

/// The transforms an experiment's `[data.augment]` asks for, in the order they run.
pub fn pipeline(augment: &AugmentSpec) -> Vec<Box<dyn Transform>> {
    augment
        .specs()
        .into_iter()
        .map(|(_, s)| s.build())
        .collect()
}
