//! Activation functions applied after a layer's bias (or a batch norm), forward and backward.
//! Each backward pass reads only the forward output, so no layer keeps its pre-activation.

use super::par;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Keras' default slope of `leaky_relu` (keras.activations.leaky_relu).
pub const LEAKY_SLOPE: f32 = 0.2;
/// Keras' default α of `elu`.
pub const ELU_ALPHA: f32 = 1.0;

/// Activation functions: `"relu"`, or `{ leaky_relu = 0.1 }` for a setting other than Keras'.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Activation {
    /// Identity (Keras' default).
    #[default]
    Linear,
    /// max(0, x)
    Relu,
    /// x for x > 0, slope·x otherwise.
    LeakyRelu(f32),
    /// x for x > 0, α·(eˣ − 1) otherwise.
    Elu(f32),
    /// Softmax over classes, trained with categorical cross-entropy; last layer only. The
    /// layer itself outputs logits: the softmax lives in the loss.
    Softmax,
}

const NAMES: &str = "linear, relu, leaky_relu, elu, softmax";

impl Serialize for Activation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Activation::LeakyRelu(a) if a != LEAKY_SLOPE => {
                std::collections::BTreeMap::from([("leaky_relu", a)]).serialize(s)
            }
            Activation::Elu(a) if a != ELU_ALPHA => {
                std::collections::BTreeMap::from([("elu", a)]).serialize(s)
            }
            a => s.serialize_str(a.name()),
        }
    }
}

impl<'de> Deserialize<'de> for Activation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Name(String),
            Table(std::collections::BTreeMap<String, f32>),
        }
        let unknown = |name: &str| {
            de::Error::custom(format!(
                "unknown activation {name:?}, expected one of: {NAMES}"
            ))
        };
        match Form::deserialize(d).map_err(|_| {
            de::Error::custom(format!(
                "expected an activation name ({NAMES}) or a table such as {{ leaky_relu = 0.1 }}"
            ))
        })? {
            Form::Name(n) => match n.as_str() {
                "linear" => Ok(Activation::Linear),
                "relu" => Ok(Activation::Relu),
                "leaky_relu" => Ok(Activation::LeakyRelu(LEAKY_SLOPE)),
                "elu" => Ok(Activation::Elu(ELU_ALPHA)),
                "softmax" => Ok(Activation::Softmax),
                other => Err(unknown(other)),
            },
            Form::Table(t) => {
                let mut it = t.into_iter();
                match (it.next(), it.next()) {
                    (Some((k, a)), None) => match k.as_str() {
                        "leaky_relu" if (0.0..1.0).contains(&a) => Ok(Activation::LeakyRelu(a)),
                        "leaky_relu" => Err(de::Error::custom(format!(
                            "leaky_relu slope is {a}, expected 0 <= slope < 1"
                        ))),
                        "elu" if a > 0.0 => Ok(Activation::Elu(a)),
                        "elu" => Err(de::Error::custom(format!("elu alpha is {a}, expected > 0"))),
                        other => Err(de::Error::custom(format!(
                            "{other:?} takes no setting; settings: {{ leaky_relu = slope }}, {{ elu = alpha }}"
                        ))),
                    },
                    _ => Err(de::Error::custom(
                        "expected one activation, e.g. { leaky_relu = 0.1 }",
                    )),
                }
            }
        }
    }
}

