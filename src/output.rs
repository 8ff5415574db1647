//! Standard output that never panics: `println!` panics when stdout cannot be written (a full
//! disk, `> /dev/full`), which would abort a run between folds. Here a failed write is recorded
//! and training goes on (every result is in files); `main` reports it and exits non-zero at the
//! end. (A closed pipe ends the process quietly instead: `main` restores SIGPIPE.)

use std::io::Write;
use std::sync::Mutex;

static FAILED: Mutex<Option<String>> = Mutex::new(None);

/// Writes `text` to stdout; a failure is recorded for [`failure`], not raised.
pub fn print(text: &str) {
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
