//! A `--console-socket` server: receives the pty master the runtime sends
//! over `SCM_RIGHTS`, then talks to the container's terminal through it.

use std::fs::File;
use std::io::{ErrorKind, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::cmsg_space;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

use crate::wait::HANG_GUARD;

/// A listening console socket; the runtime connects once and sends the master.
pub struct ConsoleSocket {
    path: PathBuf,
    receiver: JoinHandle<Result<OwnedFd, String>>,
}

impl ConsoleSocket {
    /// Binds `path` and starts waiting for the runtime in a thread.
    pub fn listen(path: &Path) -> ConsoleSocket {
        let listener = UnixListener::bind(path)
            .unwrap_or_else(|e| panic!("bind console socket {}: {e}", path.display()));
        let receiver = thread::spawn(move || receive_master(&listener));
        ConsoleSocket {
            path: path.to_path_buf(),
            receiver,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the runtime to send the pty master.
    #[track_caller]
    pub fn receive(self) -> Pty {
        match self.receiver.join() {
            Ok(Ok(fd)) => Pty {
                master: File::from(fd),
            },
            Ok(Err(e)) => panic!("console socket {}: {e}", self.path.display()),
            Err(_) => panic!("console socket thread for {} panicked", self.path.display()),
        }
    }
}

impl ConsoleSocket {
    /// Waits for the runtime to send one fd (a pty master, or a pidfd over `--pidfd-socket`).
    #[track_caller]
    pub fn receive_fd(self) -> OwnedFd {
        match self.receiver.join() {
            Ok(Ok(fd)) => fd,
            Ok(Err(e)) => panic!("socket {}: {e}", self.path.display()),
            Err(_) => panic!("socket thread for {} panicked", self.path.display()),
        }
    }
}

fn receive_master(listener: &UnixListener) -> Result<OwnedFd, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("set nonblocking: {e}"))?;
    let deadline = Instant::now() + HANG_GUARD;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("no runtime connected ({e})")),
        }
    };
    stream
        .set_nonblocking(false)
        .map_err(|e| format!("set blocking: {e}"))?;
    stream
        .set_read_timeout(Some(HANG_GUARD))
        .map_err(|e| format!("set read timeout: {e}"))?;
    let mut payload = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut payload)];
    let mut space = cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("recvmsg: {e}"))?;
    let mut fds: Vec<RawFd> = Vec::new();
    for cmsg in msg.cmsgs().map_err(|e| format!("control messages: {e}"))? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            fds.extend(received);
        }
    }
    let mut owned: Vec<OwnedFd> = fds
        .into_iter()
        // SAFETY: SCM_RIGHTS just installed these descriptors in this process
        // and nothing else refers to them.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if owned.len() != 1 {
        return Err(format!(
            "expected exactly one fd over SCM_RIGHTS, got {}",
            owned.len()
        ));
    }
    owned.pop().ok_or_else(|| "no fd received".to_string())
}

/// The master side of a container's terminal.
pub struct Pty {
    master: File,
}

impl Pty {
    /// Types `text` into the container's terminal.
    #[track_caller]
    pub fn write(&mut self, text: &str) {
        self.master
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("write to pty master: {e}"));
    }

    /// Reads until the output contains `needle`; returns everything read.
    /// Panics with the output so far if the terminal closes or hangs first.
    #[track_caller]
    pub fn read_until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + HANG_GUARD;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if String::from_utf8_lossy(&seen).contains(needle) {
                return String::from_utf8_lossy(&seen).into_owned();
            }
            if Instant::now() > deadline {
                panic!(
                    "pty: no {needle:?} within {HANG_GUARD:?}; got {:?}",
                    String::from_utf8_lossy(&seen)
                );
            }
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(100u16)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(e) => panic!("poll pty master: {e}"),
            }
            match self.master.read(&mut buf) {
                Ok(0) => panic!(
                    "pty closed before {needle:?}; got {:?}",
                    String::from_utf8_lossy(&seen)
                ),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                // EIO: every slave fd is closed (the container exited).
                Err(e) => panic!(
                    "pty read failed before {needle:?} ({e}); got {:?}",
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
    }
}
