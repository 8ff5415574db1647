//! `dense = { units, activation, init }`: a fully connected layer, bias and activation fused
//! into the GEMM pass.

use std::sync::Arc;

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::activation::{Activation, Kept};
use crate::model::affine::{add_column_sums, affine_forward};
use crate::model::gemm::{matmul, matmul_over, View};
use crate::model::init::Init;
use crate::model::layer::{Forward, Layer, LayerIo, LayerSpec, Mode, Place, Shape, StoredArray};
use crate::model::{data_of, put_grad, take_grad, Act, Param};
use crate::optim::in_backward::ParamGrad;
use crate::rng::Rng;

/// Fully connected layer settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseSpec {
    /// Output size.
    pub units: usize,
    /// Applied after the bias; `softmax` only on the last layer.
    #[serde(default)]
    pub activation: Activation,
    /// Weight initializer (biases start at zero).
    #[serde(default)]
    pub init: Init,
}

impl LayerSpec for DenseSpec {
    fn keras_name(&self) -> &'static str {
        "dense"
    }

    fn output_shape(&self, input: Shape, place: Place) -> Result<Shape, String> {
        if !input.flat {
            return Err(format!(
                "input is an image {input}; add `flatten = true` before a dense layer"
            ));
        }
        if self.units == 0 {
            return Err("units must be at least 1".into());
        }
        if self.activation == Activation::Softmax && !place.last {
            return Err("softmax is only allowed on the last layer".into());
        }
        Ok(Shape::vector(self.units))
    }

    fn param_count(&self, input: Shape) -> usize {
        input.len() * self.units + self.units
    }

    fn flops(&self, input: Shape, _output: Shape) -> f64 {
        2.0 * input.len() as f64 * self.units as f64
    }

    fn describe(&self) -> String {
        match self.activation {
            Activation::Linear => format!("dense {}", self.units),
            a => format!("dense {} {}", self.units, a.name()),
        }
    }

    fn build(&self, io: &LayerIo, dev: &Cpu, rng: &mut Rng) -> Box<dyn Layer> {
        let n_in = io.input.len();
        Box::new(Dense {
            path: io.path.clone(),
            inputs: n_in,
            units: self.units,
            act: self.activation,
            input_grad: io.input_grad,
            w: self
                .init
                .weights(dev, n_in * self.units, n_in, self.units, rng),
            b: Param::new(dev, vec![0.0; self.units]),
        })
    }
}

/// A dense layer. Weights are laid out `[input][unit]` (Keras' kernel order).
#[derive(Debug, Clone)]
pub struct Dense {
    /// Where it sits in the network ([`LayerIo::path`]).
    pub path: String,
    /// Input size.
    pub inputs: usize,
    /// Output size.
    pub units: usize,
    /// Applied after the bias.
    pub act: Activation,
    /// Whether the input needs a gradient.
    pub input_grad: bool,
    /// Weights.
    pub w: Param,
    /// Biases.
    pub b: Param,
}

impl Forward for Dense {
    /// y = act(x·w + b), recorded on x's tape.
    fn forward<T: Tape<f32, Cpu> + 'static>(&mut self, x: Act<T>, _mode: &mut Mode) -> Act<T> {
        let (x, mut tape) = x.split_tape();
        let batch = x.shape().0;
        let (n_in, n_out) = (self.inputs, self.units);
        let xv = data_of(&x);
        let y = affine_forward(&xv, batch, n_in, &self.w.value, &self.b.value, self.act);
        let saved_y = match T::OWNS_TAPE {
            true => self.act.keep(&y),
            false => Kept::Nothing,
        };
        let out_t = x.device().tensor_from_vec(y, (batch, n_out));
        if T::OWNS_TAPE {
            let (xg, yg) = (x.ghost(), out_t.ghost());
            let (wk, bk) = (self.w.grad_key(), self.b.grad_key());
            let w = Arc::clone(&self.w.value);
            let (act, input_grad) = (self.act, self.input_grad);
            tape.add_backward_op(move |grads| {
                let mut gz = take_grad!(grads, yg);
                act.backward_kept(&mut gz, &saved_y);
                let mut gw = ParamGrad::open(&wk, grads, true)?;
                let stale = gw.stale();
                matmul_over(
                    n_in,
                    n_out,
                    batch,
                    gw.values(),
                    stale,
                    View::transposed(&xv, n_in),
                    View::rows(&gz, n_out),
                );
                let mut gb = ParamGrad::open(&bk, grads, false)?;
                add_column_sums(gb.values(), &gz);
                if input_grad {
                    let gx = grads.get_or_alloc_mut(&xg)?;
                    matmul(
                        batch,
                        n_in,
                        n_out,
                        gx,
                        true,
                        View::rows(&gz, n_out),
                        View::transposed(&w, n_out),
                    );
                }
                // The weights are updated in place as their gradient closes (after the input
                // gradient, which needs them as they were).
                drop(w);
                gw.close(grads)?;
                gb.close(grads)?;
                put_grad!(grads, yg, gz);
                Ok(())
            });
        }
        out_t.put_tape(tape)
    }
}

impl Layer for Dense {
    fn params(&mut self) -> Vec<&mut Param> {
        vec![&mut self.w, &mut self.b]
    }

    fn arrays(&mut self) -> Vec<StoredArray<'_>> {
        vec![
            StoredArray {
                layer: self.path.clone(),
                name: "weight",
                shape: vec![self.inputs, self.units],
                values: Arc::make_mut(&mut self.w.value),
            },
            StoredArray {
                layer: self.path.clone(),
                name: "bias",
                shape: vec![self.units],
                values: Arc::make_mut(&mut self.b.value),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gradcheck::{check, random};

    fn dense(n_in: usize, n_out: usize, act: Activation) -> Dense {
        let dev = Cpu::default();
        let mut rng = Rng::new(8, 0);
        Dense {
            path: "1".into(),
            inputs: n_in,
            units: n_out,
            act,
            input_grad: true,
            w: Param::uniform(&dev, n_in * n_out, 0.5, &mut rng),
            b: Param::uniform(&dev, n_out, 0.5, &mut rng),
        }
    }

    #[test]
    fn forward_matches_naive_product() {
        let mut d = dense(7, 3, Activation::Linear);
        let x = random(2 * 7, 3);
        let y = d
            .forward(
                Cpu::default().tensor_from_vec(x.clone(), (2, 7)),
                &mut Mode::Eval,
            )
            .as_vec();
        for b in 0..2 {
            for u in 0..3 {
                let want = d.b.value[u]
                    + (0..7)
                        .map(|i| x[b * 7 + i] * d.w.value[i * 3 + u])
                        .sum::<f32>();
                assert!((y[b * 3 + u] - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        check(
            &mut dense(6, 4, Activation::Linear),
            random(3 * 6, 1),
            3,
            1e-2,
            2e-3,
        );
        check(
            &mut dense(5, 7, Activation::Relu),
            random(4 * 5, 2),
            4,
            1e-3,
            5e-3,
        );
        for act in [Activation::LeakyRelu(0.1), Activation::Elu(1.0)] {
            check(&mut dense(5, 7, act), random(4 * 5, 3), 4, 1e-3, 5e-3);
        }
    }
}
