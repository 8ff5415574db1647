//! Every layer kind an experiment file can name: one file each, one line each in the registry
//! below, which maps the TOML key (`conv = {…}`) to the kind's [`LayerSpec`].

use serde::{Deserialize, Serialize};

use super::layer::LayerSpec;

/// Declares [`LayerEntry`]: one variant per layer kind, named by its TOML key (lower case),
/// whose declaration `$spec` lives in the module of the same name.
macro_rules! registry {
    ($($key:ident => $variant:ident($spec:ident),)*) => {
        $(pub mod $key;)*

        /// One `[[model.layers]]` entry: exactly one of the registered keys.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase", deny_unknown_fields)]
        pub enum LayerEntry {
            $(
                #[doc = concat!("`", stringify!($key), " = …`")]
                $variant($key::$spec),
            )*
        }

        impl LayerEntry {
            /// The layer's declaration.
            pub fn spec(&self) -> &dyn LayerSpec {
                match self {
                    $(LayerEntry::$variant(s) => s,)*
                }
            }

            /// The key that names this layer kind in the file.
            pub fn key(&self) -> &'static str {
                match self {
                    $(LayerEntry::$variant(_) => stringify!($key),)*
                }
            }
        }
    };
}

pub mod pooling;

registry! {
    conv => Conv(ConvSpec),
    maxpool => Maxpool(MaxPoolSpec),
    flatten => Flatten(FlattenSpec),
    dense => Dense(DenseSpec),
    batchnorm => Batchnorm(BatchNormSpec),
    dropout => Dropout(DropoutSpec),
    avgpool => Avgpool(AvgPoolSpec),
    globalavgpool => Globalavgpool(GlobalAvgPoolSpec),
    residual => Residual(ResidualSpec),
}
