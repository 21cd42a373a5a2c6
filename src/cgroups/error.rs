//! The one error type of the cgroup manager.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while managing a container's cgroups.
///
/// Messages name the operation and the path or value; the cause, when there is
/// one, is the `#[source]` and is not repeated in the message.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("statfs {path}")]
    Statfs {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },

    #[error("no cgroup filesystem is mounted at {path} (found filesystem type {fs_type:#x})")]
    NotMounted { path: PathBuf, fs_type: i64 },

    #[error("read {path}")]
    ReadMountinfo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("parse {path} line {line:?}: {reason}")]
    ParseMountinfo {
        path: PathBuf,
        line: String,
        reason: &'static str,
    },

    #[error("invalid cgroups path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },

    #[error("invalid systemd cgroups path {path:?}: {reason}")]
    InvalidSystemdPath { path: String, reason: String },

    #[error(
        "cgroup controller {controller:?} is not available{where_}; it is needed for {resource}"
    )]
    ControllerMissing {
        controller: String,
        resource: String,
        /// Empty, or " in <path>" for cgroup v2 where controllers are per cgroup.
        where_: String,
    },

    #[error("invalid value {value:?} for {field}: {reason}")]
    InvalidValue {
        field: &'static str,
        value: String,
        reason: String,
    },

    #[error("{field} = {value:?} is not supported on cgroup {hierarchy}: {reason}")]
    Unsupported {
        field: &'static str,
        value: String,
        hierarchy: &'static str,
        reason: &'static str,
    },

    #[error("invalid unified key {key:?}: {reason}")]
    UnifiedKey { key: String, reason: &'static str },

    #[error("invalid device rule {rule:?}: {reason}")]
    DeviceRule { rule: String, reason: String },

    #[error("create cgroup directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("write {value:?} to {path}")]
    WriteFile {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },

    #[error("write {value:?} to {path}: none of the candidate files exist")]
    NoCandidateFile { path: PathBuf, value: String },

    #[error("the kernel did not honour {value:?} written to {path}: it reads back {actual:?}")]
    NotHonoured {
        path: PathBuf,
        value: String,
        actual: String,
    },

    #[error("read {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("parse {path}: unexpected content {content:?}")]
    ParseFile { path: PathBuf, content: String },

    #[error("remove cgroup directory {path}")]
    RemoveDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("list cgroup directory {path}")]
    ListDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{operation} {path}: the cgroup did not reach state {wanted:?} (last seen {seen:?})")]
    FreezeTimeout {
        operation: &'static str,
        path: PathBuf,
        wanted: &'static str,
        seen: String,
    },

    #[error("send signal {signal} to pid {pid}")]
    Kill {
        pid: i32,
        signal: i32,
        #[source]
        source: nix::Error,
    },

    #[error("invalid signal number {signal}")]
    InvalidSignal {
        signal: i32,
        #[source]
        source: nix::Error,
    },

    #[error("open cgroup directory {path}")]
    OpenDir {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },

    #[error("load the device eBPF program ({insns} instructions); verifier log: {log:?}")]
    BpfLoad {
        insns: usize,
        log: String,
        #[source]
        source: io::Error,
    },

    #[error("query device eBPF programs attached to {path}")]
    BpfQuery {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("attach the device eBPF program to {path}")]
    BpfAttach {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("detach old device eBPF program {prog_id} from {path}")]
    BpfDetach {
        path: PathBuf,
        prog_id: u32,
        #[source]
        source: io::Error,
    },

    /// Several independent steps failed (used by best-effort operations such as `destroy`).
    #[error("{operation} failed in {} place(s): {}", .errors.len(), join_errors(.errors))]
    Multiple {
        operation: &'static str,
        errors: Vec<CgroupError>,
    },
}

fn join_errors(errors: &[CgroupError]) -> String {
    errors
        .iter()
        .map(error_chain)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The error and all its causes on one line: `a: b: c`.
pub(crate) fn error_chain(error: &CgroupError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Collects the errors of best-effort steps; `finish` turns them into one result.
#[derive(Default)]
pub(crate) struct ErrorList(Vec<CgroupError>);

impl ErrorList {
    pub(crate) fn record(&mut self, result: Result<(), CgroupError>) {
        if let Err(error) = result {
            self.0.push(error);
        }
    }

    pub(crate) fn finish(mut self, operation: &'static str) -> Result<(), CgroupError> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.remove(0)),
            _ => Err(CgroupError::Multiple {
                operation,
                errors: self.0,
            }),
        }
    }
}
