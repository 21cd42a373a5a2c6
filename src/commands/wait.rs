//! Waiting for a container process as its subreaper while forwarding signals to it.

use std::os::fd::AsFd;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::pty_proxy::PtyProxy;
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
pub fn wait_for(
    mask: &SigSet,
    pid: i32,
    start_time: u64,
    mut pty: Option<&mut PtyProxy>,
) -> Result<ExitCode, CommandError> {
    let sfd = SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC)
        .map_err(|source| sys("signalfd", source))?;
    // Forward through a pidfd taken now, while init is certainly ours and alive or a zombie.
    let pidfd = signals::pidfd_for(pid, start_time).ok();
    loop {
        // Reap everything that has exited (orphans of the container are ours too); stop at init.
        loop {
            let code = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == Pid::from_raw(pid) => code,
                Ok(WaitStatus::Signaled(p, sig, _)) if p == Pid::from_raw(pid) => 128 + sig as i32,
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            };
            if let Some(p) = pty.as_deref_mut() {
                p.drain();
            }
            return Ok(code);
        }
        if let Some(p) = pty.as_deref_mut() {
            let stdin = std::io::stdin();
            let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            if p.master_open {
                fds.push(PollFd::new(p.master(), PollFlags::POLLIN));
            }
            let stdin_slot = p.stdin_open.then(|| {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(source) => return Err(sys("poll", source)),
            }
            let ready = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
            let (signal_ready, master_ready) = (ready(0), p.master_open && ready(1));
            let stdin_ready = stdin_slot.is_some_and(ready);
            drop(fds);
            if master_ready {
                p.pump_master();
            }
            if stdin_ready {
                p.pump_stdin();
            }
            if !signal_ready {
                continue;
            }
        }
        match sfd.read_signal() {
            Ok(Some(info)) => {
                let signo = info.ssi_signo as i32;
                match (signo, pty.as_deref()) {
                    (libc::SIGCHLD, _) => {}
                    // The pty's size change signals the container by itself.
                    (libc::SIGWINCH, Some(p)) => p.resize(),
                    _ => {
                        if let Some(fd) = &pidfd {
                            let _ = signals::send_via_pidfd(fd, pid, signo);
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(source) => return Err(sys("read signalfd", source)),
        }
    }
}
