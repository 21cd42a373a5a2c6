//! `run` in the foreground with a terminal and no --console-socket: husk is the console. It
//! receives the pty master like an engine would, puts its own terminal in raw mode, and copies
//! bytes both ways; window size changes follow the caller's terminal.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;

use nix::errno::Errno;
use nix::pty::Winsize;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::termios::{self, SetArg, Termios};

use super::CommandError;
use crate::container::ContainerError;

nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, Winsize);
nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, Winsize);

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
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| sys("receive pty master", e))?;
    for cmsg in msg.cmsgs().map_err(|e| sys("read pty master message", e))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(fd) = fds.first()
        {
            // SAFETY: SCM_RIGHTS just installed this fd in our table; nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
        }
    }
    Err(sys(
        "receive pty master (no fd in the message)",
        Errno::EPROTO,
    ))
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
        let mut ws = Winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one Winsize into `ws`, which lives across the call.
        if unsafe { get_winsize(libc::STDIN_FILENO, &mut ws) }.is_ok() {
            // SAFETY: TIOCSWINSZ reads one Winsize from `ws`.
            let _ = unsafe { set_winsize(self.master.as_raw_fd(), &ws) };
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
