//! What husk remembers about one container between invocations.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The phase husk recorded last. The status users see is derived from this plus the
/// liveness of the init process (see `container::status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `create` is still running (or died half-way: `delete` cleans up).
    Creating,
    /// Setup finished; init waits on the exec fifo (or has been started since).
    Created,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub bundle: PathBuf,
    /// The host path of the rootfs the container was created from.
    pub rootfs: PathBuf,
    pub phase: Phase,
    /// Init pid in husk's pid namespace; 0 until init exists.
    pub pid: i32,
    /// Start time of init (clock ticks since boot, /proc/PID/stat field 22): guards against pid reuse.
    pub start_time: u64,
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The config.json the container was created from (hooks for start/delete, resources, ...).
    pub config: serde_json::Value,
    /// The cgroup path (as resolved at create), if husk made one.
    #[serde(default)]
    pub cgroup_path: Option<String>,
    #[serde(default)]
    pub systemd_cgroup: bool,
    /// A cgroup2 mount used as a pure v2 host (see `container::CGROUP2_MOUNT_ENV`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup2_mount: Option<PathBuf>,
    /// What the built-in network hook built: the record, not the annotations, drives teardown.
    #[serde(default)]
    pub network: Option<husk_net::NetworkRecord>,
}
