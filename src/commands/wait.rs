//! Waiting for a container process as its subreaper while forwarding signals to it.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{CommandError, ExitCode};
use crate::container::ContainerError;
use crate::linux::signals;

const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

fn sys(op: &str, source: nix::errno::Errno) -> CommandError {
    CommandError::Container(ContainerError::Sys {
        op: op.to_owned(),
        source,
    })
}

/// Blocks the signals we forward (and SIGCHLD) so they queue for the signalfd.
pub fn block_forwarded() -> Result<SigSet, CommandError> {
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    mask.thread_block()
        .map_err(|source| sys("block signals", source))?;
    Ok(mask)
}

/// Waits for init's exit status. init is our child: stage-1 exited and we are its subreaper.
pub fn wait_for(mask: &SigSet, pid: i32, start_time: u64) -> Result<ExitCode, CommandError> {
    let sfd = SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC)
        .map_err(|source| sys("signalfd", source))?;
    // Forward through a pidfd taken now, while init is certainly ours and alive or a zombie.
    let pidfd = signals::pidfd_for(pid, start_time).ok();
    loop {
        // Reap everything that has exited (orphans of the container are ours too); stop at init.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == Pid::from_raw(pid) => return Ok(code),
                Ok(WaitStatus::Signaled(p, sig, _)) if p == Pid::from_raw(pid) => {
                    return Ok(128 + sig as i32);
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        match sfd.read_signal() {
            Ok(Some(info)) => {
                let signo = info.ssi_signo as i32;
                if signo != libc::SIGCHLD
                    && let Some(fd) = &pidfd
                {
                    let _ = signals::send_via_pidfd(fd, pid, signo);
                }
            }
            Ok(None) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(source) => return Err(sys("read signalfd", source)),
        }
    }
}
