//! Where data and results live, and writing files so that a reader never sees half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where things are read and written.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Data root (datasets in subfolders).
    pub data: PathBuf,
    /// Results root.
    pub results: PathBuf,
}

impl Paths {
    /// results/<exp>
    pub fn exp_dir(&self, exp: &str) -> PathBuf {
        self.results.join(exp)
    }

    /// data/<dataset>
    pub fn dataset_dir(&self, dataset: &str) -> PathBuf {
        self.data.join(dataset)
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, renamed over
/// `path` once complete (the last complete write wins; a reader never sees half a file). The
/// temporary file (`.<name>.XXXXXX.tmp`, ignored by git) is removed when anything fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut tmp = temp_file(dir, &format!(".{name}."))
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    tmp.persist(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot rename {} to {}: {}",
            e.file.path().display(),
            path.display(),
            e.error
        )
    })?;
    Ok(())
}

/// A new temporary file `<prefix>XXXXXX.tmp` in `dir`, removed when dropped unless persisted,
/// readable as files written by `std::fs::write` are (0666 less the umask, not tempfile's 0600).
fn temp_file(dir: &Path, prefix: &str) -> std::io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

/// Removes the file at `path` if there is one.
pub fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            anyhow::bail!("cannot remove {}: {e}", path.display())
        }
        _ => Ok(()),
    }
}

/// Proves that files can be written into `dir` (creating it if needed): creates, writes,
/// renames and removes a probe file, as [`write_atomic`] will, leaving nothing behind when a
/// step fails. Called before any training, so an unwritable results folder fails at once
/// instead of after hours of work.
pub fn probe_writable(dir: &Path) -> Result<()> {
    let fail = |what: &str, e: std::io::Error| {
        anyhow::anyhow!(
            "results folder {} is not writable ({what}: {e}); nothing was trained — choose another with --results",
            dir.display()
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("cannot create it", e))?;
    let mut probe =
        temp_file(dir, ".write-probe-").map_err(|e| fail("cannot write a file in it", e))?;
    probe
        .write_all(b"probe")
        .map_err(|e| fail("cannot write a file in it", e))?;
    let moved = dir.join(format!(".write-probe-{}.renamed.tmp", std::process::id()));
    probe
        .persist(&moved)
        .map_err(|e| fail("cannot rename a file in it", e.error))?;
    std::fs::remove_file(&moved).map_err(|e| fail("cannot remove a file from it", e))
}
