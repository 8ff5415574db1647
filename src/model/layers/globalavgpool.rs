//! `globalavgpool = true`: the mean of each channel over the whole image, a flat vector of
//! channels (Keras' GlobalAveragePooling2D).

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::avgpool::AvgPool;
use super::pooling::PoolSpec;
use crate::model::layer::{Layer, LayerIo, LayerSpec, Place, Shape};
use crate::rng::Rng;

/// `globalavgpool = true`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GlobalAvgPoolSpec {
    /// Must be true.
    pub on: bool,
}

impl LayerSpec for GlobalAvgPoolSpec {
    fn keras_name(&self) -> &'static str {
        "global_average_pooling2d"
    }

    fn output_shape(&self, input: Shape, _place: Place) -> Result<Shape, String> {
        if !self.on {
            return Err("`globalavgpool = false` is not a layer; remove the entry".into());
        }
        if input.flat {
            return Err("input is flat; global average pooling needs an image".into());
        }
        Ok(Shape::vector(input.c))
    }

    fn param_count(&self, _input: Shape) -> usize {
        0
    }

    fn cost(&self, input: Shape, _output: Shape) -> f64 {
        4.0 * input.len() as f64
    }

    fn describe(&self) -> String {
        "global avgpool".into()
    }

    fn build(&self, io: LayerIo, _dev: &Cpu, _rng: &mut Rng) -> Box<dyn Layer> {
        // One window over the whole image: the values per sample are laid out as 1×1×c.
        let (i, o) = (io.input, Shape::image(1, 1, io.input.c));
        let window = PoolSpec::Table {
            pool: i.h.max(i.w),
            stride: None,
            padding: Default::default(),
        };
        Box::new(AvgPool {
            windows: window.windows_exact(i, o),
            input: i,
            output: o,
        })
    }
}
