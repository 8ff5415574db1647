//! Putting a dataset's files in place (from a folder or the public mirrors) and verifying them.

use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::catalog::{descriptor, FILES};
use super::dataset::{find_file, load, Split};
use super::idx::maybe_gunzip;
use crate::files::write_atomic;

/// What `verify` could establish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Every file matches the dataset's known sha256.
    Checksums,
    /// The dataset has no known checksums: the files are well-formed IDX of matching sizes,
    /// which is all that can be said.
    FormatOnly {
        /// Training images.
        train: usize,
        /// Test images.
        test: usize,
    },
}

impl Verified {
    /// What to tell the user about `dir`.
    pub fn message(&self, dir: &Path) -> String {
        match self {
            Verified::Checksums => format!("{}: verified (sha256 of all four files)", dir.display()),
            Verified::FormatOnly { train, test } => format!(
                "{}: well-formed IDX files ({train} training, {test} test images); not verified: no known sha256 for this dataset",
                dir.display()
            ),
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    format!("{:x}", h.finalize())
}

/// Reads a dataset file (raw or .gz) decompressed.
fn read_decompressed(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    maybe_gunzip(bytes, &path.display().to_string())
}

/// Checks every file of the dataset `name` in `dir` against its known sha256 (after
/// decompression), or, for a dataset without known checksums, loads both splits with the
/// strict IDX checks.
pub fn verify(dir: &Path, name: &str) -> Result<Verified> {
    let Some(d) = descriptor(name) else {
        let train = load(dir, name, Split::Train)?.len();
        let test = load(dir, name, Split::Test)?.len();
        return Ok(Verified::FormatOnly { train, test });
    };
    for (file, want) in FILES.iter().zip(d.sha256) {
        let path = find_file(dir, file)?;
        let got = sha256_hex(&read_decompressed(&path)?);
        if got != want {
            bail!(
                "{}: sha256 of the decompressed file is {got}, expected {want} (corrupt or a different file)",
                path.display()
            );
        }
    }
    Ok(Verified::Checksums)
}

fn fetch_url(url: &str) -> Result<Vec<u8>> {
    let out = std::process::Command::new("curl")
        .args(["-fsSL", "--connect-timeout", "15", "--max-time", "300", url])
        .output()
        .context("cannot run curl (needed to download from the mirrors)")?;
    if !out.status.success() {
        bail!("{url}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout)
}

/// Puts the four files of dataset `name` into `dir`, decompressed and verified.
///
/// Sources, in order: `from` (a folder with the raw or .gz files), the folders where a system
/// package puts the dataset, then (if `mirrors`) the dataset's public mirrors.
pub fn fetch(dir: &Path, name: &str, from: Option<&Path>, mirrors: bool) -> Result<Verified> {
    if let Ok(v @ Verified::Checksums) = verify(dir, name) {
        crate::output::eprintln(&format!("{} is complete and verified", dir.display()));
        return Ok(v);
    }
    let known = descriptor(name);
    for (i, file) in FILES.iter().enumerate() {
        let dest = dir.join(file);
        let want = known.map(|d| d.sha256[i]);
        let good = |bytes: &[u8]| want.is_none_or(|w| sha256_hex(bytes) == w);
        if let Ok(bytes) = std::fs::read(&dest) {
            if good(&bytes) {
                continue;
            }
        }
        let mut errors = Vec::new();
        let mut got = None;
        let packaged = known.map_or(&[][..], |d| d.packaged);
        let folders = from
            .into_iter()
            .chain(packaged.iter().map(Path::new).filter(|p| p.is_dir()));
        for src in folders {
            if got.is_some() {
                break;
            }
            match find_file(src, file).and_then(|p| read_decompressed(&p)) {
                Ok(b) if good(&b) => got = Some(b),
                Ok(_) => errors.push(format!("{}: sha256 mismatch", src.join(file).display())),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        let urls = known.filter(|_| mirrors).map_or(&[][..], |d| d.mirrors);
        for mirror in urls {
            if got.is_some() {
                break;
            }
            let url = format!("{mirror}{file}.gz");
            match fetch_url(&url).and_then(|b| maybe_gunzip(b, &url)) {
                Ok(b) if good(&b) => got = Some(b),
                Ok(_) => errors.push(format!("{url}: sha256 mismatch")),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        match got {
            Some(bytes) => {
                write_atomic(&dest, &bytes)?;
                crate::output::eprintln(&format!("wrote {}", dest.display()));
            }
            None => bail!(
                "could not obtain {file} for {name}; tried:\n  {}",
                if errors.is_empty() {
                    format!("no source ({name} has no known mirrors; give --from DIR)")
                } else {
                    errors.join("\n  ")
                }
            ),
        }
    }
    verify(dir, name)
}
