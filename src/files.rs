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