impl Activation {
    /// The name used in files and descriptions.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::LeakyRelu(_) => "leaky_relu",
            Activation::Elu(_) => "elu",
            Activation::Softmax => "softmax",
        }
    }

    /// Applies the activation in place to a layer's output (the identity for softmax, whose
    /// logits go to the loss); a large one by pieces on the threads.
    pub fn apply(self, y: &mut [f32]) {
        if y.len() >= 2 * par::MIN_VALUES && par::threads() > 1 && self.needs_output() {
            let pieces = par::row_ranges(y.len(), y.len());
            return par::each_mut(y, 1, &pieces, |_, y| self.apply_here(y));
        }
        self.apply_here(y)
    }

    /// [`Activation::apply`] on the calling thread.
    fn apply_here(self, y: &mut [f32]) {
        match self {
            Activation::Relu => y.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::LeakyRelu(a) => y.iter_mut().for_each(|v| {
                if *v < 0.0 {
                    *v *= a
                }
            }),
            Activation::Elu(a) => y.iter_mut().for_each(|v| {
                if *v < 0.0 {
                    *v = a * v.exp_m1()
                }
            }),
            Activation::Linear | Activation::Softmax => {}
        }
    }

    /// Turns the gradient at the activation's output `g` into the gradient at its input, given
    /// the output `y` of the forward pass.
    pub fn backward(self, g: &mut [f32], y: &[f32]) {
        if g.len() >= 2 * par::MIN_VALUES && par::threads() > 1 && self.needs_output() {
            let pieces = par::row_ranges(g.len(), g.len());
            return par::each_mut(g, 1, &pieces, |r, g| self.backward_here(g, &y[r]));
        }
        self.backward_here(g, y)
    }

    /// [`Activation::backward`] on the calling thread.
    fn backward_here(self, g: &mut [f32], y: &[f32]) {
        match self {
            Activation::Relu => {
                for (g, y) in g.iter_mut().zip(y) {
                    if *y <= 0.0 {
                        *g = 0.0;
                    }
                }
            }
            Activation::LeakyRelu(a) => {
                for (g, y) in g.iter_mut().zip(y) {
                    if leaky_bent(*y, a) {
                        *g *= a;
                    }
                }
            }
            // d/dx α(eˣ − 1) = y + α.
            Activation::Elu(a) => {
                for (g, y) in g.iter_mut().zip(y) {
                    if *y < 0.0 {
                        *g *= y + a;
                    }
                }
            }
            Activation::Linear | Activation::Softmax => {}
        }
    }

    /// What [`Activation::backward_kept`] needs of the forward output `y` (after
    /// [`Activation::apply`]): for ReLU and leaky ReLU one byte per value saying where the
    /// slope is not 1 — a quarter of a copy of `y`, written by pieces on the threads where a
    /// copy was one thread's pass — and for ELU, whose slope depends on the output, `y` itself.
    pub fn keep(self, y: &[f32]) -> Kept {
        match self {
            Activation::Relu => Kept::Mask(mask(y, |v| v <= 0.0)),
            Activation::LeakyRelu(a) => Kept::Mask(mask(y, |v| leaky_bent(v, a))),
            Activation::Elu(_) => Kept::Output(y.to_vec()),
            Activation::Linear | Activation::Softmax => Kept::Nothing,
        }
    }

    /// [`Activation::backward`] from what [`Activation::keep`] kept: the same bits.
    pub fn backward_kept(self, g: &mut [f32], kept: &Kept) {
        let m = match kept {
            Kept::Nothing => return,
            Kept::Output(y) => return self.backward(g, y),
            Kept::Mask(m) => m,
        };
        let pieces = par::row_ranges(g.len(), g.len());
        par::each_mut(g, 1, &pieces, |r, g| match self {
            Activation::LeakyRelu(a) => {
                for (g, &m) in g.iter_mut().zip(&m[r]) {
                    if m != 0 {
                        *g *= a;
                    }
                }
            }
            _ => {
                for (g, &m) in g.iter_mut().zip(&m[r]) {
                    if m != 0 {
                        *g = 0.0;
                    }
                }
            }
        });
    }

    /// Whether [`Activation::backward`] reads the forward output (else it need not be kept).
    pub fn needs_output(self) -> bool {
        matches!(
            self,
            Activation::Relu | Activation::LeakyRelu(_) | Activation::Elu(_)
        )
    }

    /// Whether f(max(a, b)) = max(f(a), f(b)) (non-decreasing): the activation may then be
    /// applied after a max-pool instead of before it.
    pub fn commutes_with_max(self) -> bool {
        !matches!(self, Activation::Softmax)
    }

    /// Whether the gradient at the input is zero wherever the output is not positive (ReLU):
    /// kernels that fuse this into another pass ask this.
    pub fn zero_grad_at_nonpositive(self) -> bool {
        self == Activation::Relu
    }
}

/// Whether leaky ReLU's output `y` (slope `a`) lies where the slope is `a`: y < 0 exactly
/// where x < 0 (slope > 0; with slope 0, y = 0 there, and x = 0 has derivative 1 in both
/// cases, as ReLU's 0 has 0).
#[inline(always)]
fn leaky_bent(y: f32, a: f32) -> bool {
    y < 0.0 || (a == 0.0 && y == 0.0)
}

/// One byte per value of `y`, 1 where `bent` holds; a large `y` by pieces on the threads.
#[inline(always)]
fn mask(y: &[f32], bent: impl Fn(f32) -> bool + Sync) -> Vec<u8> {
    let mut m = Vec::with_capacity(y.len());
    let pieces = par::row_ranges(y.len(), y.len());
    par::each_mut(
        &mut m.spare_capacity_mut()[..y.len()],
        1,
        &pieces,
        |r, m| {
            for (m, &v) in m.iter_mut().zip(&y[r]) {
                m.write(bent(v) as u8);
            }
        },
    );
    // SAFETY: the pieces cover 0..y.len() and each wrote every byte of its part.
    unsafe { m.set_len(y.len()) };
    m
}

