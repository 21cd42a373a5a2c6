//! Runs one engine command line (podman, ctr, ...) and captures its result.
//!
//! Like [`crate::command`], stdout and stderr go to files, never pipes: a
//! detached container or a daemonized monitor (conmon, a containerd shim) may
//! inherit them and would keep a pipe open long after the command returned.
//! Stdin, when given, is a file too.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::command::exit_code;
use crate::reaper;
use crate::wait::HANG_GUARD;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// What one engine command did.
#[derive(Debug, Clone)]
pub struct Ran {
    /// The full command line, for messages.
    pub command: String,
    /// Exit code; `128 + signal` when the command was killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panics with the whole output unless the command exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "expected success:\n{self}");
        self
    }

    /// Panics with the whole output unless the command exited `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code:\n{self}");
        self
    }

    /// Panics unless stdout, trimmed, equals `expected`.
    #[track_caller]
    pub fn assert_stdout_eq(&self, expected: &str) -> &Self {
        assert_eq!(self.stdout.trim(), expected, "unexpected stdout:\n{self}");
        self
    }

    /// Panics unless stdout contains `needle`.
    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "expected stdout to contain {needle:?}:\n{self}"
        );
        self
    }

    /// Panics unless stderr contains `needle`, ignoring ASCII case.
    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr
                .to_ascii_lowercase()
                .contains(&needle.to_ascii_lowercase()),
            "expected stderr to mention {needle:?}:\n{self}"
        );
        self
    }

    /// Panics unless stderr is empty: the engine hands the runtime's stderr
    /// to the user, so a runtime that logs routine warnings there floods
    /// every command.
    #[track_caller]
    pub fn assert_stderr_empty(&self) -> &Self {
        assert!(
            self.stderr.trim().is_empty(),
            "expected nothing on stderr ({} lines):\n{self}",
            self.stderr.lines().count()
        );
        self
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

impl fmt::Display for Ran {
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
    // Keep messages readable when a runtime floods stderr.
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let shown = if lines.len() > 60 {
        let mut v = lines[..30].to_vec();
        v.push("    [...]");
        v.extend_from_slice(&lines[lines.len() - 30..]);
        v
    } else {
        lines
    };
    format!("\n    {}", shown.join("\n    "))
}

/// One engine command line.
#[derive(Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    netns: Option<PathBuf>,
    cwd: Option<PathBuf>,
    out_dir: PathBuf,
}

impl Cmd {
    /// A command whose captured output files go under `out_dir`.
    pub fn new(program: impl AsRef<OsStr>, out_dir: &Path) -> Cmd {
        Cmd {
            program: program.as_ref().to_os_string(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            netns: None,
            cwd: None,
            out_dir: out_dir.to_path_buf(),
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cmd {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Feeds `input` on stdin (from a file; stdin is /dev/null otherwise).
    pub fn stdin(mut self, input: &[u8]) -> Cmd {
        self.stdin = Some(input.to_vec());
        self
    }

    /// Runs the command inside the network namespace at `path` (with
    /// `nsenter --net`, which, unlike `ip netns exec`, leaves /sys and its
    /// cgroup mounts alone).
    pub fn in_netns(mut self, path: &Path) -> Cmd {
        self.netns = Some(path.to_path_buf());
        self
    }

    /// Runs the command in `dir` (engines' helpers may write files to
    /// their working directory: conmon writes `oom` there).
    pub fn current_dir(mut self, dir: &Path) -> Cmd {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    pub fn command_line(&self) -> String {
        let mut words: Vec<String> = Vec::new();
        if let Some(ns) = &self.netns {
            words.push(format!("nsenter --net={}", ns.display()));
        }
        words.push(self.program.to_string_lossy().into_owned());
        words.extend(self.args.iter().map(|a| a.to_string_lossy().into_owned()));
        words.join(" ")
    }

    /// The `std::process::Command` this describes (stdio left to the caller).
    pub fn to_command(&self) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                let mut net = OsString::from("--net=");
                net.push(ns);
                c.arg(net).arg("--").arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// Runs to completion; panics if it cannot start or hangs past the guard.
    #[track_caller]
    pub fn run(&self) -> Ran {
        self.try_run().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Cmd::run`], returning problems instead of panicking.
    pub fn try_run(&self) -> Result<Ran, String> {
        self.try_run_within(HANG_GUARD)
    }

    /// Runs to completion, killing the command after `limit`.
    pub fn try_run_within(&self, limit: Duration) -> Result<Ran, String> {
        let command = self.command_line();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        fs::create_dir_all(&self.out_dir)
            .map_err(|e| format!("create {}: {e}", self.out_dir.display()))?;
        let prefix = self.out_dir.join(format!("cmd-{seq}"));
        let stdout_path = prefix.with_extension("out");
        let stderr_path = prefix.with_extension("err");
        let create =
            |path: &Path| File::create(path).map_err(|e| format!("create {}: {e}", path.display()));
        let stdin = match &self.stdin {
            Some(input) => {
                let path = prefix.with_extension("in");
                fs::write(&path, input).map_err(|e| format!("write {}: {e}", path.display()))?;
                Stdio::from(File::open(&path).map_err(|e| format!("open {}: {e}", path.display()))?)
            }
            None => Stdio::null(),
        };
        let mut cmd = self.to_command();
        cmd.stdin(stdin)
            .stdout(create(&stdout_path)?)
            .stderr(create(&stderr_path)?);
        let mut child =
            reaper::spawn_owned(&mut cmd).map_err(|e| format!("cannot run {command}: {e}"))?;
        let started = Instant::now();
        let status = wait_child(&mut child, limit).map_err(|e| {
            format!(
                "{command}: {e}; stderr so far:\n{}",
                fs::read_to_string(&stderr_path).unwrap_or_default()
            )
        })?;
        trace(&format!(
            "{:?} exit {} {command}",
            started.elapsed(),
            exit_code(status)
        ));
        Ok(Ran {
            command,
            code: exit_code(status),
            stdout: fs::read_to_string(&stdout_path).unwrap_or_default(),
            stderr: fs::read_to_string(&stderr_path).unwrap_or_default(),
        })
    }
}

/// Set to `1` to print every engine command with its duration and exit code.
pub const TRACE_ENV: &str = "HUSK_ENGINE_TRACE";

/// Prints `line` on stderr when [`TRACE_ENV`] is `1`.
pub fn trace(line: &str) {
    if std::env::var(TRACE_ENV).is_ok_and(|v| v == "1") {
        eprintln!("[engine] {line}");
    }
}

/// Waits for an owned child (spawned with [`reaper::spawn_owned`]), killing
/// it after `limit`; releases it from the reaper's owned set either way.
pub fn wait_child(child: &mut Child, limit: Duration) -> Result<std::process::ExitStatus, String> {
    let deadline = Instant::now() + limit;
    let result = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("did not finish within {limit:?}"));
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => break Err(format!("wait: {e}")),
        }
    };
    reaper::release(child);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_with_stdin_and_captures_both_streams() {
        let dir = std::env::temp_dir().join(format!("husk-eng-run-{}", std::process::id()));
        let ran = Cmd::new("sh", &dir)
            .args(["-c", "cat; echo err >&2; exit 4"])
            .stdin(b"fed\n")
            .run();
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(ran.code, 4, "{ran}");
        assert_eq!(ran.stdout, "fed\n");
        assert_eq!(ran.stderr, "err\n");
    }
}
