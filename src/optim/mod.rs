//! The optimizer seam. An optimizer kind is one file implementing [`OptimizerKind`] (its
//! settings, as `[train.optimizer.<kind>]` declares them) and [`Optimizer`] (the update, with
//! the per-parameter state it owns), plus one line in the registry below.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// An optimizer's settings.
pub trait OptimizerKind {
    /// The step size.
    fn learning_rate(&self) -> f32;
    /// The step size, to set it (from the flat `train.learning_rate` key).
    fn learning_rate_mut(&mut self) -> &mut f32;
    /// The momentum coefficient, for kinds that have one (the flat `train.momentum` key).
    fn momentum_mut(&mut self) -> Option<&mut f32> {
        None
    }
    /// `(learning_rate, momentum)` when these settings say everything about this optimizer:
    /// it is then written in the flat form of the seed's files (`optimizer = "sgd"`,
    /// `learning_rate`, `momentum` in `[train]`), so their resolved specs never change.
    fn flat(&self) -> Option<(f32, f32)> {
        None
    }
    /// Checks the settings; says which is wrong and what was expected.
    fn validate(&self) -> Result<(), String>;
    /// A few words for the report ("SGD lr 0.01 momentum 0.9").
    fn describe(&self) -> String;
    /// A fresh optimizer with these settings (and no state yet).
    fn build(&self) -> Box<dyn Optimizer>;
}

/// An optimizer at work: it owns the state of every parameter it updates.
pub trait Optimizer: Send {
    /// Updates parameter number `index` (its position in [`crate::model::Network::params_mut`]) in place from
    /// its gradient `g`, at learning rate `lr`.
    fn update(&mut self, index: usize, w: &mut [f32], g: &[f32], lr: f32);
    /// Its whole state, for a checkpoint: training on from a restored state computes the same
    /// bits as never stopping.
    fn state(&self) -> OptimizerState;
    /// Restores a state that [`Optimizer::state`] of the same kind returned.
    fn restore(&mut self, state: OptimizerState) -> Result<(), String>;
}

/// An optimizer's state: named slots of one array per parameter index (empty until that
/// parameter's first update) and named counters, one per parameter index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptimizerState {
    /// `(name, arrays by parameter index)`.
    pub slots: Vec<(String, Vec<Vec<f32>>)>,
    /// `(name, values by parameter index)`.
    pub counters: Vec<(String, Vec<u64>)>,
}

impl OptimizerState {
    /// Removes and returns the slot `name` (an error naming it when absent).
    pub fn take_slot(&mut self, name: &str) -> Result<Vec<Vec<f32>>, String> {
        let i = self
            .slots
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| format!("no optimizer slot {name:?}"))?;
        Ok(self.slots.remove(i).1)
    }

    /// Removes and returns the counters `name` (an error naming them when absent).
    pub fn take_counters(&mut self, name: &str) -> Result<Vec<u64>, String> {
        let i = self
            .counters
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| format!("no optimizer counters {name:?}"))?;
        Ok(self.counters.remove(i).1)
    }

    /// Fails unless every slot and counter was taken (a state of another kind).
    pub fn finish(self) -> Result<(), String> {
        let left: Vec<&str> = self
            .slots
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(self.counters.iter().map(|(n, _)| n.as_str()))
            .collect();
        match left.is_empty() {
            true => Ok(()),
            false => Err(format!("unknown optimizer state {}", left.join(", "))),
        }
    }
}

