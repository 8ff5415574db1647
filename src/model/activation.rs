//! Activation functions applied after a layer's bias, forward and backward.

use serde::{Deserialize, Serialize};

/// Activation functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Identity (Keras' default).
    #[default]
    Linear,
    /// max(0, x)
    Relu,
    /// Softmax over classes, trained with categorical cross-entropy; last layer only. The
    /// layer itself outputs logits: the softmax lives in the loss.
    Softmax,
}

impl Activation {
    /// The name used in files and descriptions.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Softmax => "softmax",
        }
    }

    /// Applies the activation in place to a layer's output (the identity for softmax, whose
    /// logits go to the loss).
    pub fn apply(self, y: &mut [f32]) {
        match self {
            Activation::Relu => y.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Linear | Activation::Softmax => {}
        }
    }

    /// Turns the gradient at the activation's output `g` into the gradient at its input, given
    /// the output `y` of the forward pass.
    pub fn backward(self, g: &mut [f32], y: &[f32]) {
        match self {
            Activation::Relu => {
                for (g, y) in g.iter_mut().zip(y) {
                    if *y <= 0.0 {
                        *g = 0.0;
                    }
                }
            }
            Activation::Linear | Activation::Softmax => {}
        }
    }

    /// Whether [`Activation::backward`] reads the forward output (else it need not be kept).
    pub fn needs_output(self) -> bool {
        self == Activation::Relu
    }

    /// Whether the gradient at the input is zero wherever the output is not positive (ReLU):
    /// kernels that fuse this into another pass ask this.
    pub fn zero_grad_at_nonpositive(self) -> bool {
        self == Activation::Relu
    }
}
