//! A training run's state after an epoch, saved beside its results so that a run stopped there
//! (killed, or paused by a search) goes on from that epoch computing the same bits as if it had
//! never stopped: the network's arrays (weights and batch norm's statistics), the optimizer's
//! slots and counters, and the history rows so far. The order of the data and every random
//! stream follow from the epoch alone (see [`crate::train::Stretch`]).
//!
//! One safetensors file, written atomically after every epoch: `net.<array>` tensors,
//! `opt.<slot>.<parameter>` and `opt.counters.<name>` tensors, `history.values` (epoch,
//! train_loss, train_acc, val_loss, val_acc as f64, exactly) and `history.lr` (f32, NaN where
//! none was recorded); its metadata names the format and the run's cache key, so a checkpoint of
//! another spec, data or code is never resumed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::files::write_atomic;
use crate::model::Network;
use crate::optim::{Optimizer, OptimizerState};
use crate::train::{EpochRow, Resume};

/// Format tag of a checkpoint file.
pub const FORMAT: &str = "mnist-lab-checkpoint/1";

/// Saves the state of the run keyed `key` after its last row, atomically.
pub fn save(
    path: &Path,
    key: &str,
    net: &mut Network,
    opt: &dyn Optimizer,
    rows: &[EpochRow],
) -> Result<()> {
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    for a in net.arrays() {
        let bytes = f32s(a.values);
        tensors.push((
            format!("net.{}", a.key()),
            Dtype::F32,
            vec![a.values.len()],
            bytes,
        ));
    }
    let state = opt.state();
    let mut slots = BTreeMap::new();
    for (name, arrays) in &state.slots {
        slots.insert(name.clone(), arrays.len());
        for (i, a) in arrays.iter().enumerate().filter(|(_, a)| !a.is_empty()) {
            tensors.push((
                format!("opt.{name}.{i}"),
                Dtype::F32,
                vec![a.len()],
                f32s(a),
            ));
        }
    }
    for (name, values) in &state.counters {
        let bytes = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        tensors.push((
            format!("opt.counters.{name}"),
            Dtype::U64,
            vec![values.len()],
            bytes,
        ));
    }
    let values: Vec<u8> = rows
        .iter()
        .flat_map(|r| {
            [
                r.epoch as f64,
                r.train_loss,
                r.train_acc,
                r.val_loss,
                r.val_acc,
            ]
        })
        .flat_map(|x| x.to_le_bytes())
        .collect();
    tensors.push((
        "history.values".into(),
        Dtype::F64,
        vec![rows.len(), 5],
        values,
    ));
    let lr: Vec<f32> = rows.iter().map(|r| r.lr.unwrap_or(f32::NAN)).collect();
    tensors.push(("history.lr".into(), Dtype::F32, vec![rows.len()], f32s(&lr)));
    let views = tensors
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("key".to_string(), key.to_string()),
        ("epoch".to_string(), rows.len().to_string()),
        ("opt.slots".to_string(), serde_json::to_string(&slots)?),
    ]);
    write_atomic(path, &safetensors::serialize(views, &Some(meta))?)
}

/// The saved state of the run keyed `key`, its arrays loaded into `net`: `None` when `path`
/// holds none, or one of another run (another spec, split, data or code), which is removed as
/// stale. A damaged checkpoint is an error naming it.
pub fn load(path: &Path, key: &str, net: &mut Network) -> Result<Option<Resume>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let shown = path.display();
    let damaged = |what: String| {
        anyhow::anyhow!("{shown}: {what}; a damaged checkpoint (remove it to train the fold from its first epoch)")
    };
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| damaged(format!("unreadable ({e:?})")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT)
        || meta.get("key").map(String::as_str) != Some(key)
    {
        std::fs::remove_file(path).with_context(|| format!("cannot remove {shown}"))?;
        return Ok(None);
    }
    let st =
        SafeTensors::deserialize(&bytes).map_err(|e| damaged(format!("unreadable ({e:?})")))?;
    let tensor = |name: &str, dtype: Dtype| -> Result<&[u8]> {
        let t = st
            .tensor(name)
            .map_err(|_| damaged(format!("no tensor {name}")))?;
        if t.dtype() != dtype {
            return Err(damaged(format!(
                "tensor {name} is {:?}, expected {dtype:?}",
                t.dtype()
            )));
        }
        Ok(t.data())
    };
    let f32s = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect()
    };
    for a in net.arrays() {
        let name = format!("net.{}", a.key());
        let values = f32s(tensor(&name, Dtype::F32)?);
        if values.len() != a.values.len() {
            return Err(damaged(format!(
                "{name} holds {} values, the network {}",
                values.len(),
                a.values.len()
            )));
        }
        *a.values = values;
    }
    let slots: BTreeMap<String, usize> = meta
        .get("opt.slots")
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| damaged("no readable \"opt.slots\"".into()))?;
    let mut optimizer = OptimizerState::default();
    for (name, count) in slots {
        let arrays = (0..count)
            .map(|i| {
                let key = format!("opt.{name}.{i}");
                match st.tensor(&key) {
                    Ok(_) => Ok(f32s(tensor(&key, Dtype::F32)?)),
                    Err(_) => Ok(Vec::new()),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        optimizer.slots.push((name, arrays));
    }
    for name in st.names() {
        if let Some(counter) = name.strip_prefix("opt.counters.") {
            let values = tensor(name, Dtype::U64)?
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect();
            optimizer.counters.push((counter.to_string(), values));
        }
    }
    optimizer.counters.sort();
    let values: Vec<f64> = tensor("history.values", Dtype::F64)?
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let lr = f32s(tensor("history.lr", Dtype::F32)?);
    if values.len() != 5 * lr.len() {
        return Err(damaged(
            "history.values and history.lr differ in length".into(),
        ));
    }
    let rows: Vec<EpochRow> = values
        .chunks_exact(5)
        .zip(&lr)
        .map(|(v, &lr)| EpochRow {
            epoch: v[0] as usize,
            train_loss: v[1],
            train_acc: v[2],
            val_loss: v[3],
            val_acc: v[4],
            lr: (!lr.is_nan()).then_some(lr),
        })
        .collect();
    if rows.iter().enumerate().any(|(i, r)| r.epoch != i + 1) {
        bail!(
            "{shown}: its history is not epochs 1..={} in order",
            rows.len()
        );
    }
    Ok(Some(Resume { optimizer, rows }))
}