/// Declares [`OptimizerSpec`]: one variant per optimizer kind, named by its TOML key, whose
/// settings `$spec` live in the module of the same name.
macro_rules! registry {
    ($($key:ident => $variant:ident($spec:ident),)*) => {
        $(pub mod $key;)*

        /// `[train.optimizer.<kind>]`: one of the registered kinds with its settings.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase", deny_unknown_fields)]
        pub enum OptimizerSpec {
            $(
                #[doc = concat!("`", stringify!($key), "`")]
                $variant($key::$spec),
            )*
        }

        impl OptimizerSpec {
            /// Every kind's key.
            pub const KINDS: &'static [&'static str] = &[$(stringify!($key),)*];

            /// The kind's settings.
            pub fn spec(&self) -> &dyn OptimizerKind {
                match self {
                    $(OptimizerSpec::$variant(s) => s,)*
                }
            }

            /// The kind's settings, to change them.
            pub fn spec_mut(&mut self) -> &mut dyn OptimizerKind {
                match self {
                    $(OptimizerSpec::$variant(s) => s,)*
                }
            }

            /// The key naming this kind in the file.
            pub fn key(&self) -> &'static str {
                match self {
                    $(OptimizerSpec::$variant(_) => stringify!($key),)*
                }
            }

            /// The kind named `key` with its default settings.
            pub fn defaults(key: &str) -> Option<Self> {
                match key {
                    $(stringify!($key) => Some(OptimizerSpec::$variant($key::$spec::default())),)*
                    _ => None,
                }
            }
        }
    };
}

pub mod in_backward;
pub mod tiny;

registry! {
    sgd => Sgd(SgdSpec),
    adam => Adam(AdamSpec),
    adamw => Adamw(AdamWSpec),
    rmsprop => Rmsprop(RmsPropSpec),
}

/// For `skip_serializing_if`: settings at zero are not written out.
pub(crate) fn is_zero(v: &f32) -> bool {
    *v == 0.0
}

/// Keras' decoupled weight decay, applied before an optimizer's update: w −= w·wd·lr (a long
/// parameter cut for the step's threads: each element on its own, the same bits).
pub(crate) fn decay(w: &mut [f32], weight_decay: f32, lr: f32) {
    if weight_decay != 0.0 {
        let f = weight_decay * lr;
        let ranges = crate::model::par::ranges(w.len(), crate::model::par::MIN_VALUES);
        crate::model::par::each_mut(w, 1, &ranges, |_, w| {
            for w in w.iter_mut() {
                *w -= *w * f;
            }
        });
    }
}

/// Checks a weight decay setting.
pub(crate) fn check_decay(weight_decay: f32) -> Result<(), String> {
    if !(0.0..1.0).contains(&weight_decay) {
        return Err(format!(
            "weight_decay is {weight_decay}, expected 0 <= weight_decay < 1"
        ));
    }
    Ok(())
}

/// ", weight decay …" for a description, or nothing.
pub(crate) fn describe_decay(weight_decay: f32) -> String {
    if weight_decay == 0.0 {
        String::new()
    } else {
        format!(" weight decay {weight_decay}")
    }
}

/// State that grows one slot per parameter index, each as long as its parameter.
pub(crate) fn slot(state: &mut Vec<Vec<f32>>, index: usize, len: usize) -> &mut Vec<f32> {
    if state.len() <= index {
        state.resize_with(index + 1, Vec::new);
    }
    let s = &mut state[index];
    if s.len() != len {
        *s = vec![0.0; len];
    }
    s
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec::Sgd(sgd::SgdSpec::default())
    }
}

/// A kind-tagged setting (optimizer, schedule) that a file may also give by name alone
/// (`optimizer = "adam"`: that kind's defaults).
pub trait Named: Sized + serde::de::DeserializeOwned {
    /// What it is, for messages ("optimizer").
    const WHAT: &'static str;
    /// A table form for messages ("[train.optimizer.sgd]").
    const EXAMPLE: &'static str;
    /// The kinds' names.
    fn kinds() -> &'static [&'static str];
    /// A kind with its defaults.
    fn defaults(key: &str) -> Option<Self>;
}

impl Named for OptimizerSpec {
    const WHAT: &'static str = "optimizer";
    const EXAMPLE: &'static str = "[train.optimizer.sgd]";
    fn kinds() -> &'static [&'static str] {
        Self::KINDS
    }
    fn defaults(key: &str) -> Option<Self> {
        Self::defaults(key)
    }
}

