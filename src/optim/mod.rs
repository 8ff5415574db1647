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
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec::Sgd(sgd::SgdSpec::default())
    }
}

/// Reads `optimizer = "sgd"` (the kind with its defaults) or `optimizer = { sgd = { … } }`
/// (`[train.optimizer.sgd]`).
pub fn deserialize_optional<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<OptimizerSpec>, D::Error> {
    struct Either;
    impl<'de> Visitor<'de> for Either {
        type Value = OptimizerSpec;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(
                f,
                "an optimizer name ({}) or a table such as [train.optimizer.sgd]",
                OptimizerSpec::KINDS.join(", ")
            )
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<OptimizerSpec, E> {
            OptimizerSpec::defaults(v).ok_or_else(|| {
                E::custom(format!(
                    "unknown optimizer {v:?}, expected one of: {}",
                    OptimizerSpec::KINDS.join(", ")
                ))
            })
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<OptimizerSpec, A::Error> {
            OptimizerSpec::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(Either).map(Some)
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
