//! `avgpool = N` or `avgpool = { pool, stride, padding }`: average pooling over N×N windows
//! (stride N by default), Keras' AveragePooling2D. With `padding = "same"` a window that
//! overhangs the input averages only the values inside it (TensorFlow's rule).

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::pooling::{PoolSpec, Windows};
use crate::model::layer::{Forward, Layer, LayerIo, LayerSpec, Mode, Place, Shape, StoredArray};
use crate::model::{data_of, put_grad, take_grad, Act, Param};
use crate::rng::Rng;

/// `avgpool = …`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AvgPoolSpec(pub PoolSpec);

impl LayerSpec for AvgPoolSpec {
    fn keras_name(&self) -> &'static str {
        "average_pooling2d"
    }

    fn output_shape(&self, input: Shape, _place: Place) -> Result<Shape, String> {
        self.0.output_shape(input, "average")
    }

    fn param_count(&self, _input: Shape) -> usize {
        0
    }

    fn cost(&self, input: Shape, _output: Shape) -> f64 {
        4.0 * input.len() as f64
    }

    fn describe(&self) -> String {
        format!("avgpool {}", self.0.describe())
    }

    fn build(&self, io: &LayerIo, _dev: &Cpu, _rng: &mut Rng) -> Box<dyn Layer> {
        Box::new(AvgPool {
            windows: self.0.windows(io.input, io.output),
            input: io.input,
            output: io.output,
        })
    }
}

/// An average-pooling layer (global average pooling is the one window covering the image).
#[derive(Debug, Clone)]
pub struct AvgPool {
    /// The windows.
    pub windows: Windows,
    /// Input shape per sample.
    pub input: Shape,
    /// Output shape per sample.
    pub output: Shape,
}

impl Forward for AvgPool {
    fn forward<T: Tape<f32, Cpu> + 'static>(&mut self, x: Act<T>, _mode: &mut Mode) -> Act<T> {
        let (x, mut tape) = x.split_tape();
        let batch = x.shape().0;
        let c = self.input.c;
        let v = data_of(&x);
        let mut y = vec![0.0f32; batch * self.output.len()];
        self.windows.each(batch, |o, cells| {
            let out = &mut y[o..o + c];
            for &s in cells {
                for (a, x) in out.iter_mut().zip(&v[s..s + c]) {
                    *a += x;
                }
            }
            let inv = 1.0 / cells.len() as f32;
            out.iter_mut().for_each(|a| *a *= inv);
        });
        let out_t = x.device().tensor_from_vec(y, (batch, self.output.len()));
        if T::OWNS_TAPE {
            let (xg, yg, windows) = (x.ghost(), out_t.ghost(), self.windows);
            tape.add_backward_op(move |grads| {
                let gy = take_grad!(grads, yg);
                let gx = grads.get_or_alloc_mut(&xg)?;
                windows.each(batch, |o, cells| {
                    let inv = 1.0 / cells.len() as f32;
                    for &s in cells {
                        for (g, d) in gx[s..s + c].iter_mut().zip(&gy[o..o + c]) {
                            *g += d * inv;
                        }
                    }
                });
                put_grad!(grads, yg, gy);
                Ok(())
            });
        }
        out_t.put_tape(tape)
    }
}

impl Layer for AvgPool {
    fn params(&mut self) -> Vec<&mut Param> {
        Vec::new()
    }

    fn arrays(&mut self) -> Vec<StoredArray<'_>> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gradcheck::{check, random};
    use crate::model::geometry::Padding;

    fn layer(spec: PoolSpec, input: Shape) -> AvgPool {
        let output = spec.output_shape(input, "average").unwrap();
        AvgPool {
            windows: spec.windows(input, output),
            input,
            output,
        }
    }

    #[test]
    fn same_padding_averages_only_the_values_inside() {
        // 3×3 input 1..9, pool 2 stride 2 same: windows {1,2,4,5}, {3,6}, {7,8}, {9} (Keras
        // pads the bottom/right; TensorFlow's average excludes the padding).
        let spec = PoolSpec::Table {
            pool: 2,
            stride: Some(2),
            padding: Padding::Same,
        };
        let mut p = layer(spec, Shape::image(3, 3, 1));
        let x: Act = Cpu::default().tensor_from_vec((1..=9).map(|v| v as f32).collect(), (1, 9));
        let y = p.forward(x, &mut Mode::Eval).as_vec();
        assert_eq!(y, vec![3.0, 4.5, 7.5, 9.0]);
    }

    #[test]
    fn same_padding_matches_keras() {
        // keras.layers.AveragePooling2D(2, strides=2, padding="same") on conv.rs's Keras input
        // (2, 5, 5, 2), Keras 3.15.1.
        let want = [
            0.1, -0.007143, -0.078571, 0.064286, 0.1, 0.242857, -0.042857, 0.1, 0.028571,
            -0.078571, -0.042857, 0.1, 0.1, -0.257143, 0.171429, 0.314286, -0.4, -0.257143,
            -0.007143, 0.135714, 0.064286, -0.042857, 0.242857, -0.114286, 0.1, -0.007143,
            -0.078571, 0.064286, 0.1, 0.242857, -0.257143, -0.114286, 0.314286, -0.042857,
            -0.257143, -0.114286,
        ];
        let spec = PoolSpec::Table {
            pool: 2,
            stride: Some(2),
            padding: Padding::Same,
        };
        let mut p = layer(spec, Shape::image(5, 5, 2));
        let (x, _) = crate::model::layers::conv::tests::keras_problem();
        let y = p
            .forward(Cpu::default().tensor_from_vec(x, (2, 50)) as Act, &mut Mode::Eval)
            .as_vec();
        assert_eq!(y.len(), want.len());
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut p = layer(PoolSpec::Size(2), Shape::image(5, 4, 3));
        check(&mut p, random(2 * 60, 5), 2, 1e-2, 1e-3);
        let spec = PoolSpec::Table {
            pool: 3,
            stride: Some(2),
            padding: Padding::Same,
        };
        let mut p = layer(spec, Shape::image(5, 6, 2));
        check(&mut p, random(2 * 60, 6), 2, 1e-2, 1e-3);
    }
}
