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

    fn build(&self, io: &LayerIo, _dev: &Cpu, _rng: &mut Rng) -> Box<dyn Layer> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gradcheck::{check, random};
    use crate::model::layer::Mode;
    use crate::model::Act;

    #[test]
    fn means_each_channel_of_a_non_square_image() {
        let input = Shape::image(5, 4, 2);
        let spec = GlobalAvgPoolSpec { on: true };
        let output = spec.output_shape(input, Place { last: false }).unwrap();
        assert_eq!(output, Shape::vector(2));
        let io = LayerIo::at(1, input, output);
        let mut layer = spec.build(&io, &Cpu::default(), &mut Rng::new(0, 0));
        // Channel 0 holds 0..20, channel 1 is constant 3.
        let x: Vec<f32> = (0..20).flat_map(|i| [i as f32, 3.0]).collect();
        let t: Act = Cpu::default().tensor_from_vec(x, (1, 40));
        let y = layer.forward_plain(t, &mut Mode::Eval).as_vec();
        assert_eq!(y, vec![9.5, 3.0]);
        // The gradient of the layer `build` returned, the one a network runs.
        check(layer.as_mut(), random(2 * 40, 2), 2, 1e-2, 1e-3);
    }
}
