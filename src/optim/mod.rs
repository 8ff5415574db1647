//! The optimizer seam. An optimizer kind is one file implementing [`OptimizerKind`] (its
//! settings, as `[train.optimizer.<kind>]` declares them) and [`Optimizer`] (the update, with
//! the per-parameter state it owns), plus one line in the registry below.

use dfdx::prelude::*;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::model::Network;

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
    /// Updates parameter number `index` (its position in [`Network::params_mut`]) in place from
    /// its gradient `g`, at learning rate `lr`.
    fn update(&mut self, index: usize, w: &mut [f32], g: &[f32], lr: f32);
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

/// Keras' decoupled weight decay, applied before an optimizer's update: w −= w·wd·lr.
pub(crate) fn decay(w: &mut [f32], weight_decay: f32, lr: f32) {
    if weight_decay != 0.0 {
        let f = weight_decay * lr;
        for w in w.iter_mut() {
            *w -= *w * f;
        }
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
    d.deserialize_any(Either(std::marker::PhantomData)).map(Some)
}

/// Updates every parameter of `net` from the gradients of a backward pass.
pub fn step(opt: &mut dyn Optimizer, net: &mut Network, grads: &mut Gradients<f32, Cpu>, lr: f32) {
    for (index, p) in net.params_mut().into_iter().enumerate() {
        // A parameter the loss did not reach has a zero gradient.
        let g = grads.get_or_alloc_mut(&p.key).expect("cpu allocation");
        let w: &mut Vec<f32> = std::sync::Arc::make_mut(&mut p.value);
        opt.update(index, w, g, lr);
    }
}
