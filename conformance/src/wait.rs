//! Polling with a generous deadline.
//!
//! The deadline only guards against hangs; no test asserts on how long
//! anything takes.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait may take before the test is declared hung.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// Polls `done` until it returns true; panics naming `what` after [`HANG_GUARD`].
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG_GUARD;
    let mut pause = Duration::from_millis(2);
    while !done() {
        if Instant::now() > deadline {
            panic!("timed out after {HANG_GUARD:?} waiting until {what}");
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Waits until `path` exists.
pub fn wait_for_file(path: &Path) {
    wait_until(&format!("{} exists", path.display()), || path.exists());
}