/// What an activation's backward pass keeps of its forward output ([`Activation::keep`]).
#[derive(Debug, Default)]
pub enum Kept {
    /// Nothing: the activation's gradient is the identity (or lives in the loss).
    #[default]
    Nothing,
    /// One byte per value, 1 where the slope is not 1 (ReLU: 0, leaky ReLU: its slope).
    Mask(Vec<u8>),
    /// The output itself.
    Output(Vec<f32>),
}

#[cfg(test)]
// Reference values are pasted as the reference library printed them.
#[allow(clippy::excessive_precision)]
mod tests {
    use super::*;

    #[test]
    fn backward_from_what_keep_kept_is_backward_from_the_output_on_any_number_of_threads() {
        // Values at and around the kinks (±0, subnormals, NaN) among random ones, long enough
        // to be cut into pieces.
        let mut rng = crate::rng::Rng::new(3, 3);
        let specials = [0.0, -0.0, 1e-40, -1e-40, f32::NAN, 1.0, -1.0];
        let x: Vec<f32> = (0..40_000)
            .map(|i| match i % 7 {
                0 => specials[i / 7 % specials.len()],
                _ => rng.uniform(2.0),
            })
            .collect();
        let g: Vec<f32> = (0..x.len()).map(|_| rng.uniform(1.0)).collect();
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for act in [
            Activation::Relu,
            Activation::LeakyRelu(0.2),
            Activation::LeakyRelu(0.0),
            Activation::Elu(1.0),
            Activation::Linear,
        ] {
            let mut y = x.clone();
            act.apply(&mut y);
            let mut want = g.clone();
            act.backward(&mut want, &y);
            for threads in [1, 2, 3] {
                par::set_threads(threads);
                let kept = act.keep(&y);
                let mut got = g.clone();
                act.backward_kept(&mut got, &kept);
                par::set_threads(1);
                assert_eq!(bits(&got), bits(&want), "{act:?} on {threads} threads");
                let masked = matches!(kept, Kept::Mask(_));
                assert_eq!(
                    masked,
                    matches!(act, Activation::Relu | Activation::LeakyRelu(_))
                );
            }
        }
    }

    #[test]
    fn leaky_relu_and_elu_match_keras_and_their_derivatives() {
        // keras.activations.leaky_relu(x) and elu(x), Keras 3.15.1 defaults.
        let x = [-2.0f32, -0.5, 0.0, 0.7, 3.0];
        let mut y = x;
        Activation::LeakyRelu(LEAKY_SLOPE).apply(&mut y);
        assert_eq!(y, [-0.4, -0.1, 0.0, 0.7, 3.0]);
        let mut e = x;
        Activation::Elu(ELU_ALPHA).apply(&mut e);
        for (a, b) in e.iter().zip([-0.86466467f32, -0.39346930, 0.0, 0.7, 3.0]) {
            assert!((a - b).abs() < 1e-6, "{e:?}");
        }
        // Derivatives from the outputs: slope / 1, and α·eˣ = y + α / 1.
        let mut g = [1.0f32; 5];
        Activation::LeakyRelu(LEAKY_SLOPE).backward(&mut g, &y);
        assert_eq!(g, [0.2, 0.2, 1.0, 1.0, 1.0]);
        let mut g = [1.0f32; 5];
        Activation::Elu(ELU_ALPHA).backward(&mut g, &e);
        for (a, xv) in g.iter().zip(x) {
            let want = if xv < 0.0 { xv.exp() } else { 1.0 };
            assert!((a - want).abs() < 1e-6, "{g:?}");
        }
    }

    #[test]
    fn names_and_tables_parse_and_round_trip() {
        #[derive(Deserialize, Serialize, Debug, PartialEq)]
        struct A {
            activation: Activation,
        }
        let parse = |s: &str| toml::from_str::<A>(s).map(|a| a.activation);
        assert_eq!(
            parse("activation = \"leaky_relu\"").unwrap(),
            Activation::LeakyRelu(0.2)
        );
        assert_eq!(
            parse("activation = { leaky_relu = 0.1 }").unwrap(),
            Activation::LeakyRelu(0.1)
        );
        assert_eq!(parse("activation = \"elu\"").unwrap(), Activation::Elu(1.0));
        let err = parse("activation = \"tanh\"").unwrap_err().to_string();
        assert!(err.contains("unknown activation \"tanh\""), "{err}");
        assert!(parse("activation = { leaky_relu = 2.0 }").is_err());
        for a in [
            Activation::Relu,
            Activation::LeakyRelu(0.1),
            Activation::Elu(1.0),
        ] {
            let text = toml::to_string(&A { activation: a }).unwrap();
            assert_eq!(parse(&text).unwrap(), a, "{text}");
        }
    }
}
