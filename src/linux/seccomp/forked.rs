//! Test support: run a closure in a forked child, so tests that change process-wide or
//! per-thread kernel state (capabilities, rlimits, seccomp) never touch the test runner.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, pipe};

/// Runs `f` in a forked child and returns what it returned; a panic or an abnormal exit of
/// the child becomes an `Err` describing it.
pub(crate) fn in_child<F: FnOnce() -> Result<(), String>>(f: F) -> Result<(), String> {
    let (status, message) = run(f);
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        other => Err(format!("child ended with {other:?}: {message}")),
    }
}

/// Runs `f` in a forked child and returns how the child ended and what it reported
/// (an `Err` text or a panic message).
pub(crate) fn run<F: FnOnce() -> Result<(), String>>(f: F) -> (WaitStatus, String) {
    let (read_end, write_end) = pipe().unwrap();
    // SAFETY: the child only runs `f` and then `_exit`s without returning into the test
    // harness; glibc makes malloc usable in the child of a multi-threaded parent.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(read_end);
            let (code, message) = match catch_unwind(AssertUnwindSafe(f)) {
                Ok(Ok(())) => (0, String::new()),
                Ok(Err(message)) => (1, message),
                Err(panic) => {
                    let text = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    (2, format!("panic: {text}"))
                }
            };
            let mut out = std::fs::File::from(write_end);
            let _ = out.write_all(message.as_bytes());
            // SAFETY: _exit never returns; it skips the parent's atexit handlers on purpose.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut message = String::new();
            let _ = std::fs::File::from(read_end).read_to_string(&mut message);
            (waitpid(child, None).unwrap(), message)
        }
    }
}
