//! `[search]`: variants drawn from a declared space, and the pruning that stops losing variants
//! early. A key of the space takes a list of values or a distribution:
//!
//! ```toml
//! [search]
//! trials = 27                       # variants drawn (default: every combination of lists)
//! seed = 1                          # the draws' stream (default 1)
//! "train.optimizer.adamw.learning_rate" = { log_uniform = [1e-4, 1e-2] }
//! "model.layers.5.dropout.rate" = { uniform = [0.1, 0.5] }
//! "train.batch_size" = { int = [32, 128] }
//! "data.augment.affine.rotation" = [0, 10, 20]
//! [search.halving]                  # successive halving over epochs
//! min_epochs = 2
//! eta = 3
//! [search.race]                     # racing over folds
//! after = 2
//! alpha = 0.05
//! ```
//!
//! Drawn numbers are rounded to three significant digits, and the variant trains with the
//! rounded value its name shows. With `halving` or `race` but no keys, `[search]` prunes the
//! file's `[sweep]` grid instead. What the pruning decides, and when, is `crate::cv::search`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::sweep::MAX_VARIANTS;
use crate::rng::Rng;

/// How one key of the space is drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Distribution {
    /// One of these values, each as likely.
    Choice(Vec<toml::Value>),
    /// Uniform in [a, b].
    Uniform(f64, f64),
    /// Log-uniform in [a, b] (0 < a).
    LogUniform(f64, f64),
    /// A whole number in a..=b, each as likely.
    Int(i64, i64),
}

impl Distribution {
    /// How many values it has, when finitely many.
    fn size(&self) -> Option<u64> {
        match self {
            Distribution::Choice(v) => Some(v.len() as u64),
            Distribution::Int(a, b) => Some((b - a) as u64 + 1),
            _ => None,
        }
    }

    /// One value drawn from `rng`.
    fn draw(&self, rng: &mut Rng) -> toml::Value {
        let unit = |rng: &mut Rng| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        match self {
            Distribution::Choice(v) => v[rng.below(v.len())].clone(),
            Distribution::Uniform(a, b) => toml::Value::Float(round3(a + (b - a) * unit(rng))),
            Distribution::LogUniform(a, b) => {
                let (la, lb) = (a.ln(), b.ln());
                toml::Value::Float(round3((la + (lb - la) * unit(rng)).exp()))
            }
            Distribution::Int(a, b) => {
                toml::Value::Integer(a + rng.below((b - a) as usize + 1) as i64)
            }
        }
    }

    /// The `index`-th value of a finite distribution (in its own order).
    fn nth(&self, index: u64) -> toml::Value {
        match self {
            Distribution::Choice(v) => v[index as usize].clone(),
            Distribution::Int(a, _) => toml::Value::Integer(a + index as i64),
            _ => unreachable!("only finite distributions are enumerated"),
        }
    }

    /// A few words for `check`: "[0.1, 0.2]", "log-uniform in [0.0001, 0.01]".
    pub fn describe(&self) -> String {
        match self {
            Distribution::Choice(v) => {
                let v: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                format!("one of [{}]", v.join(", "))
            }
            Distribution::Uniform(a, b) => format!("uniform in [{a}, {b}]"),
            Distribution::LogUniform(a, b) => format!("log-uniform in [{a}, {b}]"),
            Distribution::Int(a, b) => format!("a whole number in {a}..={b}"),
        }
    }

    /// Its two ends (the extremes a variant may get), for checking them before any draw.
    pub fn ends(&self) -> Vec<toml::Value> {
        match self {
            Distribution::Choice(v) => v.clone(),
            Distribution::Uniform(a, b) | Distribution::LogUniform(a, b) => {
                vec![toml::Value::Float(*a), toml::Value::Float(*b)]
            }
            Distribution::Int(a, b) => vec![toml::Value::Integer(*a), toml::Value::Integer(*b)],
        }
    }
}

/// `x` rounded to three significant digits (what a variant's name shows).
fn round3(x: f64) -> f64 {
    format!("{x:.2e}")
        .parse()
        .expect("a formatted float parses")
}

/// `[search.halving]`: successive halving over epochs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Halving {
    /// Epochs of the first rung.
    pub min_epochs: usize,
    /// Each rung keeps the best ⌈n / eta⌉ and multiplies the epochs by eta.
    pub eta: f64,
    /// The folds rungs train (1-based; default fold 1).
    #[serde(default = "first_fold")]
    pub folds: Vec<usize>,
}

