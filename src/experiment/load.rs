//! Reading experiment files: each file checked alone against the schema (unknown keys and
//! wrong types keep their line and column) and for what no schema can see, then merged onto
//! its parents (`extends`), then expanded into its variants and validated.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::Experiment;
use crate::optim::OptimizerSpec;

/// Tables that hold exactly one key naming a kind (`[train.optimizer.sgd]`): a child that
/// names another kind replaces the parent's table instead of merging into it.
const TAGGED: [&str; 2] = ["train.optimizer", "train.schedule"];

/// What no schema check can see in an experiment file's table: a tagged table naming two kinds
/// (serde would keep one and drop the other silently) and a float that is not finite (TOML
/// writes `nan` and `inf`; no setting takes one).
pub(super) fn check_table(table: &toml::Table) -> Result<(), String> {
    for (tagged, what) in TAGGED.iter().zip(["optimizer", "schedule"]) {
        let (section, key) = tagged.split_once('.').expect("a dotted path");
        let kinds = table
            .get(section)
            .and_then(|t| t.get(key))
            .and_then(|v| v.as_table())
            .map(|t| t.keys().map(String::as_str).collect::<Vec<_>>())
            .unwrap_or_default();
        if kinds.len() > 1 {
            return Err(format!(
                "{tagged} names {} kinds ({}), expected one: an experiment has one {what}; keep one [{tagged}.<kind>] table",
                kinds.len(),
                kinds.join(" and ")
            ));
        }
    }
    for (k, v) in table {
        check_finite(v, &toml_key(k))?;
    }
    Ok(())
}

/// `key` as it is written in a dotted TOML path (quoted when it holds a dot or space).
fn toml_key(key: &str) -> String {
    if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// Fails on the first float under `value` (at dotted `path`) that is NaN or infinite.
fn check_finite(value: &toml::Value, path: &str) -> Result<(), String> {
    match value {
        toml::Value::Float(f) if !f.is_finite() => {
            Err(format!("{path} is {f}, expected a finite number"))
        }
        toml::Value::Table(t) => t
            .iter()
            .try_for_each(|(k, v)| check_finite(v, &format!("{path}.{}", toml_key(k)))),
        toml::Value::Array(a) => a
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_finite(v, &format!("{path}[{i}]"))),
        _ => Ok(()),
    }
}

