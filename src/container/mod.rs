//! Lifecycle use cases: one file per operation, sharing the container's loaded record.

mod create;
mod delete;
mod exec;
mod kill;
mod resources;
mod start;
pub mod status;

use std::path::PathBuf;

pub use create::{CreateRequest, create};
pub use delete::delete;
pub use exec::{ExecRequest, Execed, exec};
pub use kill::kill;
pub use resources::{merge, pause, pids, resume, stats, update};
pub use start::start;
pub use status::Status;

use crate::cgroups::{self, CgroupError, CgroupManager};
use crate::linux::procfs;
use crate::state::{ContainerRecord, StateError, Store};

pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Spawn(#[from] crate::process::spawn::SpawnError),
    #[error(transparent)]
    Channel(#[from] crate::process::channel::ChannelError),
    #[error(transparent)]
    Namespace(#[from] crate::linux::namespaces::NamespaceError),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error(transparent)]
    Network(#[from] husk_net::NetError),
    #[error(transparent)]
    Signal(#[from] crate::linux::signals::SignalError),
    #[error("container init failed: {0}")]
    InitFailed(String),
    #[error("container init exited before it was ready")]
    InitVanished,
    #[error("container init was OOM-killed (memory limit too low?)")]
    InitOomKilled,
    #[error("cannot exec in a stopped container")]
    ExecStopped,
    #[error("cannot exec in a paused container (use --ignore-paused to override)")]
    ExecPaused,
    #[error("exec failed: {0}")]
    ExecFailed(String),
    #[error("container not running")]
    NotRunning,
    #[error("container not paused")]
    NotPaused,
    #[error("cannot start a container that has stopped")]
    StartStopped,
    #[error("cannot start an already running container")]
    StartRunning,
    #[error("cannot start a container in the {0} state")]
    StartState(&'static str),
    #[error("cannot delete container {id} that is not stopped: {status}")]
    DeleteNotStopped { id: String, status: &'static str },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}")]
    Sys {
        op: String,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("delete {id}: {errors}")]
    Teardown { id: String, errors: String },
}

/// A container as found in the store, with its status as of now.
pub struct Container {
    pub record: ContainerRecord,
    pub dir: PathBuf,
    pub status: Status,
}

impl Container {
    pub fn load(store: &Store, id: &str) -> Result<Self, ContainerError> {
        let record = store.load(id)?;
        let dir = store.dir(id);
        let status = observe(&record, &dir);
        Ok(Self {
            record,
            dir,
            status,
        })
    }

    pub fn init_alive(&self) -> bool {
        procfs::is_same_live_process(self.record.pid, self.record.start_time)
    }

    /// The hooks of one kind (`poststart`, `poststop`) from the config recorded at create.
    pub fn hooks(&self, kind: &str) -> Vec<oci_spec::runtime::Hook> {
        self.record
            .config
            .get("hooks")
            .and_then(|h| h.get(kind))
            .and_then(|v| <Vec<oci_spec::runtime::Hook> as serde::Deserialize>::deserialize(v).ok())
            .unwrap_or_default()
    }

    /// The OCI state document (plus runc's `created` and `owner`).
    pub fn oci_state(&self) -> serde_json::Value {
        oci_state(&self.record, self.status)
    }
}

pub fn oci_state(record: &ContainerRecord, status: Status) -> serde_json::Value {
    let pid = if matches!(status, Status::Stopped) {
        0
    } else {
        record.pid
    };
    serde_json::json!({
        "ociVersion": "1.2.1",
        "id": record.id,
        "pid": pid,
        "status": status.as_str(),
        "bundle": record.bundle,
        "rootfs": record.rootfs,
        "created": record.created,
        "owner": record.owner,
        "annotations": record.annotations,
    })
}

fn observe(record: &ContainerRecord, dir: &std::path::Path) -> Status {
    let init_alive = procfs::is_same_live_process(record.pid, record.start_time);
    let fifo_present = dir.join(EXEC_FIFO).exists();
    let frozen = init_alive
        && cgroup_manager(record)
            .ok()
            .and_then(|m| m.is_frozen().ok())
            .unwrap_or(false);
    status::derive(
        record.phase,
        status::Observed {
            init_alive,
            fifo_present,
            frozen,
            init_started: record.pid > 0,
        },
    )
}

/// Kills a child that husk forked and reaps it (a setup step failed).
fn kill_and_reap(pid: nix::unistd::Pid) {
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
}

/// Connects to the engine's console socket, which will receive the pty master.
fn connect_console(path: &std::path::Path) -> Result<std::os::fd::OwnedFd, ContainerError> {
    std::os::unix::net::UnixStream::connect(path)
        .map(std::os::fd::OwnedFd::from)
        .map_err(|source| ContainerError::Io {
            op: "connect console socket",
            path: path.to_owned(),
            source,
        })
}

/// The cgroup manager for a container, from what was recorded at create.
pub fn cgroup_manager(record: &ContainerRecord) -> Result<Box<dyn CgroupManager>, CgroupError> {
    manager_for(
        record.cgroup_path.as_deref(),
        &record.id,
        record.systemd_cgroup,
        record.cgroup2_mount.as_deref(),
    )
}

/// Names a cgroup2 mount to use as a pure v2 host, whatever the host is. For testing the v2
/// driver on v1/hybrid hosts (their /sys/fs/cgroup/unified); recorded at create, so later
/// commands on the container use the same driver without it.
pub const CGROUP2_MOUNT_ENV: &str = "HUSK_CGROUP2_MOUNT";

pub fn manager_for(
    path: Option<&str>,
    id: &str,
    systemd: bool,
    cgroup2_mount: Option<&std::path::Path>,
) -> Result<Box<dyn CgroupManager>, CgroupError> {
    let path = cgroups::resolve_path(path, id, systemd)?;
    if let Some(mount) = cgroup2_mount {
        // Controllers there belong to the host (or to v1): turn none on.
        return Ok(cgroups::v2_manager_at(
            mount,
            &path,
            cgroups::ControllerPolicy::Only(Vec::new()),
        ));
    }
    cgroups::manager(cgroups::detect()?, &path)
}
