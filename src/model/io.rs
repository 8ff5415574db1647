//! Saving and loading a trained network as safetensors. The file carries the resolved
//! experiment and the pixel scaling in its metadata, so it alone rebuilds the network.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::Network;
use crate::data::prep::Scaler;
use crate::data::recipe::Recipe;
use crate::data::{dataset, DatasetInfo, ImageShape};
use crate::experiment::Experiment;
use crate::files::write_atomic;
use crate::rng::Rng;

/// Format tag written into every model file.
pub const FORMAT: &str = "mnist-lab/1";

/// A network loaded from disk with everything needed to feed it.
pub struct SavedModel {
    /// The network, in evaluation mode use.
    pub net: Network,
    /// The experiment it was trained from.
    pub exp: Experiment,
    /// The image shape and classes it was trained on.
    pub info: DatasetInfo,
    /// The pixel scaling it was trained with.
    pub scaler: Scaler,
    /// All metadata of the file.
    pub metadata: HashMap<String, String>,
    /// The file it was loaded from.
    pub path: PathBuf,
}

/// `28x28x1`
fn shape_text(s: ImageShape) -> String {
    format!("{}x{}x{}", s.height, s.width, s.channels)
}

fn parse_shape(text: &str) -> Option<ImageShape> {
    let v: Vec<usize> = text
        .split('x')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match v[..] {
        [height, width, channels] if height > 0 && width > 0 && channels > 0 => Some(ImageShape {
            height,
            width,
            channels,
        }),
        _ => None,
    }
}