/// Merges `child` onto `base` (at dotted `path`): tables merge key by key, anything else is
/// replaced.
pub(super) fn merge(base: &mut toml::Table, child: toml::Table, path: &str) {
    for (k, v) in child {
        let at = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(c))
                if !(TAGGED.contains(&at.as_str()) && b.keys().ne(c.keys())) =>
            {
                merge(b, c, &at)
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// The optimizer kind of a normalized table (`sgd` when it names none).
fn optimizer_kind(table: &toml::Table) -> String {
    table
        .get("train")
        .and_then(|t| t.get("optimizer"))
        .and_then(|o| o.as_table())
        .and_then(|o| o.keys().next().cloned())
        .unwrap_or_else(|| OptimizerSpec::default().key().to_string())
}

/// Rewrites one file's `[train]` into the form files merge in: `optimizer = "<kind>"` and the
/// flat `learning_rate` / `momentum` become `[train.optimizer.<kind>]` keys, the kind being the
/// file's own or else `inherited`.
fn normalize_train(table: &mut toml::Table, inherited: &str, shown: &str) -> Result<()> {
    let Some(toml::Value::Table(train)) = table.get_mut("train") else {
        return Ok(());
    };
    let flat: Vec<(String, toml::Value)> = ["learning_rate", "momentum"]
        .iter()
        .filter_map(|k| train.remove(*k).map(|v| (k.to_string(), v)))
        .collect();
    let (kind, mut settings) = match train.remove("optimizer") {
        Some(toml::Value::String(kind)) => (kind, toml::Table::new()),
        Some(toml::Value::Table(t)) => match t.into_iter().next() {
            Some((kind, toml::Value::Table(settings))) => (kind, settings),
            // The schema check has refused anything else already.
            _ => bail!("{shown}: [train.optimizer] must name one optimizer"),
        },
        Some(_) => bail!("{shown}: train.optimizer must be a name or a table"),
        None if flat.is_empty() => return Ok(()),
        None => (inherited.to_string(), toml::Table::new()),
    };
    for (key, value) in flat {
        if settings.contains_key(&key) {
            bail!("{shown}: train.{key} and train.optimizer.{kind}.{key} are both set; keep one");
        }
        settings.insert(key, value);
    }
    let mut optimizer = toml::Table::new();
    optimizer.insert(kind, toml::Value::Table(settings));
    train.insert("optimizer".into(), toml::Value::Table(optimizer));
    Ok(())
}

/// Reads one file, checks it alone against the schema, and returns it merged onto its parents
/// (normalized: see [`normalize_train`]).
fn load_table(path: &Path, seen: &mut BTreeSet<PathBuf>) -> Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let shown = path.display().to_string();
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    check_table(&table).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    // Each file alone must fit the schema: unknown keys and wrong types keep their line/column.
    let own: Experiment = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    let Some(parent) = own.extends else {
        normalize_train(&mut table, OptimizerSpec::default().key(), &shown)?;
        return Ok(table);
    };
    table.remove("extends");
    if parent.is_empty() || parent.contains(['/', '\\']) || parent.ends_with(".toml") {
        bail!("{shown}: extends = {parent:?}, expected the name of another experiment in the same folder (e.g. \"baseline\")");
    }
    let parent_path = path.with_file_name(format!("{parent}.toml"));
    let canonical = parent_path
        .canonicalize()
        .unwrap_or_else(|_| parent_path.clone());
    if !seen.insert(canonical) {
        bail!("{shown}: extends = {parent:?} makes a cycle");
    }
    if !parent_path.is_file() {
        bail!(
            "{shown}: extends = {parent:?}, but {} does not exist",
            parent_path.display()
        );
    }
    let mut base = load_table(&parent_path, seen)
        .with_context(|| format!("{shown}: in its parent {parent:?}"))?;
    normalize_train(&mut table, &optimizer_kind(&base), &shown)?;
    // The parent's description and final flag describe the parent, not this variant.
    base.remove("description");
    base.remove("final");
    merge(&mut base, table, "");
    Ok(base)
}

/// Loads, resolves (`extends`) and validates an experiment file without a `[sweep]`.
pub fn load(path: &Path) -> Result<Experiment> {
    let mut all = load_all(path)?;
    if all.len() != 1 {
        bail!(
            "{}: has a [sweep] of {} variants where one experiment was expected",
            path.display(),
            all.len()
        );
    }
    Ok(all.remove(0))
}

/// Every experiment (and sweep variant) of `files`, or only the one named `only`.
pub fn load_files(files: &[PathBuf], only: Option<&str>) -> Result<Vec<Experiment>> {
    let mut all = Vec::new();
    for f in files {
        all.extend(load_all(f)?);
    }
    let mut all = unique_names(all)?;
    if let Some(name) = only {
        all.retain(|e| e.name == name);
        if all.is_empty() {
            let shown: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            bail!("no experiment named {name:?} in {}", shown.join(", "));
        }
    }
    Ok(all)
}

/// Drops an experiment given twice (the same file named twice, e.g. by overlapping globs) and
/// refuses two different sources of one name: both would write `results/<name>/`, each
/// overwriting the other's folds.
pub fn unique_names(exps: Vec<Experiment>) -> Result<Vec<Experiment>> {
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let mut seen: Vec<Experiment> = Vec::new();
    for e in exps {
        match seen.iter().find(|s| s.name == e.name) {
            Some(s) if canonical(&s.source) == canonical(&e.source) => {}
            Some(s) => bail!(
                "two experiments are named {:?}: {} and {}; both would write results/{}/ (rename one file, or the sweep)",
                e.name,
                s.origin_or_path(),
                e.origin_or_path(),
                e.name
            ),
            None => seen.push(e),
        }
    }
    Ok(seen)
}

/// Loads, resolves and validates an experiment file: one experiment, or one variant per
/// combination of a `[sweep]`'s values, named `<stem>-<key>=<value>[-<key>=<value>…]`. Its
/// network is checked by [`Experiment::network`] once the dataset is known.
pub fn load_all(path: &Path) -> Result<Vec<Experiment>> {
    let stem = experiment_name(path)?;
    let mut seen = BTreeSet::new();
    seen.insert(path.canonicalize().unwrap_or_else(|_| path.to_path_buf()));
    let table = load_table(path, &mut seen)?;
    super::sweep::variants(table, &stem, path)
}

/// The experiment's name: the file stem, which must make a plain folder name.
pub fn experiment_name(path: &Path) -> Result<String> {
    let stem = path.file_stem().and_then(|s| s.to_str()).with_context(|| {
        format!(
            "{}: cannot take an experiment name from this path",
            path.display()
        )
    })?;
    // A plain folder name: not `.` or `..` (the results root or its parent) and not hidden.
    if !stem.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.=".contains(c))
    {
        bail!(
            "{}: the file name {stem:?} must start with a letter or digit and use only letters, digits, '-', '_', '.' and '=' (it names the results folder)",
            path.display()
        );
    }
    if path.extension().and_then(|e| e.to_str()) != Some("toml") {
        bail!("{}: expected a .toml experiment file", path.display());
    }
    Ok(stem.to_string())
}
