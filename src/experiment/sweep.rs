//! `[sweep]`: one variant per combination of the swept keys' values, named
//! `<stem>-<key>=<value>[-<key>=<value>…]`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::Experiment;

/// The most variants one `[sweep]` may make (each is a whole cross-validation); checked before
/// the grid is expanded.
pub const MAX_VARIANTS: u64 = 1_000;

/// Text of a swept value for a variant name: `0.001`, `center`, `true`.
fn value_label(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Sets `dotted` (e.g. `train.learning_rate`) in `table`, creating tables on the way.
fn set_dotted(table: &mut toml::Table, dotted: &str, value: toml::Value) -> Result<()> {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts.pop().filter(|l| !l.is_empty()).context("empty key")?;
    let mut t = table;
    for p in parts {
        t = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("{p} is not a table"))?;
    }
    t.insert(last.to_string(), value);
    Ok(())
}

/// The variants of a resolved table (one when it has no `[sweep]`), validated, named after
/// `stem` and the swept values, each recording `path` as its source.
pub(super) fn variants(mut table: toml::Table, stem: &str, path: &Path) -> Result<Vec<Experiment>> {
    let shown = path.display();
    let sweep: BTreeMap<String, Vec<toml::Value>> = match table.remove("sweep") {
        Some(v) => v
            .try_into()
            .map_err(|e| anyhow::anyhow!("{shown}: [sweep]: {e}"))?,
        None => BTreeMap::new(),
    };
    let mut variants: u64 = 1;
    for (key, values) in &sweep {
        if values.is_empty() {
            bail!("{shown}: [sweep] {key:?} has no values");
        }
        if key.starts_with("sweep") || key == "extends" {
            bail!("{shown}: [sweep] {key:?} cannot be swept");
        }
        variants = variants.saturating_mul(values.len() as u64);
    }
    if variants > MAX_VARIANTS {
        let counts: Vec<String> = sweep.values().map(|v| v.len().to_string()).collect();
        bail!(
            "{shown}: [sweep] makes {} variants ({} values of {} keys), above the limit of {MAX_VARIANTS}; sweep fewer values at once",
            if variants == u64::MAX {
                "more than 2^64".to_string()
            } else {
                variants.to_string()
            },
            counts.join(" × "),
            sweep.len()
        );
    }
    let mut combos: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for (key, values) in &sweep {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values
                    .iter()
                    .map(move |v| [c.clone(), vec![(key.clone(), v.clone())]].concat())
            })
            .collect();
    }
    let mut out = Vec::with_capacity(combos.len());
    for combo in combos {
        let mut t = table.clone();
        let mut name = stem.to_string();
        for (key, value) in &combo {
            let what = format!("{shown}: [sweep] {key} = {value}");
            set_dotted(&mut t, key, value.clone()).with_context(|| what.clone())?;
            let last = key.rsplit('.').next().unwrap_or(key);
            name += &format!("-{last}={}", value_label(value));
        }
        let at = |err: &dyn std::fmt::Display| {
            if combo.is_empty() {
                anyhow::anyhow!("{shown}: {err}")
            } else {
                anyhow::anyhow!("{shown}: variant {name}: {err}")
            }
        };
        let mut e: Experiment = toml::Value::Table(t).try_into().map_err(|err| at(&err))?;
        e.name = name.clone();
        e.source = path.to_path_buf();
        e.extends = None;
        e.validate_settings().map_err(|err| at(&err))?;
        if !e
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.=".contains(c))
        {
            bail!("{shown}: variant name {name:?} would not make a plain folder name; sweep numbers, booleans or simple strings");
        }
        out.push(e);
    }
    Ok(out)
}
