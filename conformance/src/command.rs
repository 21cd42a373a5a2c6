//! Runs one runtime command line and captures its result.
//!
//! stdout and stderr go to files, never pipes: after `create` or `run --detach`
//! the container inherits them, and a pipe would keep us waiting until the
//! container exits. The files also let a test read what a detached container
//! printed later.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::reaper;
use crate::wait::HANG_GUARD;

/// What one command did.
#[derive(Debug, Clone)]
pub struct Output {
    /// The full command line, for messages.
    pub command: String,
    /// Exit code; `128 + signal` when the command was killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panics with the whole output unless the command exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "expected success:\n{self}");
        self
    }

    /// Panics with the whole output if the command exited 0.
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(!self.success(), "expected a failure:\n{self}");
        self
    }

    /// Panics unless stderr contains `needle`, ignoring ASCII case.
    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        self.assert_stderr_contains_any(&[needle])
    }

    /// Panics unless stderr contains one of `needles`, ignoring ASCII case.
    #[track_caller]
    pub fn assert_stderr_contains_any(&self, needles: &[&str]) -> &Self {
        let haystack = self.stderr.to_ascii_lowercase();
        assert!(
            needles
                .iter()
                .any(|n| haystack.contains(&n.to_ascii_lowercase())),
            "expected stderr to mention one of {needles:?}:\n{self}"
        );
        self
    }

    /// Panics unless stdout, trimmed, equals `expected`.
    #[track_caller]
    pub fn assert_stdout_eq(&self, expected: &str) -> &Self {
        assert_eq!(self.stdout.trim(), expected, "unexpected stdout:\n{self}");
        self
    }

    /// stdout as it is now: a detached container keeps writing to it.
    pub fn stdout_now(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// stderr as it is now.
    pub fn stderr_now(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Non-empty stdout lines, trimmed.
    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  command: {}", self.command)?;
        writeln!(f, "  exit code: {}", self.code)?;
        writeln!(f, "  stdout: {}", indent(&self.stdout))?;
        write!(f, "  stderr: {}", indent(&self.stderr))
    }
}

fn indent(text: &str) -> String {
    if text.trim().is_empty() {
        return "<empty>".into();
    }
    format!("\n    {}", text.trim_end().replace('\n', "\n    "))
}

/// One command line to run, with its captured output going under `out_dir`.
pub struct Invocation {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    fds: Vec<(OwnedFd, RawFd)>,
    cwd: Option<PathBuf>,
}

impl Invocation {
    pub fn new(program: &Path) -> Self {
        Invocation {
            program: program.to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            fds: Vec::new(),
            cwd: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the command only.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Passes `fd` to the command as file descriptor number `target` (3, 4, ...).
    pub fn inherit_fd(mut self, fd: OwnedFd, target: RawFd) -> Self {
        self.fds.push((fd, target));
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    fn command_line(&self) -> String {
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs to completion, writing stdout/stderr to `<out_prefix>.out/.err`.
    ///
    /// Panics if the command cannot be started or hangs past the guard.
    #[track_caller]
    pub fn execute(self, out_prefix: &Path) -> Output {
        self.try_execute(out_prefix)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Invocation::execute`], returning problems instead of panicking.
    pub fn try_execute(self, out_prefix: &Path) -> Result<Output, String> {
        let command = self.command_line();
        let stdout_path = out_prefix.with_extension("out");
        let stderr_path = out_prefix.with_extension("err");
        let create =
            |path: &Path| File::create(path).map_err(|e| format!("create {}: {e}", path.display()));
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(create(&stdout_path)?)
            .stderr(create(&stderr_path)?);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let mapping: Vec<(RawFd, RawFd)> = self
            .fds
            .iter()
            .map(|(fd, target)| (fd.as_raw_fd(), *target))
            .collect();
        if !mapping.is_empty() {
            let hook = move || place_fds(&mapping);
            // SAFETY: `place_fds` only calls fcntl and dup2, which are
            // async-signal-safe, and allocates nothing.
            unsafe {
                cmd.pre_exec(hook);
            }
        }
        let mut child =
            reaper::spawn_owned(&mut cmd).map_err(|e| format!("cannot run {command}: {e}"))?;
        drop(self.fds);
        let deadline = Instant::now() + HANG_GUARD;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    reaper::release(&child);
                    return Err(format!(
                        "{command} did not finish within {HANG_GUARD:?}; stderr so far:\n{}",
                        fs::read_to_string(&stderr_path).unwrap_or_default()
                    ));
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(e) => {
                    reaper::release(&child);
                    return Err(format!("waiting for {command}: {e}"));
                }
            }
        };
        reaper::release(&child);
        Ok(Output {
            command,
            code: exit_code(status),
            stdout: fs::read_to_string(&stdout_path).unwrap_or_default(),
            stderr: fs::read_to_string(&stderr_path).unwrap_or_default(),
            stdout_path,
            stderr_path,
        })
    }
}

/// Runs in the forked child: moves each source fd to its target number.
fn place_fds(mapping: &[(RawFd, RawFd)]) -> std::io::Result<()> {
    // First park every source above the targets so a target number that is
    // also some other source cannot be clobbered; the parked copies are
    // close-on-exec and vanish at exec.
    const PARK_FROM: RawFd = 1000;
    let mut parked = [0 as RawFd; 16];
    if mapping.len() > parked.len() {
        return Err(std::io::Error::from_raw_os_error(libc::EMFILE));
    }
    for (slot, (src, _)) in parked.iter_mut().zip(mapping) {
        // SAFETY: fcntl on an fd we own in this process; no memory is touched.
        let fd = unsafe { libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, PARK_FROM) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        *slot = fd;
    }
    for (parked_fd, (_, target)) in parked.iter().zip(mapping) {
        // SAFETY: dup2 between two valid descriptor numbers; the new one is
        // inheritable (dup2 clears FD_CLOEXEC), which is the point.
        if unsafe { libc::dup2(*parked_fd, *target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Exit code as a shell reports it.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|sig| 128 + sig))
        .unwrap_or(-1)
}
