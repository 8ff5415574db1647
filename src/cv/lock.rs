//! Advisory file locks between processes (`flock`), like cargo's "Blocking waiting for file
//! lock": one per fold while it trains, so two `run`s of one experiment never train a fold
//! twice, one per experiment while its merged files are rewritten, so the last merge always
//! sees every finished fold, and one per final model while it trains
//! ([`crate::final_model::final_lock`]). A lock is released when its holder drops it or its
//! process ends, however it ends; the lock files themselves stay (empty, ignored by git).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A held lock.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

fn open(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open lock file {}", path.display()))
}

#[cfg(unix)]
fn flock(file: &File, wait: bool) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    let op = libc::LOCK_EX | if wait { 0 } else { libc::LOCK_NB };
    loop {
        // SAFETY: flock on a file descriptor this File owns for the whole call.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !wait => return Ok(false),
            // A filesystem without locks (some network mounts): go on unlocked, as before
            // locks existed; only two runs of one experiment at once could then overlap.
            Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS) => {
                crate::output::eprintln(&format!(
                    "warning: this filesystem does not support file locks ({e}); two runs of one experiment may train the same fold"
                ));
                return Ok(true);
            }
            _ => return Err(e),
        }
    }
}

#[cfg(not(unix))]
fn flock(_file: &File, _wait: bool) -> std::io::Result<bool> {
    Ok(true)
}

impl FileLock {
    /// The lock at `path` if no one else holds it, else `None`.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>> {
        let file = open(path)?;
        let got = flock(&file, false).with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(got.then_some(FileLock { _file: file }))
    }

    /// The lock at `path`, waiting for whoever holds it.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        let file = open(path)?;
        flock(&file, true).with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(FileLock { _file: file })
    }
}

/// The lock file of fold `fold` of the experiment in `dir`.
pub fn fold_lock(dir: &Path, fold: usize) -> PathBuf {
    dir.join("folds").join(format!(".fold-{fold}.lock"))
}

/// The lock file of the experiment's merged files in `dir`.
pub fn merge_lock(dir: &Path) -> PathBuf {
    dir.join(".merge.lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_refused_until_dropped() {
        let dir = std::env::temp_dir().join(format!("mnist-lab-lock-{}", std::process::id()));
        let path = fold_lock(&dir, 1);
        let held = FileLock::try_acquire(&path).unwrap().expect("free");
        // A second open file description conflicts even within one process.
        assert!(FileLock::try_acquire(&path).unwrap().is_none());
        drop(held);
        assert!(FileLock::try_acquire(&path).unwrap().is_some());
        let _ = std::fs::remove_dir_all(dir);
    }
}
