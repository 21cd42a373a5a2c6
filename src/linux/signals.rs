//! Signal names and race-free signalling: a pidfd is opened, the process behind it is checked
//! to be the one we started (by start time), then the signal goes through the pidfd, so a
//! recycled pid can never receive it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;

use super::procfs;

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("unknown signal {0:?}")]
    Unknown(String),
    #[error("no such process")]
    NoSuchProcess,
    #[error("signal process {pid}")]
    Send {
        pid: i32,
        #[source]
        source: Errno,
    },
}

/// `KILL`, `SIGKILL`, `kill` and `9` all name SIGKILL.
pub fn parse_signal(text: &str) -> Result<i32, SignalError> {
    if let Ok(n) = text.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(SignalError::Unknown(text.to_owned()))
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(rt) = name.strip_prefix("SIGRTMIN") {
        return realtime(text, libc::SIGRTMIN(), rt);
    }
    if let Some(rt) = name.strip_prefix("SIGRTMAX") {
        return realtime(text, libc::SIGRTMAX(), rt);
    }
    name.parse::<Signal>()
        .map(|s| s as i32)
        .map_err(|_| SignalError::Unknown(text.to_owned()))
}

fn realtime(text: &str, base: i32, offset: &str) -> Result<i32, SignalError> {
    if offset.is_empty() {
        return Ok(base);
    }
    let n: i32 = offset
        .parse()
        .map_err(|_| SignalError::Unknown(text.to_owned()))?;
    let sig = base + n;
    if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&sig) {
        Ok(sig)
    } else {
        Err(SignalError::Unknown(text.to_owned()))
    }
}

/// Opens a pidfd for `pid` if it is still the process that started at `start_time`.
pub fn pidfd_for(pid: i32, start_time: u64) -> Result<OwnedFd, SignalError> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return match Errno::last() {
            Errno::ESRCH => Err(SignalError::NoSuchProcess),
            source => Err(SignalError::Send { pid, source }),
        };
    }
    // SAFETY: the syscall returned a fresh fd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // The pidfd pins the process: if the start time matches now, the fd names our process.
    if !procfs::is_same_live_process(pid, start_time) {
        return Err(SignalError::NoSuchProcess);
    }
    Ok(pidfd)
}

pub fn send_via_pidfd(pidfd: &OwnedFd, pid: i32, signal: i32) -> Result<(), SignalError> {
    // SAFETY: pidfd_send_signal with a null siginfo and zero flags; the pidfd is open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    match Errno::result(rc) {
        Ok(_) => Ok(()),
        Err(Errno::ESRCH) => Err(SignalError::NoSuchProcess),
        Err(source) => Err(SignalError::Send { pid, source }),
    }
}

/// Signals `pid` only if it is still the process that started at `start_time`.
pub fn signal_process(pid: i32, start_time: u64, signal: i32) -> Result<(), SignalError> {
    let pidfd = pidfd_for(pid, start_time)?;
    send_via_pidfd(&pidfd, pid, signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse_signal("KILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("SIGKILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("term").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("SIGRTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("65").is_err());
    }
}
