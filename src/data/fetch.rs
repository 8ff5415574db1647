//! Putting a dataset's files in place (from a folder or the public mirrors) and verifying them.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::catalog::{descriptor, FILES};
use super::dataset::{find_file, load, Split};
use super::idx::{maybe_gunzip, read_decompressed, sha256_hex};
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
    let packaged = known.map_or(&[][..], |d| d.packaged);
    let folders: Vec<&Path> = from
        .into_iter()
        .chain(packaged.iter().map(Path::new).filter(|p| p.is_dir()))
        .collect();
    let mirrors = known.filter(|_| mirrors).map_or(&[][..], |d| d.mirrors);
    for (i, file) in FILES.iter().enumerate() {
        let dest = dir.join(file);
        let want = known.map(|d| d.sha256[i]);
        if let Ok(bytes) = std::fs::read(&dest) {
            if want.is_none_or(|w| sha256_hex(&bytes) == w) {
                continue;
            }
        }
        let urls: Vec<String> = mirrors.iter().map(|m| format!("{m}{file}.gz")).collect();
        let (got, errors) = obtain(file, name, want, &folders, &urls);
        match got {
            Some((bytes, source)) => {
                // A source tried first that failed (a --from folder with a corrupt file) is
                // said, with where the good file came from instead.
                if !errors.is_empty() {
                    crate::output::eprintln(&format!(
                        "warning: {}; took {file} from {source} instead",
                        errors.join("; ")
                    ));
                }
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

/// The first good copy of `file` of dataset `name` (decompressed; of sha256 `want` where it is
/// known) from `folders`, then `urls`, with where it came from; and what went wrong with each
/// source tried before it.
fn obtain(
    file: &str,
    name: &str,
    want: Option<&str>,
    folders: &[&Path],
    urls: &[String],
) -> (Option<(Vec<u8>, String)>, Vec<String>) {
    let good = |bytes: &[u8]| want.is_none_or(|w| sha256_hex(bytes) == w);
    let mismatch = |source: &str| {
        format!("{source}: sha256 mismatch (not {name}'s file: corrupt, or another one)")
    };
    let mut errors = Vec::new();
    for src in folders {
        match find_file(src, file).and_then(|p| Ok((read_decompressed(&p)?, p))) {
            Ok((b, p)) if good(&b) => return (Some((b, p.display().to_string())), errors),
            Ok((_, p)) => errors.push(mismatch(&p.display().to_string())),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    for url in urls {
        match fetch_url(url).and_then(|b| maybe_gunzip(b, url)) {
            Ok(b) if good(&b) => return (Some((b, url.clone())), errors),
            Ok(_) => errors.push(mismatch(url)),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    (None, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_first_source_is_said_with_the_source_the_good_file_came_from() {
        let root = std::env::temp_dir().join(format!("fetch-obtain-{}", std::process::id()));
        let (bad, good) = (root.join("bad"), root.join("good"));
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::create_dir_all(&good).unwrap();
        std::fs::write(bad.join("f"), b"corrupt").unwrap();
        std::fs::write(good.join("f"), b"the file").unwrap();
        let want = sha256_hex(b"the file");
        let (got, errors) = obtain("f", "demo", Some(&want), &[&bad, &good], &[]);
        let (bytes, source) = got.unwrap();
        assert_eq!(bytes, b"the file");
        assert_eq!(source, good.join("f").display().to_string());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains(&bad.join("f").display().to_string())
                && errors[0].contains("sha256 mismatch"),
            "{errors:?}"
        );
        // Nothing good anywhere: every source's failure is returned.
        let (got, errors) = obtain("f", "demo", Some(&want), &[&bad], &[]);
        assert!(got.is_none() && errors.len() == 1);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
