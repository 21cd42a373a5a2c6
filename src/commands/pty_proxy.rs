//! `run` in the foreground with a terminal and no --console-socket: husk is the console. It
//! receives the pty master like an engine would, puts its own terminal in raw mode, and copies
//! bytes both ways; window size changes follow the caller's terminal.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;

use nix::errno::Errno;
use nix::sys::termios::{self, SetArg, Termios};

use super::CommandError;
use crate::container::ContainerError;
use crate::linux::tty;

fn sys(op: &str, source: Errno) -> CommandError {
    CommandError::Container(ContainerError::Sys {
        op: op.to_owned(),
        source,
    })
}

/// Accepts the connection husk's own create made and takes the pty master it carries.
pub fn receive_master(listener: &UnixListener) -> Result<OwnedFd, CommandError> {
    let (stream, _) = listener.accept().map_err(|source| CommandError::Io {
        op: "accept console connection on",
        path: "console socket".into(),
        source,
    })?;
    tty::receive_fd(&stream).map_err(|e| sys("receive pty master", e))
}

/// Restores the caller's terminal settings when dropped.
struct RawMode {
    saved: Termios,
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}

pub struct PtyProxy {
    master: OwnedFd,
    pub stdin_open: bool,
    pub master_open: bool,
    _raw: Option<RawMode>,
}

impl PtyProxy {
    pub fn new(master: OwnedFd) -> PtyProxy {
        let raw = termios::tcgetattr(std::io::stdin()).ok().and_then(|saved| {
            let mut raw = saved.clone();
            termios::cfmakeraw(&mut raw);
            termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &raw).ok()?;
            Some(RawMode { saved })
        });
        let proxy = PtyProxy {
            master,
            stdin_open: true,
            master_open: true,
            _raw: raw,
        };
        proxy.resize();
        proxy
    }

    pub fn master(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }

    /// Gives the container's terminal the caller's window size (if the caller has a terminal).
    pub fn resize(&self) {
        if let Some(ws) = tty::window_size(&std::io::stdin()) {
            let _ = tty::set_window_size(&self.master, &ws);
        }
    }

    /// Caller's stdin -> container. EOF closes our side of the input.
    pub fn pump_stdin(&mut self) {
        let mut buf = [0u8; 4096];
        match nix::unistd::read(std::io::stdin(), &mut buf) {
            Ok(0) | Err(Errno::EIO | Errno::EBADF) => self.stdin_open = false,
            Ok(n) => {
                let _ = write_all(self.master.as_fd(), &buf[..n]);
            }
            Err(_) => {}
        }
    }

    /// Container -> caller's stdout. EIO means every holder of the slave is gone.
    pub fn pump_master(&mut self) {
        let mut buf = [0u8; 4096];
        match nix::unistd::read(&self.master, &mut buf) {
            Ok(0) | Err(Errno::EIO) => self.master_open = false,
            Ok(n) => {
                let _ = write_all(std::io::stdout().as_fd(), &buf[..n]);
            }
            Err(_) => {}
        }
    }

    /// What the container wrote just before it exited.
    pub fn drain(&mut self) {
        while self.master_open {
            let mut fds = [nix::poll::PollFd::new(
                self.master.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if !matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0) {
                break;
            }
            self.pump_master();
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> Result<(), Errno> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