/// Deserializes a [`Named`] setting from a kind's name or a one-kind table.
pub fn deserialize_named<'de, D: Deserializer<'de>, T: Named>(d: D) -> Result<Option<T>, D::Error> {
    struct Either<T>(std::marker::PhantomData<T>);
    impl<'de, T: Named> Visitor<'de> for Either<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(
                f,
                "a{} {} name ({}) or a table such as {}",
                if T::WHAT.starts_with('o') { "n" } else { "" },
                T::WHAT,
                T::kinds().join(", "),
                T::EXAMPLE
            )
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            T::defaults(v).ok_or_else(|| {
                E::custom(format!(
                    "unknown {} {v:?}, expected one of: {}",
                    T::WHAT,
                    T::kinds().join(", ")
                ))
            })
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(Either(std::marker::PhantomData))
        .map(Some)
}

#[cfg(test)]
// Reference values are pasted as the reference library printed them.
#[allow(clippy::excessive_precision)]
mod tests {
    use super::*;

    /// Weights after each of three steps from w = [1, −2, 0.5] with the gradients below, as
    /// Keras 3.15.1 (TensorFlow 2.21) computes them: `opt.apply_gradients([(g, v)])` on a
    /// `keras.Variable`, lr 0.1 and otherwise Keras' defaults unless named.
    const GRADS: [[f32; 3]; 3] = [[0.5, 0.5, -1.0], [1.0, -1.0, 0.25], [-0.3, 0.2, 0.1]];

    fn steps(spec: &OptimizerSpec) -> Vec<Vec<f32>> {
        let mut opt = spec.spec().build();
        let mut w = vec![1.0f32, -2.0, 0.5];
        GRADS
            .iter()
            .map(|g| {
                opt.update(0, &mut w, g, spec.spec().learning_rate());
                w.clone()
            })
            .collect()
    }

