//! `start`: release init from the exec fifo, then run the poststart hooks.

use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::Mode;

use super::{Container, ContainerError, EXEC_FIFO, Status, status};
use crate::state::Store;

pub fn start(store: &Store, id: &str) -> Result<(), ContainerError> {
    let _lock = store.lock(id)?;
    let c = Container::load(store, id)?;
    if !status::can_start(c.status) {
        return Err(match c.status {
            Status::Stopped => ContainerError::StartStopped,
            Status::Running => ContainerError::StartRunning,
            other => ContainerError::StartState(other.as_str()),
        });
    }
    let fifo = c.dir.join(EXEC_FIFO);
    // Non-blocking, so a dead init cannot hang us: we poll and check it is still alive.
    let r = nix::fcntl::open(
        &fifo,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| ContainerError::Sys {
        op: format!("open {}", fifo.display()),
        source,
    })?;
    loop {
        let mut fds = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(Errno::EINTR) => {
                if !c.init_alive() {
                    return Err(ContainerError::StartStopped);
                }
            }
            Ok(_) => {
                let mut byte = [0u8; 1];
                match nix::unistd::read(&r, &mut byte) {
                    Ok(1) => break,
                    Ok(_) | Err(Errno::EAGAIN) => {
                        if !c.init_alive() {
                            return Err(ContainerError::StartStopped);
                        }
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(source) => {
                        return Err(ContainerError::Sys {
                            op: format!("read {}", fifo.display()),
                            source,
                        });
                    }
                }
            }
            Err(source) => {
                return Err(ContainerError::Sys {
                    op: format!("poll {}", fifo.display()),
                    source,
                });
            }
        }
    }
    // The fifo's absence is what marks the container as started.
    std::fs::remove_file(&fifo).map_err(|source| ContainerError::Io {
        op: "remove",
        path: fifo.clone(),
        source,
    })?;
    let state = super::oci_state(&c.record, Status::Running).to_string();
    for e in crate::hooks::run_hooks_best_effort(&c.hooks("poststart"), state.as_bytes()) {
        log::warn!("poststart hook: {e}");
    }
    Ok(())
}
