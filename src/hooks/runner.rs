//! Runs one OCI hook: spawn it with its argv and environment, write the container state to
//! its stdin, collect its output, and wait for it with the hook's timeout.
//!
//! Waiting uses poll(2) on the hook's pipes and a pidfd for the hook process, so there are no
//! threads and no busy loop, and a hook that leaves a background process holding its stdout
//! open still counts as finished when the hook itself exits.
//!
//! Writing the state relies on SIGPIPE being ignored (Rust's runtime ignores it at startup,
//! and the container's init inherits that) so that a hook which exits without reading its
//! stdin shows up as EPIPE, which is not an error.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use oci_spec::runtime::Hook;

/// How much of a hook's stdout and stderr is kept for error messages (the last bytes).
const OUTPUT_LIMIT: usize = 4096;

/// Without a pidfd (kernels before 5.3), how often the hook is checked for exit.
const EXIT_CHECK_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("hook path {path} is not absolute")]
    RelativePath { path: PathBuf },
    #[error("hook {path}: timeout {timeout} is not a positive number of seconds")]
    InvalidTimeout { path: PathBuf, timeout: i64 },
    #[error("hook {path}: environment entry {entry:?} is not NAME=VALUE")]
    InvalidEnv { path: PathBuf, entry: String },
    #[error("spawn hook {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("run hook {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("hook {path} timed out after {timeout}s and was killed{}", output_suffix(.output))]
    TimedOut {
        path: PathBuf,
        timeout: u64,
        output: HookOutput,
    },
    #[error("hook {path} failed: {status}{}", output_suffix(.output))]
    Failed {
        path: PathBuf,
        status: ExitStatus,
        output: HookOutput,
    },
}

/// The tail of what a hook wrote to stdout and stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookOutput {
    pub stdout: String,
    pub stderr: String,
}

fn output_suffix(output: &HookOutput) -> String {
    let mut s = String::new();
    for (name, text) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let text = text.trim_end();
        if !text.is_empty() {
            s.push_str(&format!("; {name}: {text}"));
        }
    }
    s
}

/// Runs the hooks in order and stops at the first failure (prestart, createRuntime,
/// createContainer, startContainer semantics).
pub fn run_hooks(hooks: &[Hook], state_json: &[u8]) -> Result<(), HookError> {
    hooks.iter().try_for_each(|hook| run_hook(hook, state_json))
}

/// Runs every hook even if some fail and returns the failures (poststart and poststop
/// semantics: the caller logs them as warnings and carries on).
pub fn run_hooks_best_effort(hooks: &[Hook], state_json: &[u8]) -> Vec<HookError> {
    hooks
        .iter()
        .filter_map(|hook| run_hook(hook, state_json).err())
        .collect()
}

/// Runs one hook with `state_json` on its stdin.
///
/// `args[0]` becomes argv[0] (the program run is always `path`); `env`, when present,
/// replaces the whole environment (an empty list gives an empty environment), and when
/// absent the hook inherits the caller's; `timeout` seconds after the start the hook is
/// killed with SIGKILL.
pub fn run_hook(hook: &Hook, state_json: &[u8]) -> Result<(), HookError> {
    let path = hook.path().clone();
    if !path.is_absolute() {
        return Err(HookError::RelativePath { path });
    }
    let timeout = match hook.timeout() {
        None => None,
        Some(secs) if secs > 0 => Some(secs.unsigned_abs()),
        Some(timeout) => return Err(HookError::InvalidTimeout { path, timeout }),
    };
    let mut command = command(hook)?;
    let started = Instant::now();
    let child = command.spawn().map_err(|source| HookError::Spawn {
        path: path.clone(),
        source,
    })?;
    let deadline = timeout.map(|secs| started + Duration::from_secs(secs));
    let mut running = Running::new(child, state_json).map_err(|source| io_error(&path, source))?;
    match running.wait(deadline) {
        Ok(Some(status)) if status.success() => Ok(()),
        Ok(Some(status)) => Err(HookError::Failed {
            path,
            status,
            output: running.output(),
        }),
        Ok(None) => Err(HookError::TimedOut {
            path,
            timeout: timeout.unwrap_or_default(),
            output: running.output(),
        }),
        Err(source) => Err(io_error(&path, source)),
    }
}