    fn parse(toml: &str) -> OptimizerSpec {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn every_optimizer_matches_keras_on_a_fixed_problem() {
        let cases: [(&str, [[f32; 3]; 3]); 7] = [
            (
                "[sgd]\nlearning_rate = 0.1\nmomentum = 0.9\nnesterov = true",
                [
                    [0.904999971, -2.09500003, 0.689999998],
                    [0.674499989, -1.94550002, 0.723500013],
                    [0.614050031, -1.93895006, 0.757149994],
                ],
            ),
            (
                "[sgd]\nlearning_rate = 0.1\nmomentum = 0.9\nweight_decay = 0.1",
                [
                    [0.939999998, -2.02999997, 0.595000029],
                    [0.785600007, -1.95470011, 0.654050052],
                    [0.677244008, -1.90565312, 0.696009576],
                ],
            ),
            (
                "[adam]\nlearning_rate = 0.1",
                [
                    [0.900001287, -2.09999871, 0.599999011],
                    [0.803484321, -2.06338882, 0.646945238],
                    [0.747992635, -2.04678726, 0.67689079],
                ],
            ),
            (
                "[adamw]\nlearning_rate = 0.1",
                [
                    [0.899601281, -2.09919858, 0.599799037],
                    [0.802724481, -2.06174898, 0.646505356],
                    [0.746911645, -2.04432273, 0.676192284],
                ],
            ),
            (
                "[adamw]\nlearning_rate = 0.1\nweight_decay = 0.5",
                [
                    [0.850001276, -1.99999869, 0.574998975],
                    [0.71098423, -1.8633889, 0.5931952],
                    [0.619943261, -1.75361776, 0.593481004],
                ],
            ),
            (
                "[rmsprop]\nlearning_rate = 0.1",
                [
                    [0.683772862, -2.3162272, 0.816227615],
                    [0.398058683, -2.03051305, 0.735645354],
                    [0.484933108, -2.08968306, 0.701863289],
                ],
            ),
            (
                "[rmsprop]\nlearning_rate = 0.1\nmomentum = 0.5",
                [
                    [0.683772862, -2.3162272, 0.816227615],
                    [0.239945114, -2.18862653, 0.893759191],
                    [0.104905665, -2.1839962, 0.898742914],
                ],
            ),
        ];
        for (toml, want) in cases {
            let spec = parse(toml);
            spec.spec().validate().unwrap();
            let got = steps(&spec);
            for (step, (g, w)) in got.iter().zip(want).enumerate() {
                for (a, b) in g.iter().zip(w) {
                    assert!(
                        (a - b).abs() <= 2e-6 * b.abs().max(1.0),
                        "{toml:?} step {}: {g:?} vs Keras {w:?}",
                        step + 1
                    );
                }
            }
        }
    }

    #[test]
    fn every_optimizer_updates_a_long_parameter_alike_on_any_number_of_threads() {
        // Long enough to be cut into runs of chunks (and not a whole number of chunks), with
        // elements whose gradients are ordinary, always subnormal, zero after the first step
        // or always zero, so that subnormal state takes the block-by-block path in every run.
        let n = 3 * crate::model::par::MIN_VALUES + 16 * 7 + 5;
        // (RMSprop's state stays normal here: a subnormal gradient's square is zero.)
        for (toml, subnormal_state) in [
            (
                "[sgd]\nlearning_rate = 0.1\nmomentum = 0.9\nnesterov = true\nweight_decay = 0.01",
                true,
            ),
            ("[adamw]\nlearning_rate = 0.01", true),
            ("[rmsprop]\nlearning_rate = 0.01\nmomentum = 0.5", false),
        ] {
            let spec = parse(toml);
            let mut outcomes = Vec::new();
            for threads in [1, 2, 3] {
                crate::model::par::set_threads(threads);
                let mut rng = crate::rng::Rng::new(9, 0);
                let mut opt = spec.spec().build();
                let mut w: Vec<f32> = (0..n).map(|_| rng.uniform(0.5)).collect();
                for step in 1..=40 {
                    let g: Vec<f32> = (0..n)
                        .map(|i| match i % 4 {
                            0 => rng.uniform(1.0),
                            1 => rng.uniform(1e-39),
                            2 if step == 1 => rng.uniform(1.0),
                            _ => 0.0,
                        })
                        .collect();
                    opt.update(0, &mut w, &g, spec.spec().learning_rate());
                }
                crate::model::par::set_threads(1);
                let state = opt.state();
                let subnormal = state.slots[0].1[0]
                    .iter()
                    .filter(|x| tiny::is_subnormal(**x));
                assert!(!subnormal_state || subnormal.count() > 1000, "{toml:?}");
                let slots: Vec<Vec<Vec<u32>>> = (state.slots.iter())
                    .map(|(_, arrays)| arrays.iter().map(|a| tiny::bits(a)).collect())
                    .collect();
                outcomes.push((tiny::bits(&w), slots, state.counters));
            }
            assert!(outcomes.windows(2).all(|o| o[0] == o[1]), "{toml:?}");
        }
    }

    #[test]
    fn keras_defaults_and_names_or_tables() {
        let adam = OptimizerSpec::defaults("adam").unwrap();
        assert_eq!(
            adam,
            OptimizerSpec::Adam(adam::AdamSpec {
                learning_rate: 0.001,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-7,
                weight_decay: 0.0,
            })
        );
        let OptimizerSpec::Rmsprop(r) = OptimizerSpec::defaults("rmsprop").unwrap() else {
            panic!()
        };
        assert_eq!((r.learning_rate, r.rho, r.epsilon), (0.001, 0.9, 1e-7));
        let OptimizerSpec::Adamw(w) = OptimizerSpec::defaults("adamw").unwrap() else {
            panic!()
        };
        assert_eq!(w.weight_decay, 0.004);
        assert!(parse("[adam]\nbeta_1 = 1.0").spec().validate().is_err());
        assert!(toml::from_str::<OptimizerSpec>("[adam]\nmomentum = 0.9").is_err());
    }
}
