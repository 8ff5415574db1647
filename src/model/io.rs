//! Saving and loading a trained network as safetensors. The file carries the resolved
//! experiment and the pixel scaling in its metadata, so it alone rebuilds the network.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::{Layer, Network};
use crate::data::mnist::write_atomic;
use crate::data::prep::Scaler;
use crate::experiment::Experiment;
use crate::rng::Rng;

/// Format tag written into every model file.
pub const FORMAT: &str = "mnist-lab/1";

/// A network loaded from disk with everything needed to feed it.
pub struct SavedModel {
    /// The network, in evaluation mode use.
    pub net: Network,
    /// The experiment it was trained from.
    pub exp: Experiment,
    /// The pixel scaling it was trained with.
    pub scaler: Scaler,
    /// All metadata of the file.
    pub metadata: HashMap<String, String>,
}

/// Every stored array of the network: (name, shape, values).
fn arrays(net: &mut Network) -> Vec<(String, Vec<usize>, &mut Vec<f32>)> {
    let mut out = Vec::new();
    for (i, layer) in net.layers.iter_mut().enumerate() {
        match layer {
            Layer::Conv(c) => {
                let shape = vec![c.kernel, c.kernel, c.input.c, c.output.c];
                out.push((
                    format!("layers.{i}.weight"),
                    shape,
                    Arc::make_mut(&mut c.w.value),
                ));
                out.push((
                    format!("layers.{i}.bias"),
                    vec![c.output.c],
                    Arc::make_mut(&mut c.b.value),
                ));
            }
            Layer::Dense(d) => {
                out.push((
                    format!("layers.{i}.weight"),
                    vec![d.inputs, d.units],
                    Arc::make_mut(&mut d.w.value),
                ));
                out.push((
                    format!("layers.{i}.bias"),
                    vec![d.units],
                    Arc::make_mut(&mut d.b.value),
                ));
            }
            Layer::BatchNorm(b) => {
                let c = b.channels;
                out.push((
                    format!("layers.{i}.gamma"),
                    vec![c],
                    Arc::make_mut(&mut b.gamma.value),
                ));
                out.push((
                    format!("layers.{i}.beta"),
                    vec![c],
                    Arc::make_mut(&mut b.beta.value),
                ));
                out.push((
                    format!("layers.{i}.running_mean"),
                    vec![c],
                    &mut b.running_mean,
                ));
                out.push((
                    format!("layers.{i}.running_var"),
                    vec![c],
                    &mut b.running_var,
                ));
            }
            Layer::MaxPool(_) | Layer::Flatten => {}
        }
    }
    out
}

