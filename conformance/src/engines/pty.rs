//! Runs an engine command on a terminal of our own, like a user at a shell:
//! `podman run -it` and `ctr run -t` insist on a controlling terminal.
//!
//! The command gets the slave side as stdin/stdout/stderr and as its
//! controlling terminal (new session, `TIOCSCTTY`); the test types into and
//! reads from the master side.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::command::exit_code;
use crate::engines::run::{Cmd, wait_child};
use crate::reaper;
use crate::wait::HANG_GUARD;

/// A command running on a pty whose master we hold.
pub struct PtySession {
    command: String,
    master: File,
    child: Option<Child>,
    seen: Vec<u8>,
}

/// Opens a pty pair with the given window size: (master, slave).
fn open_pair(rows: u16, cols: u16) -> std::io::Result<(File, File)> {
    // SAFETY: posix_openpt returns a new descriptor or -1; no memory is passed.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if master < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `master` was just returned by posix_openpt and is owned by nobody else.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    // SAFETY: grantpt/unlockpt take a valid master descriptor and touch no memory of ours.
    if unsafe { libc::grantpt(master.as_raw_fd()) } != 0
        // SAFETY: as above.
        || unsafe { libc::unlockpt(master.as_raw_fd()) } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: ptsname_r writes at most `name.len()` bytes, NUL-terminated, into `name`.
    if unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated string.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    // SAFETY: open with a valid C string; returns a new descriptor or -1.
    let slave = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `slave` was just opened and is owned by nobody else.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which is valid.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((File::from(master), File::from(slave)))
}

impl PtySession {
    /// Starts `cmd` on a new `rows` x `cols` terminal.
    #[track_caller]
    pub fn spawn(cmd: &Cmd, rows: u16, cols: u16) -> PtySession {
        let command = cmd.command_line();
        let (master, slave) =
            open_pair(rows, cols).unwrap_or_else(|e| panic!("open a pty for {command}: {e}"));
        let clone = |f: &File| {
            f.try_clone()
                .map(Stdio::from)
                .unwrap_or_else(|e| panic!("dup pty slave: {e}"))
        };
        let mut process = cmd.to_command();
        process
            .stdin(clone(&slave))
            .stdout(clone(&slave))
            .stderr(clone(&slave));
        // SAFETY: the hook only calls setsid and ioctl, both async-signal-safe,
        // and allocates nothing.
        unsafe {
            process.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = reaper::spawn_owned(&mut process)
            .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
        // Our copy of the slave must go, or reading the master never sees the end.
        drop(slave);
        PtySession {
            command,
            master,
            child: Some(child),
            seen: Vec::new(),
        }
    }

    /// Types `text` on the terminal.
    #[track_caller]
    pub fn write(&mut self, text: &str) {
        self.master
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("write to the pty of {}: {e}", self.command));
    }

    /// Everything the terminal showed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Reads until the output (from the start) contains `needle`; returns it all.
    #[track_caller]
    pub fn read_until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if self.output().contains(needle) {
                return self.output();
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: no {needle:?} on the terminal within {HANG_GUARD:?}; got {:?}",
                    self.command,
                    self.output()
                );
            }
            match self.read_some(Duration::from_millis(100)) {
                Ok(_) => {}
                Err(e) => panic!(
                    "{}: terminal closed before {needle:?} ({e}); got {:?}",
                    self.command,
                    self.output()
                ),
            }
        }
    }

    /// One poll + read; Ok(0) on timeout. Err when the terminal is gone.
    fn read_some(&mut self, timeout: Duration) -> std::io::Result<usize> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(ms)).map_err(std::io::Error::from)?;
        if ready == 0 {
            return Ok(0);
        }
        let mut buf = [0u8; 4096];
        match self.master.read(&mut buf) {
            // EIO: every slave descriptor is closed.
            Ok(0) => Err(std::io::Error::from(ErrorKind::UnexpectedEof)),
            Ok(n) => {
                self.seen.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            Err(e) => Err(e),
        }
    }

    /// Waits for the command to exit, collecting what it printed meanwhile;
    /// returns (exit code, everything the terminal showed).
    #[track_caller]
    pub fn wait(mut self) -> (i32, String) {
        let deadline = Instant::now() + HANG_GUARD;
        let Some(mut child) = self.child.take() else {
            return (-1, self.output());
        };
        loop {
            // Keep draining: a full terminal would block the command.
            let _ = self.read_some(Duration::from_millis(20));
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    reaper::release(&child);
                    panic!(
                        "{} did not exit within {HANG_GUARD:?}; terminal showed {:?}",
                        self.command,
                        self.output()
                    );
                }
                Ok(None) => {}
                Err(e) => panic!("wait for {}: {e}", self.command),
            }
        }
        let status = wait_child(&mut child, Duration::from_millis(1)).unwrap_or_else(|e| {
            panic!("{}: {e}; terminal showed {:?}", self.command, self.output())
        });
        // Whatever is still buffered on the master.
        while matches!(self.read_some(Duration::from_millis(50)), Ok(n) if n > 0) {}
        (exit_code(status), self.output())
    }
}

impl Drop for PtySession {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            reaper::release(&child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_sees_a_terminal_of_the_requested_size() {
        let dir = std::env::temp_dir();
        let cmd = Cmd::new("sh", &dir).args(["-c", "read line; stty size; echo got-$line; exit 9"]);
        let mut session = PtySession::spawn(&cmd, 33, 101);
        session.write("typed\n");
        session.read_until("got-typed");
        let (code, shown) = session.wait();
        assert_eq!(code, 9, "{shown:?}");
        assert!(shown.contains("33 101"), "{shown:?}");
    }
}
