//! `run`: create + start, then (unless --detach) forward signals to init, wait for it as its
//! subreaper, delete the container (unless --keep) and return its exit code.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::lifecycle::create_request;
use super::{CommandError, ExitCode};
use crate::cli::RunArgs;
use crate::container::{self, ContainerError};
use crate::linux::signals;
use crate::state::Store;

const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

pub fn run(store: &Store, a: &RunArgs, systemd_cgroup: bool) -> Result<ExitCode, CommandError> {
    // Blocked before anything is forked: a signal for the container must reach it, not kill us
    // half-way. init unblocks everything before exec.
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    mask.thread_block().map_err(|source| sys("block signals", source))?;

    let record = container::create(store, &create_request(&a.id, &a.opts, systemd_cgroup))?;
    if let Err(e) = container::start(store, &a.id) {
        let _ = container::delete(store, &a.id, true);
        return Err(e.into());
    }
    if a.detach {
        return Ok(0);
    }
    let code = wait_for(&mask, record.pid, record.start_time)?;
    if !a.keep {
        container::delete(store, &a.id, true)?;
    }
    Ok(code)
}

fn sys(op: &str, source: nix::errno::Errno) -> CommandError {
    CommandError::Container(ContainerError::Sys { op: op.to_owned(), source })
}

/// Waits for init's exit status. init is our child: stage-1 exited and we are its subreaper.
fn wait_for(mask: &SigSet, pid: i32, start_time: u64) -> Result<ExitCode, CommandError> {
    let sfd = SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC).map_err(|source| sys("signalfd", source))?;
    // Forward through a pidfd taken now, while init is certainly ours and alive or a zombie.
    let pidfd = signals::pidfd_for(pid, start_time).ok();
    loop {
        // Reap everything that has exited (orphans of the container are ours too); stop at init.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == Pid::from_raw(pid) => return Ok(code),
                Ok(WaitStatus::Signaled(p, sig, _)) if p == Pid::from_raw(pid) => return Ok(128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        match sfd.read_signal() {
            Ok(Some(info)) => {
                let signo = info.ssi_signo as i32;
                if signo != libc::SIGCHLD {
                    if let Some(fd) = &pidfd {
                        let _ = signals::send_via_pidfd(fd, pid, signo);
                    }
                }
            }
            Ok(None) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(source) => return Err(sys("read signalfd", source)),
        }
    }
}