fn first_fold() -> Vec<usize> {
    vec![1]
}

/// `[search.race]`: racing over folds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Race {
    /// Folds every variant trains before the first decision (at least 2).
    pub after: usize,
    /// A variant whose corrected paired t-test against the leader is significantly negative at
    /// this level stops.
    pub alpha: f64,
}

/// A search: its space, how many variants to draw, and its pruning.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchSpec {
    /// The space, by dotted key.
    pub space: BTreeMap<String, Distribution>,
    /// Variants drawn (none: every combination of a finite space).
    pub trials: Option<usize>,
    /// Seed of the draws.
    pub seed: u64,
    /// Successive halving, if declared.
    pub halving: Option<Halving>,
    /// Racing, if declared.
    pub race: Option<Race>,
}

/// The variants of one search, as each of them knows its group: the search's name (its file's
/// stem), every variant's name, and the pruning.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchGroup {
    /// The search's name: its file's stem (its table and plot go to `results/<name>/`).
    pub name: String,
    /// Every variant, by name, in name order.
    pub variants: Vec<String>,
    /// Successive halving, if declared.
    pub halving: Option<Halving>,
    /// Racing, if declared.
    pub race: Option<Race>,
    /// The space, for the report.
    pub space: BTreeMap<String, String>,
}

impl SearchSpec {
    /// Parses a `[search]` table; errors say which key and what was expected.
    pub fn parse(mut table: toml::Table) -> Result<Self, String> {
        let mut spec = SearchSpec {
            seed: 1,
            ..Default::default()
        };
        if let Some(v) = table.remove("trials") {
            match v.as_integer() {
                Some(n) if n >= 1 && n as u64 <= MAX_VARIANTS => spec.trials = Some(n as usize),
                _ => {
                    return Err(format!(
                        "trials is {v}, expected a whole number in 1..={MAX_VARIANTS}"
                    ))
                }
            }
        }
        if let Some(v) = table.remove("seed") {
            spec.seed = v
                .as_integer()
                .filter(|s| *s >= 0)
                .ok_or_else(|| format!("seed is {v}, expected a whole number >= 0"))?
                as u64;
        }
        if let Some(v) = table.remove("halving") {
            let h: Halving = v.try_into().map_err(|e| format!("halving: {e}"))?;
            if h.min_epochs == 0 {
                return Err("halving.min_epochs is 0, expected at least 1".into());
            }
            if h.eta.is_nan() || h.eta <= 1.0 {
                return Err(format!(
                    "halving.eta is {}, expected more than 1 (each rung keeps 1/eta of the variants)",
                    h.eta
                ));
            }
            if h.folds.is_empty() {
                return Err("halving.folds is empty, expected at least one fold".into());
            }
            spec.halving = Some(h);
        }
        if let Some(v) = table.remove("race") {
            let r: Race = v.try_into().map_err(|e| format!("race: {e}"))?;
            if r.after < 2 {
                return Err(format!(
                    "race.after is {}, expected at least 2 (a paired test needs two folds)",
                    r.after
                ));
            }
            if !(r.alpha > 0.0 && r.alpha < 1.0) {
                return Err(format!("race.alpha is {}, expected 0 < alpha < 1", r.alpha));
            }
            spec.race = Some(r);
        }
        for (key, value) in table {
            let d = distribution(&value).map_err(|e| format!("{key:?}: {e}"))?;
            spec.space.insert(key, d);
        }
        Ok(spec)
    }

    /// Checks the search against the experiment it varies: its epochs and folds.
    pub fn check_against(&self, epochs: usize, folds: usize) -> Result<(), String> {
        if let Some(h) = &self.halving {
            if h.min_epochs > epochs {
                return Err(format!(
                    "halving.min_epochs is {}, beyond train.epochs ({epochs})",
                    h.min_epochs
                ));
            }
            if let Some(f) = h.folds.iter().find(|&&f| f == 0 || f > folds) {
                return Err(format!("halving.folds holds {f}, expected 1..={folds}"));
            }
        }
        if let Some(r) = &self.race {
            if folds < 3 {
                return Err(format!(
                    "a race needs at least 3 folds (cv.folds is {folds}): it decides after 2 or more, with folds left to save"
                ));
            }
            if r.after >= folds {
                return Err(format!(
                    "race.after is {}, expected fewer than cv.folds ({folds})",
                    r.after
                ));
            }
        }
        Ok(())
    }