fn io_error(path: &std::path::Path, source: io::Error) -> HookError {
    HookError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn command(hook: &Hook) -> Result<Command, HookError> {
    let mut command = Command::new(hook.path());
    if let Some((argv0, rest)) = hook.args().as_deref().and_then(|a| a.split_first()) {
        command.arg0(argv0).args(rest);
    }
    if let Some(env) = hook.env() {
        command.env_clear();
        for entry in env {
            let Some((name, value)) = entry.split_once('=').filter(|(n, _)| !n.is_empty()) else {
                return Err(HookError::InvalidEnv {
                    path: hook.path().clone(),
                    entry: entry.clone(),
                });
            };
            command.env(name, value);
        }
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(command)
}

/// A spawned hook and the ends of its pipes that are still open.
struct Running<'a> {
    child: Child,
    pidfd: Option<OwnedFd>,
    stdin: Option<ChildStdin>,
    unwritten: &'a [u8],
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    out: Vec<u8>,
    err: Vec<u8>,
}

impl Drop for Running<'_> {
    /// Never leave a hook running or unreaped when returning early with an error.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl<'a> Running<'a> {
    /// Takes over the child's pipes (made non-blocking) and opens a pidfd for it. The
    /// returned value owns the child: dropping it kills and reaps a hook still running.
    fn new(mut child: Child, state: &'a [u8]) -> io::Result<Self> {
        let pidfd = pidfd_open(child.id());
        let stdin = child.stdin.take().filter(|_| !state.is_empty());
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let running = Running {
            child,
            pidfd,
            stdin,
            unwritten: state,
            stdout,
            stderr,
            out: Vec::new(),
            err: Vec::new(),
        };
        let fds = [
            running.stdin.as_ref().map(|f| f.as_fd()),
            running.stdout.as_ref().map(|f| f.as_fd()),
            running.stderr.as_ref().map(|f| f.as_fd()),
        ];
        for fd in fds.into_iter().flatten() {
            fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
        }
        Ok(running)
    }

    fn output(&self) -> HookOutput {
        HookOutput {
            stdout: String::from_utf8_lossy(&self.out).into_owned(),
            stderr: String::from_utf8_lossy(&self.err).into_owned(),
        }
    }

    /// Feeds stdin and collects output until the hook exits (`Some(status)`) or the deadline
    /// passes (`None`, after killing and reaping the hook).
    fn wait(&mut self, deadline: Option<Instant>) -> io::Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                // Take what is already buffered, without waiting for writers the hook left
                // behind (a daemon it started may hold the pipes open).
                self.read_outputs()?;
                return Ok(Some(status));
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                self.child.kill()?;
                self.child.wait()?;
                self.read_outputs()?;
                return Ok(None);
            }
            self.poll_once(deadline.map(|d| d - now))?;
            self.write_state()?;
            self.read_outputs()?;
        }
    }

    /// Sleeps until a pipe is ready, the hook exits, or `remaining` runs out.
    fn poll_once(&self, remaining: Option<Duration>) -> io::Result<()> {
        let wait = match (&self.pidfd, remaining) {
            (Some(_), None) => None,
            (Some(_), Some(r)) => Some(r),
            (None, r) => Some(r.map_or(EXIT_CHECK_INTERVAL, |r| r.min(EXIT_CHECK_INTERVAL))),
        };
        // Round up so a deadline 0.4ms away does not spin with a zero timeout.
        let timeout = match wait {
            None => PollTimeout::NONE,
            Some(d) => {
                let ms = d.as_micros().div_ceil(1000);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = Vec::with_capacity(4);
        if let Some(fd) = &self.pidfd {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        if let Some(fd) = &self.stdin {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
        }
        for fd in [
            self.stdout.as_ref().map(|f| f.as_fd()),
            self.stderr.as_ref().map(|f| f.as_fd()),
        ]
        .into_iter()
        .flatten()
        {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Writes as much of the state as the pipe takes; closes stdin once all is written or
    /// the hook has closed its end (EPIPE: the hook does not want the state, which is fine).
    fn write_state(&mut self) -> io::Result<()> {
        let Some(stdin) = &mut self.stdin else {
            return Ok(());
        };
        loop {
            match stdin.write(self.unwritten) {
                Ok(n) => {
                    self.unwritten = &self.unwritten[n..];
                    if self.unwritten.is_empty() {
                        self.stdin = None;
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    self.stdin = None;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn read_outputs(&mut self) -> io::Result<()> {
        if drain(self.stdout.as_mut(), &mut self.out)? {
            self.stdout = None;
        }
        if drain(self.stderr.as_mut(), &mut self.err)? {
            self.stderr = None;
        }
        Ok(())
    }
}

/// Reads what is available into `keep`, keeping only the last `OUTPUT_LIMIT` bytes.
/// Returns true at end of file.
fn drain(pipe: Option<&mut impl Read>, keep: &mut Vec<u8>) -> io::Result<bool> {
    let Some(pipe) = pipe else { return Ok(false) };
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                keep.extend_from_slice(&buf[..n]);
                if keep.len() > OUTPUT_LIMIT {
                    keep.drain(..keep.len() - OUTPUT_LIMIT);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A pidfd for our own unreaped child (its pid cannot be reused until we wait for it), or
/// `None` where the kernel or a seccomp profile does not offer pidfd_open.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::pid_t::try_from(pid).ok()?, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests;
