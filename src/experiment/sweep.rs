//! A file's variants: one per combination of a `[sweep]`'s values, or per draw of a
//! `[search]`'s space (see [`super::search`]), named `<stem>-<key>=<value>[-<key>=<value>…]`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::search::{SearchGroup, SearchSpec};
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

/// Sets `dotted` (e.g. `train.learning_rate`, or `model.layers.5.dropout.rate` with a list's
/// index) in `table`, creating tables on the way.
fn set_dotted(table: &mut toml::Table, dotted: &str, value: toml::Value) -> Result<()> {
    let parts: Vec<&str> = dotted.split('.').collect();
    let mut root = toml::Value::Table(std::mem::take(table));
    let result = set_in(&mut root, &parts, value);
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    result
}

/// Sets the value at path `parts` under `v`.
fn set_in(v: &mut toml::Value, parts: &[&str], value: toml::Value) -> Result<()> {
    let (head, rest) = parts
        .split_first()
        .filter(|(h, _)| !h.is_empty())
        .context("empty key")?;
    let slot = match v {
        toml::Value::Table(t) => {
            if rest.is_empty() {
                t.insert(head.to_string(), value);
                return Ok(());
            }
            t.entry(head.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        }
        toml::Value::Array(a) => {
            let len = a.len();
            let i: usize = head
                .parse()
                .with_context(|| format!("{head:?} is not an index into a list"))?;
            let entry = a
                .get_mut(i)
                .with_context(|| format!("index {i} is beyond the list's {len} entries"))?;
            if rest.is_empty() {
                *entry = value;
                return Ok(());
            }
            entry
        }
        _ => bail!("{head:?}: the key goes through a value that is neither a table nor a list"),
    };
    set_in(slot, rest, value)
}

/// The variants of a resolved table (one when it has neither `[sweep]` nor `[search]`),
/// validated, named after `stem` and their values, each recording `path` as its source; the
/// variants of a search know their group.
pub(super) fn variants(mut table: toml::Table, stem: &str, path: &Path) -> Result<Vec<Experiment>> {
    let shown = path.display();
    let sweep: BTreeMap<String, Vec<toml::Value>> = match table.remove("sweep") {
        Some(v) => v
            .try_into()
            .map_err(|e| anyhow::anyhow!("{shown}: [sweep]: {e}"))?,
        None => BTreeMap::new(),
    };
    let search = match table.remove("search") {
        Some(toml::Value::Table(t)) => {
            Some(SearchSpec::parse(t).map_err(|e| anyhow::anyhow!("{shown}: [search] {e}"))?)
        }
        Some(other) => bail!("{shown}: search = {other}, expected a [search] table"),
        None => None,
    };
    let (combos, section) = match &search {
        Some(s) if !s.space.is_empty() => {
            if !sweep.is_empty() {
                bail!("{shown}: [sweep] and [search] both name keys; put the lists in [search] (or prune the [sweep] with a [search] of pruning alone)");
            }
            for (key, d) in &s.space {
                check_key(key, "search", &shown.to_string())?;
                // Each end of the key's range must be a value the key takes.
                for end in d.ends() {
                    build(&table, &[(key.clone(), end.clone())], stem, path, "search").map_err(
                        |e| {
                            anyhow::anyhow!(
                                "{shown}: [search] {key:?} = {}: {end} is not a value it takes: {e:#}",
                                d.describe()
                            )
                        },
                    )?;
                }
            }
            let combos = s
                .combinations()
                .map_err(|e| anyhow::anyhow!("{shown}: [search] {e}"))?;
            (combos, "search")
        }
        Some(_) if sweep.is_empty() => {
            bail!("{shown}: [search] has no key to search (and the file no [sweep] to prune)")
        }
        _ => (grid(&sweep, &shown.to_string())?, "sweep"),
    };
    let mut out = Vec::with_capacity(combos.len());
    for combo in combos {
        out.push(build(&table, &combo, stem, path, section)?);
    }
    if let Some(s) = search {
        let lengths: std::collections::BTreeSet<(usize, usize)> =
            out.iter().map(|e| (e.train.epochs, e.cv.folds)).collect();
        if lengths.len() > 1 {
            bail!("{shown}: [search] varies train.epochs or cv.folds; a search compares variants of one length, so keep them out of its keys");
        }
        for e in &out {
            s.check_against(e.train.epochs, e.cv.folds)
                .map_err(|err| anyhow::anyhow!("{shown}: [search] {err}"))?;
        }
        let mut names: Vec<String> = out.iter().map(|e| e.name.clone()).collect();
        names.sort();
        let group = Arc::new(SearchGroup {
            name: stem.to_string(),
            variants: names,
            halving: s.halving.clone(),
            race: s.race.clone(),
            space: s
                .space
                .iter()
                .map(|(k, d)| (k.clone(), d.describe()))
                .chain(sweep.iter().map(|(k, v)| {
                    let v: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                    (k.clone(), format!("one of [{}]", v.join(", ")))
                }))
                .collect(),
        });
        for e in &mut out {
            e.search = Some(group.clone());
        }
    }
    Ok(out)
}

/// Refuses a key that cannot vary between variants.
fn check_key(key: &str, section: &str, shown: &str) -> Result<()> {
    if key.starts_with("sweep") || key.starts_with("search") || key == "extends" {
        bail!("{shown}: [{section}] {key:?} cannot be varied");
    }
    Ok(())
}

/// Every combination of a `[sweep]`'s values, first key slowest; its size is checked before
/// it is expanded.
fn grid(
    sweep: &BTreeMap<String, Vec<toml::Value>>,
    shown: &str,
) -> Result<Vec<Vec<(String, toml::Value)>>> {
    let mut variants: u64 = 1;
    for (key, values) in sweep {
        if values.is_empty() {
            bail!("{shown}: [sweep] {key:?} has no values");
        }
        check_key(key, "sweep", shown)?;
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
    for (key, values) in sweep {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values
                    .iter()
                    .map(move |v| [c.clone(), vec![(key.clone(), v.clone())]].concat())
            })
            .collect();
    }
    Ok(combos)
}

/// The variant of `table` with `combo`'s values set, named `<stem>-<key>=<value>…` (the last
/// part of each dotted key), validated.
fn build(
    table: &toml::Table,
    combo: &[(String, toml::Value)],
    stem: &str,
    path: &Path,
    section: &str,
) -> Result<Experiment> {
    let shown = path.display();
    let mut t = table.clone();
    let mut name = stem.to_string();
    for (key, value) in combo {
        let what = format!("{shown}: [{section}] {key} = {value}");
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
    e.values = combo
        .iter()
        .map(|(k, v)| (k.clone(), value_label(v)))
        .collect();
    e.name = name.clone();
    e.source = path.to_path_buf();
    e.extends = None;
    e.validate_settings().map_err(|err| at(&err))?;
    if !e
        .name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.=".contains(c))
    {
        bail!("{shown}: variant name {name:?} would not make a plain folder name; vary numbers, booleans or simple strings");
    }
    Ok(e)
}