    /// The combinations of the space's values that make the variants: every combination of a
    /// finite space without `trials`, else `trials` distinct draws from the seeded stream.
    pub fn combinations(&self) -> Result<Vec<Vec<(String, toml::Value)>>, String> {
        if self.space.is_empty() {
            return Err("[search] has no key to search (and the file no [sweep] to prune)".into());
        }
        let finite: Option<u64> = self
            .space
            .values()
            .try_fold(1u64, |n, d| d.size().map(|s| n.saturating_mul(s)));
        let keys: Vec<&String> = self.space.keys().collect();
        let Some(trials) = self.trials else {
            let total = finite
                .ok_or("trials is needed: a space with a distribution has no end to enumerate")?;
            if total > MAX_VARIANTS {
                return Err(format!(
                    "the space has {total} combinations, above the limit of {MAX_VARIANTS} variants; set trials"
                ));
            }
            return Ok((0..total)
                .map(|mut i| {
                    let mut combo = Vec::new();
                    for (k, d) in self.space.iter().rev() {
                        let s = d.size().expect("finite");
                        combo.push((k.clone(), d.nth(i % s)));
                        i /= s;
                    }
                    combo.reverse();
                    combo
                })
                .collect());
        };
        if let Some(total) = finite {
            if trials as u64 > total {
                return Err(format!(
                    "trials is {trials}, more than the {total} combinations the space has"
                ));
            }
        }
        let mut rng = Rng::new(self.seed, 5000);
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(trials);
        let mut draws = 0;
        while out.len() < trials {
            draws += 1;
            if draws > 100 * trials + 1000 {
                return Err(format!(
                    "cannot draw {trials} different variants from this space (three significant digits each)"
                ));
            }
            let combo: Vec<(String, toml::Value)> = keys
                .iter()
                .map(|k| ((*k).clone(), self.space[*k].draw(&mut rng)))
                .collect();
            if seen.insert(format!("{combo:?}")) {
                out.push(combo);
            }
        }
        Ok(out)
    }
}

/// A space entry: a list of values, or `{ uniform | log_uniform | int = [a, b] }`.
fn distribution(value: &toml::Value) -> Result<Distribution, String> {
    let pair = |v: &toml::Value| -> Result<(f64, f64), String> {
        match v.as_array().map(|a| a.as_slice()) {
            Some([a, b]) => {
                let num = |x: &toml::Value| {
                    x.as_float()
                        .or_else(|| x.as_integer().map(|i| i as f64))
                        .ok_or_else(|| format!("{x} is not a number"))
                };
                Ok((num(a)?, num(b)?))
            }
            _ => Err(format!("{v} is not a pair [a, b]")),
        }
    };
    match value {
        toml::Value::Array(v) if v.is_empty() => Err("has no values".into()),
        toml::Value::Array(v) => Ok(Distribution::Choice(v.clone())),
        toml::Value::Table(t) if t.len() == 1 => {
            let (kind, v) = t.iter().next().expect("one entry");
            match kind.as_str() {
                "uniform" | "log_uniform" => {
                    let (a, b) = pair(v)?;
                    if a > b {
                        return Err(format!("{kind} = [{a}, {b}]: a is above b"));
                    }
                    if kind == "log_uniform" {
                        if a <= 0.0 {
                            return Err(format!(
                                "log_uniform = [{a}, {b}]: expected 0 < a (a logarithm's range)"
                            ));
                        }
                        return Ok(Distribution::LogUniform(a, b));
                    }
                    Ok(Distribution::Uniform(a, b))
                }
                "int" => {
                    let ints = v.as_array().and_then(|a| match a.as_slice() {
                        [a, b] => Some((a.as_integer()?, b.as_integer()?)),
                        _ => None,
                    });
                    match ints {
                        Some((a, b)) if a <= b => Ok(Distribution::Int(a, b)),
                        Some((a, b)) => Err(format!("int = [{a}, {b}]: a is above b")),
                        None => Err(format!("int = {v}: expected two whole numbers [a, b]")),
                    }
                }
                other => Err(format!(
                    "unknown distribution {other:?}, expected uniform, log_uniform or int"
                )),
            }
        }
        _ => Err(format!(
            "{value} is neither a list of values nor {{ uniform | log_uniform | int = [a, b] }}"
        )),
    }
}
