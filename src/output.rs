//! Standard output that never panics: `println!` panics when stdout cannot be written (a full
//! disk, `> /dev/full`), which would abort a run between folds. Here a failed write is recorded
//! and training goes on (every result is in files); `main` reports it and exits non-zero at the
//! end. (A closed pipe ends the process quietly instead: `main` restores SIGPIPE.)

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static FAILED: Mutex<Option<String>> = Mutex::new(None);

/// Set when the process started with its stdout closed (`>&-`).
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Called first thing in `main`: notes whether the process started with its stdout closed
/// (`mnist-lab predict … >&-`). Rust's runtime reopens a closed standard descriptor on
/// /dev/null before `main` (so no file the process opens takes it), where writes vanish
/// without an error; a stdout that is /dev/null opened for reading and writing, as only that
/// reopening does (a shell's `>/dev/null` opens it write-only), was closed, and the first
/// [`print`] fails as a write to `/dev/full` does.
pub fn note_closed_stdout() {
    #[cfg(unix)]
    // SAFETY: fcntl(F_GETFL) and fstat/stat only read the state of a descriptor and a path
    // into local memory.
    unsafe {
        let flags = libc::fcntl(1, libc::F_GETFL);
        let closed = flags == -1 || {
            let mut out: libc::stat = std::mem::zeroed();
            let mut null: libc::stat = std::mem::zeroed();
            flags & libc::O_ACCMODE == libc::O_RDWR
                && libc::fstat(1, &mut out) == 0
                && libc::stat(c"/dev/null".as_ptr(), &mut null) == 0
                && out.st_mode & libc::S_IFMT == libc::S_IFCHR
                && out.st_rdev == null.st_rdev
        };
        STDOUT_CLOSED.store(closed, Ordering::SeqCst);
    }
}

/// Writes `text` to stdout; a failure is recorded for [`failure`], not raised.
pub fn print(text: &str) {
    if STDOUT_CLOSED.load(Ordering::SeqCst) {
        let mut failed = FAILED.lock().unwrap_or_else(|p| p.into_inner());
        failed.get_or_insert_with(|| "stdout is closed".to_string());
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        let mut failed = FAILED.lock().unwrap_or_else(|p| p.into_inner());
        failed.get_or_insert_with(|| e.to_string());
    }
}

/// Writes `line` and a newline to stdout (see [`print`]).
pub fn println(line: &str) {
    print(&format!("{line}\n"));
}

/// The first error writing to stdout, if any.
pub fn failure() -> Option<String> {
    FAILED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Writes `line` and a newline to stderr, ignoring a failure: stderr is where failures are
/// told, so there is nowhere left to tell this one (`eprintln!` would panic instead).
pub fn eprintln(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