/// Writes the network atomically with `extra` metadata added to the standard keys.
pub fn save(
    path: &Path,
    net: &mut Network,
    exp: &Experiment,
    scaler: &Scaler,
    extra: &[(&str, String)],
) -> Result<()> {
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("experiment".to_string(), exp.name.clone());
    meta.insert("spec".to_string(), exp.to_toml());
    meta.insert("scaler_mean".to_string(), format!("{:e}", scaler.mean));
    meta.insert("scaler_std".to_string(), format!("{:e}", scaler.std));
    for (k, v) in extra {
        meta.insert(k.to_string(), v.clone());
    }
    let stored = arrays(net);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = stored
        .into_iter()
        .map(|(name, shape, v)| {
            (
                name,
                shape,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let buf = safetensors::serialize(views, &Some(meta))?;
    write_atomic(path, &buf)
}

/// Loads a model file, checking that every array matches the architecture in its metadata.
pub fn load(path: &Path) -> Result<SavedModel> {
    let shown = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {shown}"))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        anyhow::anyhow!("{shown}: not a valid safetensors file ({e:?}); truncated or corrupt?")
    })?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow::anyhow!("{shown}: unreadable header ({e:?})"))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let get = |k: &str| {
        metadata
            .get(k)
            .with_context(|| format!("{shown}: metadata has no {k:?}; not an mnist-lab model"))
    };
    if get("format")? != FORMAT {
        bail!("{shown}: format {:?}, expected {FORMAT:?}", get("format")?);
    }
    let exp = Experiment::from_resolved_toml(get("experiment")?, get("spec")?)
        .with_context(|| format!("{shown}: the experiment in its metadata is invalid"))?;
    let num = |k: &str| -> Result<f32> {
        get(k)?
            .parse()
            .map_err(|_| anyhow::anyhow!("{shown}: metadata {k:?} is not a number"))
    };
    let scaler = Scaler::new(num("scaler_mean")?, num("scaler_std")?);
    let mut net = Network::build(&exp, &mut Rng::new(0, 0))?;
    let mut expected = 0;
    for (name, shape, values) in arrays(&mut net) {
        expected += 1;
        let t = st.tensor(&name).map_err(|_| {
            anyhow::anyhow!("{shown}: tensor {name} is missing (a model of another architecture?)")
        })?;
        if t.dtype() != Dtype::F32 || t.shape() != shape.as_slice() {
            bail!(
                "{shown}: tensor {name} is {:?} {:?}, expected F32 {shape:?} (a model of another architecture?)",
                t.dtype(),
                t.shape()
            );
        }
        for (v, b) in values.iter_mut().zip(t.data().chunks_exact(4)) {
            *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
    if st.names().len() != expected {
        bail!(
            "{shown}: holds {} tensors, the architecture in its metadata has {expected}",
            st.names().len()
        );
    }
    Ok(SavedModel {
        net,
        exp,
        scaler,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::mnist::PIXELS;

    const SPEC: &str = r#"
[[model.layers]]
conv = { filters = 3, kernel = 3, activation = "relu" }
[[model.layers]]
batchnorm = {}
[[model.layers]]
maxpool = 2
[[model.layers]]
flatten = true
[[model.layers]]
dense = { units = 10, activation = "softmax" }
"#;

    fn model(seed: u64) -> (Network, Experiment) {
        let exp = Experiment::from_resolved_toml("m", SPEC).unwrap();
        let mut net = Network::build(&exp, &mut Rng::new(seed, 0)).unwrap();
        if let Layer::BatchNorm(b) = &mut net.layers[1] {
            b.running_mean = vec![0.1, 0.2, 0.3];
            b.running_var = vec![1.5, 0.5, 2.0];
        }
        (net, exp)
    }

    #[test]
    fn save_then_load_gives_bit_identical_predictions() {
        let (mut net, exp) = model(3);
        let path = std::env::temp_dir().join(format!("io-rt-{}.safetensors", std::process::id()));
        let scaler = Scaler::new(0.1, 0.3);
        save(&path, &mut net, &exp, &scaler, &[("key", "k".into())]).unwrap();
        let mut loaded = load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded.scaler, scaler);
        assert_eq!(loaded.metadata["key"], "k");
        let mut rng = Rng::new(1, 1);
        let x: Vec<f32> = (0..4 * PIXELS).map(|_| rng.next_f32()).collect();
        let a = crate::train::logits(&mut net, x.clone());
        let b = crate::train::logits(&mut loaded.net, x);
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn truncated_and_foreign_files_are_clear_errors() {
        let (mut net, exp) = model(4);
        let dir = std::env::temp_dir().join(format!("io-bad-{}", std::process::id()));
        let path = dir.join("m.safetensors");
        save(&path, &mut net, &exp, &Scaler::new(0.0, 1.0), &[]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        let e = format!("{:#}", load(&path).err().unwrap());
        assert!(
            e.contains("m.safetensors") && e.contains("truncated or corrupt"),
            "{e}"
        );
        // Weights of another architecture under this spec's metadata.
        let other =
            Experiment::from_resolved_toml("m", &SPEC.replace("filters = 3", "filters = 5"))
                .unwrap();
        let mut other_net = Network::build(&other, &mut Rng::new(1, 0)).unwrap();
        save(&path, &mut other_net, &exp, &Scaler::new(0.0, 1.0), &[]).unwrap();
        let e = format!("{:#}", load(&path).err().unwrap());
        assert!(
            e.contains("layers.0.weight") && e.contains("another architecture"),
            "{e}"
        );
        std::fs::write(&path, b"not a model").unwrap();
        assert!(load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
