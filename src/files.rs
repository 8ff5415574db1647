//! Where data and results live, and writing files so that a reader never sees half of one.

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

/// Writes `bytes` to `path` atomically (temp file in the same folder, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Unique per process and call, so threads and processes writing the same file never
    // share a temp file; the rename makes the last complete write win.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{n}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Proves that files can be written into `dir` (creating it if needed): creates, writes,
/// renames and removes a probe file, as [`write_atomic`] will. Called before any training, so
/// an unwritable results folder fails at once instead of after hours of work.
pub fn probe_writable(dir: &Path) -> Result<()> {
    let fail = |what: &str, e: std::io::Error| {
        anyhow::anyhow!(
            "results folder {} is not writable ({what}: {e}); nothing was trained — choose another with --results",
            dir.display()
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("cannot create it", e))?;
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    let moved = dir.join(format!(".write-probe-{}.renamed", std::process::id()));
    std::fs::write(&probe, b"probe").map_err(|e| fail("cannot write a file in it", e))?;
    let renamed = std::fs::rename(&probe, &moved);
    let _ = std::fs::remove_file(&probe);
    renamed.map_err(|e| fail("cannot rename a file in it", e))?;
    std::fs::remove_file(&moved).map_err(|e| fail("cannot remove a file from it", e))
}
