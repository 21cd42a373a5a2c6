//! The container's terminal: a pty whose master goes to the engine over `--console-socket`.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::pty::{Winsize, grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

#[derive(Debug, thiserror::Error)]
pub enum TtyError {
    #[error("open pty master /dev/ptmx")]
    OpenMaster(#[source] Errno),
    #[error("prepare pty slave")]
    Slave(#[source] Errno),
    #[error("open pty slave {path}")]
    OpenSlave {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("send pty master over the console socket")]
    Send(#[source] Errno),
    #[error("make {path} the controlling terminal and stdio")]
    Stdio {
        path: PathBuf,
        #[source]
        source: Errno,
    },
}

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, Winsize);
nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, Winsize);

/// The window size of the terminal behind `fd`, if it is one.
pub fn window_size(fd: &impl AsRawFd) -> Option<Winsize> {
    let mut ws = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one Winsize into `ws`, which lives across the call.
    unsafe { get_winsize(fd.as_raw_fd(), &mut ws) }
        .ok()
        .map(|_| ws)
}

pub fn set_window_size(fd: &impl AsRawFd, ws: &Winsize) -> Result<(), Errno> {
    // SAFETY: TIOCSWINSZ reads one Winsize from `ws`.
    unsafe { set_winsize(fd.as_raw_fd(), ws) }.map(drop)
}

/// Receives one fd sent with SCM_RIGHTS (a pty master) on a connected unix socket.
pub fn receive_fd(socket: &impl AsRawFd) -> Result<OwnedFd, Errno> {
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for cmsg in msg.cmsgs()? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(fd) = fds.first()
        {
            // SAFETY: SCM_RIGHTS just installed this fd in our table; nothing else owns it.
            return Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(*fd) });
        }
    }
    Err(Errno::EPROTO)
}

/// Creates a pty in the container's devpts, sends the master to the console socket, and makes
/// the slave the calling process's controlling terminal and stdio. Returns the slave's path.
pub fn setup_console(socket: &OwnedFd, size: Option<(u16, u16)>) -> Result<PathBuf, TtyError> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(TtyError::OpenMaster)?;
    grantpt(&master).map_err(TtyError::Slave)?;
    unlockpt(&master).map_err(TtyError::Slave)?;
    let slave_path = PathBuf::from(ptsname_r(&master).map_err(TtyError::Slave)?);
    if let Some((rows, cols)) = size {
        let ws = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one Winsize from the pointer, which outlives the call.
        unsafe { set_winsize(master.as_raw_fd(), &ws) }.map_err(TtyError::Slave)?;
    }
    let slave = nix::fcntl::open(
        &slave_path,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|source| TtyError::OpenSlave {
        path: slave_path.clone(),
        source,
    })?;

    // Like runc, the payload names the file; the fd rides in SCM_RIGHTS.
    let name = b"/dev/ptmx";
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(TtyError::Send)?;
    drop(master);

    let stdio_err = |source| TtyError::Stdio {
        path: slave_path.clone(),
        source,
    };
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal); the fd is a valid open tty.
    let rc = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(rc).map_err(stdio_err)?;
    nix::unistd::dup2_stdin(slave.as_fd()).map_err(stdio_err)?;
    nix::unistd::dup2_stdout(slave.as_fd()).map_err(stdio_err)?;
    nix::unistd::dup2_stderr(slave.as_fd()).map_err(stdio_err)?;
    Ok(slave_path)
}