/// Writes the network atomically with `extra` metadata added to the standard keys.
pub fn save(
    path: &Path,
    net: &mut Network,
    exp: &Experiment,
    info: &DatasetInfo,
    scaler: &Scaler,
    extra: &[(&str, String)],
) -> Result<()> {
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("experiment".to_string(), exp.name.clone());
    meta.insert("spec".to_string(), exp.to_toml());
    meta.insert("image_shape".to_string(), shape_text(info.image));
    meta.insert(
        "class_names".to_string(),
        serde_json::to_string(&info.class_names)?,
    );
    meta.insert("recipe".to_string(), info.recipe.name().to_string());
    meta.insert("scaler_mean".to_string(), format!("{:e}", scaler.mean));
    meta.insert("scaler_std".to_string(), format!("{:e}", scaler.std));
    for (k, v) in extra {
        meta.insert(k.to_string(), v.clone());
    }
    let mut bytes: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for a in net.arrays() {
        if let Some(i) = a.values.iter().position(|v| !v.is_finite()) {
            bail!(
                "{}: not saved: {} holds {} at index {i} (the training diverged; try a smaller learning rate)",
                path.display(),
                a.key(),
                a.values[i]
            );
        }
        let data = a.values.iter().flat_map(|x| x.to_le_bytes()).collect();
        bytes.push((a.key(), a.shape, data));
    }
    let views = bytes
        .iter()
        .map(|(n, s, b)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let buf = safetensors::serialize(views, &Some(meta))?;
    write_atomic(path, &sorted_header(buf)?)
}

/// The file `safetensors` serialized, its header rewritten with every JSON object's keys in
/// sorted order. The crate writes the metadata map in hash order, which changes from one run
/// to the next: the same weights then made a different file (and a diff in `results/`). The
/// sorted header has the same compact JSON and so the same length, and is padded with spaces
/// to the original length as the format's own padding is.
fn sorted_header(mut buf: Vec<u8>) -> Result<Vec<u8>> {
    let len = buf
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .filter(|&n| buf.len() >= 8 + n)
        .context("safetensors wrote no complete header")?;
    let header = &mut buf[8..8 + len];
    // serde_json's objects are BTreeMaps (no `preserve_order`): serialized in key order.
    let value: serde_json::Value = serde_json::from_slice(header)?;
    let mut sorted = serde_json::to_vec(&value)?;
    if sorted.len() > len {
        bail!(
            "the sorted model header is longer than safetensors' ({} > {len} bytes)",
            sorted.len()
        );
    }
    sorted.resize(len, b' ');
    header.copy_from_slice(&sorted);
    Ok(buf)
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
    if !(scaler.mean.is_finite() && scaler.std.is_finite() && scaler.std > 0.0) {
        bail!(
            "{shown}: metadata scaler_mean {} / scaler_std {}: expected finite numbers, std above 0",
            scaler.mean,
            scaler.std
        );
    }
    let info = saved_info(&metadata, &exp, &shown.to_string())?;
    exp.network(&info)
        .with_context(|| format!("{shown}: the experiment in its metadata is invalid"))?;
    let mut net = Network::build(&exp.model.layers, &info, &mut Rng::new(0, 0))?;
    let mut expected = 0;
    for a in net.arrays() {
        expected += 1;
        let (name, shape, values) = (a.key(), a.shape, a.values);
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
        for (i, (v, b)) in values.iter_mut().zip(t.data().chunks_exact(4)).enumerate() {
            *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if !v.is_finite() {
                bail!(
                    "{shown}: tensor {name} holds {v} at index {i}: a model with non-finite weights predicts nothing (saved from a diverged training?)"
                );
            }
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
        info,
        scaler,
        metadata,
        path: path.to_path_buf(),
    })
}

/// The image shape and classes a model was trained on: from its metadata, or (files written
/// before they were recorded) from its dataset's descriptor.
fn saved_info(
    meta: &HashMap<String, String>,
    exp: &Experiment,
    shown: &str,
) -> Result<DatasetInfo> {
    match (meta.get("image_shape"), meta.get("class_names")) {
        (Some(shape), Some(names)) => {
            let image = parse_shape(shape).with_context(|| {
                format!("{shown}: metadata \"image_shape\" is {shape:?}, expected HxWxC")
            })?;
            image.check_size().map_err(|e| {
                anyhow::anyhow!("{shown}: metadata \"image_shape\" is {shape:?}: {e}")
            })?;
            let class_names: Vec<String> = serde_json::from_str(names).map_err(|e| {
                anyhow::anyhow!("{shown}: metadata \"class_names\" is not a JSON list ({e})")
            })?;
            if class_names.len() < 2 {
                bail!("{shown}: metadata \"class_names\" names fewer than 2 classes");
            }
            // Files written before recipes were recorded: their dataset's recipe.
            let recipe = match meta.get("recipe") {
                None => crate::data::catalog::recipe_of(&exp.data.dataset),
                Some(name) => Recipe::from_name(name).with_context(|| {
                    let known: Vec<&str> = Recipe::ALL.iter().map(|r| r.name()).collect();
                    format!(
                        "{shown}: metadata \"recipe\" is {name:?}, expected one of {}",
                        known.join(", ")
                    )
                })?,
            };
            Ok(DatasetInfo {
                image,
                class_names,
                recipe,
            })
        }
        _ => {
            let name = &exp.data.dataset;
            if crate::data::catalog::descriptor(name).is_none() {
                bail!("{shown}: metadata has no \"image_shape\" and dataset {name:?} is not known by name");
            }
            dataset::info(Path::new(""), name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
[[model.layers]]
conv = { filters = 3, kernel = 3, activation = "relu" }
[[model.layers]]
batchnorm = {}
[[model.layers]]
maxpool = 2
[[model.layers]]
[model.layers.residual]
[[model.layers.residual.layers]]
conv = { filters = 4, kernel = 3, padding = "same" }
[[model.layers.residual.layers]]
batchnorm = { activation = "relu" }
[[model.layers]]
flatten = true
[[model.layers]]
dense = { units = 10, activation = "softmax" }
"#;

    fn mnist() -> DatasetInfo {
        dataset::info(Path::new(""), "mnist").unwrap()
    }

    fn model(seed: u64) -> (Network, Experiment) {
        let exp = Experiment::from_resolved_toml("m", SPEC).unwrap();
        let mut net = Network::build(&exp.model.layers, &mnist(), &mut Rng::new(seed, 0)).unwrap();
        // Running statistics that differ from a fresh layer's, so loading must restore them.
        for a in net.arrays() {
            // (Inside the residual block too: its own batch norm's and its projection's.)
            let n = a.values.len();
            match a.name {
                "running_mean" => *a.values = (0..n).map(|i| 0.1 * (i + 1) as f32).collect(),
                "running_var" => *a.values = (0..n).map(|i| 0.5 + i as f32).collect(),
                _ => {}
            }
        }
        (net, exp)
    }

    #[test]
    fn save_then_load_gives_bit_identical_predictions() {
        let (mut net, exp) = model(3);
        let path = std::env::temp_dir().join(format!("io-rt-{}.safetensors", std::process::id()));
        let scaler = Scaler::new(0.1, 0.3);
        let mut save_it = || {
            let extra = [("key", "k".to_string())];
            save(&path, &mut net, &exp, &mnist(), &scaler, &extra).unwrap();
            std::fs::read(&path).unwrap()
        };
        let first = save_it();
        // Saved again (metadata in a map of another hash order): the same bytes.
        for _ in 0..3 {
            assert!(save_it() == first, "a second save wrote other bytes");
        }
        let mut loaded = load(&path).unwrap();
        let header = String::from_utf8_lossy(&first[8..first.len().min(4096)]).into_owned();
        let keys = [
            "class_names",
            "experiment",
            "format",
            "image_shape",
            "key",
            "scaler_mean",
        ];
        let at: Vec<usize> = keys
            .iter()
            .map(|k| header.find(&format!("\"{k}\"")).unwrap())
            .collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "metadata keys not sorted: {header}"
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded.scaler, scaler);
        assert_eq!(loaded.metadata["key"], "k");
        let mut rng = Rng::new(1, 1);
        let x: Vec<f32> = (0..4 * 784).map(|_| rng.next_f32()).collect();
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
        save(&path, &mut net, &exp, &mnist(), &Scaler::new(0.0, 1.0), &[]).unwrap();
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
        let mut other_net =
            Network::build(&other.model.layers, &mnist(), &mut Rng::new(1, 0)).unwrap();
        save(
            &path,
            &mut other_net,
            &exp,
            &mnist(),
            &Scaler::new(0.0, 1.0),
            &[],
        )
        .unwrap();
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
