//! Attributes of the calling process set through raw syscalls: prctl flags, personality,
//! session keyring, domain name, close-on-exec marking, signal dispositions. Each returns the
//! kernel's errno; callers name the operation in their own errors.

use std::ffi::CStr;

use nix::errno::Errno;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction};

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: the prctl options used here take one integer argument and no pointers.
    let rc = unsafe { libc::prctl(option, arg, 0, 0, 0) };
    Errno::result(rc).map(drop)
}

/// Orphans of our descendants become our children (so we can reap and wait for them).
pub fn set_child_subreaper() -> Result<(), Errno> {
    prctl(libc::PR_SET_CHILD_SUBREAPER, 1)
}

pub fn set_no_new_privs() -> Result<(), Errno> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)
}

/// Keep the permitted capabilities across setuid (on), or stop doing so (off).
pub fn set_keepcaps(on: bool) -> Result<(), Errno> {
    prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(on))
}

pub fn set_personality(persona: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: personality takes a plain value and changes only this process's persona.
    let rc = unsafe { libc::personality(persona) };
    Errno::result(rc).map(drop)
}

/// Joins a new anonymous session keyring named `name`.
pub fn join_session_keyring(name: &CStr) -> Result<(), Errno> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: keyctl(JOIN_SESSION_KEYRING, name) reads the NUL-terminated name only.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    Errno::result(rc).map(drop)
}

pub fn set_domainname(name: &str) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe `name`'s bytes, valid for the call.
    let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(rc).map(drop)
}

/// Makes fds `3..first` inheritable and marks every fd from `first` up close-on-exec
/// (close_range, or one by one from /proc on kernels before 5.11).
pub fn keep_only_fds_below(first: u32) -> Result<(), Errno> {
    for fd in 3..first {
        // SAFETY: F_SETFD on an inherited fd number; an unused number just fails with EBADF.
        unsafe { libc::fcntl(fd as i32, libc::F_SETFD, 0) };
    }
    // SAFETY: close_range with CLOEXEC only marks fds; it cannot invalidate memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    match Errno::result(rc) {
        Ok(_) => Ok(()),
        Err(Errno::ENOSYS | Errno::EINVAL) => {
            let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|fd| *fd >= first as i32)
                .collect();
            for fd in fds {
                // SAFETY: F_SETFD on an fd number; a stale one just fails with EBADF.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Default handling for every signal and an empty mask.
pub fn reset_signals() -> Result<(), Errno> {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL is always sound; no handler code is involved.
        let _ = unsafe { sigaction(sig, &default) };
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}
