//! `flatten = true`: an image to a vector. Activations are stored flat (NHWC) already, so the
//! layer only changes the declared shape.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::layer::{Forward, Layer, LayerIo, LayerSpec, Mode, Place, Shape, StoredArray};
use crate::model::{Act, Param};
use crate::rng::Rng;

/// `flatten = true` (`false` is refused: it would not be a layer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FlattenSpec {
    /// Always true in a valid file.
    pub on: bool,
}

impl LayerSpec for FlattenSpec {
    fn keras_name(&self) -> &'static str {
        "flatten"
    }

    fn output_shape(&self, input: Shape, _place: Place) -> Result<Shape, String> {
        if !self.on {
            return Err("`flatten = false` is not a layer; remove the entry".into());
        }
        if input.flat {
            return Err("input is already flat".into());
        }
        Ok(Shape::vector(input.len()))
    }

    fn param_count(&self, _input: Shape) -> usize {
        0
    }

    fn describe(&self) -> String {
        "flatten".into()
    }

    fn build(&self, _io: &LayerIo, _dev: &Cpu, _rng: &mut Rng) -> Box<dyn Layer> {
        Box::new(Flatten)
    }
}

/// The built flatten layer: the identity on NHWC data.
#[derive(Debug, Clone)]
pub struct Flatten;

impl Forward for Flatten {
    fn forward<T: Tape<f32, Cpu> + 'static>(&mut self, x: Act<T>, _mode: &mut Mode) -> Act<T> {
        x
    }
}

impl Layer for Flatten {
    fn params(&mut self) -> Vec<&mut Param> {
        Vec::new()
    }

    fn arrays(&mut self) -> Vec<StoredArray<'_>> {
        Vec::new()
    }
}
