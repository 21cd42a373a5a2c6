//! husk's cgroup manager: one [`CgroupManager`] interface, a v1 driver (also for hybrid
//! hosts) and a v2 driver, chosen by [`detect`].
//!
//! Typical use by `container::create`:
//! ```no_run
//! # fn demo(resources: &oci_spec::runtime::LinuxResources, pid: i32) -> Result<(), husk::cgroups::CgroupError> {
//! use husk::cgroups::{detect, manager, resolve_path};
//! let path = resolve_path(Some("/husk/abc"), "abc", false)?;
//! let cgroup = manager(detect()?, &path)?;
//! cgroup.create()?;            // undo step: cgroup.destroy()
//! cgroup.apply(resources)?;
//! cgroup.add_task(pid)?;
//! # Ok(()) }
//! ```
//!
//! Module map: `path` (cgroupsPath -> [`CgroupPath`], pure), `mountinfo` (where the
//! hierarchies are), `v1`/`v2` (drivers; `*/resources.rs` plan file writes purely,
//! `write_plan` executes them), `devices` + `bpf_program` (device rules, and their eBPF
//! form, pure) + `bpf_attach` (bpf(2)), `stats` (runc-compatible JSON types), `convert`
//! (v1 <-> v2 value conversions, pure), `files` (cgroupfs I/O).

mod bpf_attach;
pub mod bpf_program;
pub mod convert;
pub mod devices;
mod error;
mod files;
pub mod mountinfo;
mod path;
pub mod stats;
pub mod v1;
pub mod v2;
mod write_plan;

#[cfg(test)]
mod root_tests;

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::statfs::{CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC, statfs};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

pub use error::CgroupError;
pub use path::{
    CgroupPath, DEFAULT_PARENT, DEFAULT_SCOPE_PREFIX, DEFAULT_SLICE, expand_slice, resolve_path,
};
pub use stats::Stats;
pub use v1::V1Manager;
pub use v2::{ControllerPolicy, V2Manager};

/// Where cgroup hierarchies are mounted on a normal host.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup layout of the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// Controllers on cgroup v1 hierarchies; includes hybrid hosts, which also have a
    /// controller-less cgroup2 mount at `/sys/fs/cgroup/unified`.
    V1,
    /// The unified hierarchy mounted at `/sys/fs/cgroup`.
    V2,
}

impl Hierarchy {
    pub fn as_str(self) -> &'static str {
        match self {
            Hierarchy::V1 => "v1",
            Hierarchy::V2 => "v2",
        }
    }
}

/// `/sys/fs/cgroup` is cgroup2 -> [`Hierarchy::V2`]; a tmpfs (holding v1 mounts, maybe
/// a hybrid `unified` one) or a v1 cgroup mount -> [`Hierarchy::V1`].
pub fn detect() -> Result<Hierarchy, CgroupError> {
    detect_at(Path::new(CGROUP_ROOT))
}

/// [`detect`] for a cgroup root somewhere else.
pub fn detect_at(root: &Path) -> Result<Hierarchy, CgroupError> {
    let fs = statfs(root).map_err(|source| CgroupError::Statfs {
        path: root.to_path_buf(),
        source,
    })?;
    let fs_type = fs.filesystem_type();
    if fs_type == CGROUP2_SUPER_MAGIC {
        Ok(Hierarchy::V2)
    } else if fs_type == TMPFS_MAGIC || fs_type == CGROUP_SUPER_MAGIC {
        Ok(Hierarchy::V1)
    } else {
        Err(CgroupError::NotMounted {
            path: root.to_path_buf(),
            fs_type: fs_type.0,
        })
    }
}

/// One directory of a container's cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerDir {
    /// The controllers of that hierarchy (`["cpu"]`, `["name=systemd"]`); empty for cgroup2.
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
    pub dir: PathBuf,
}

/// Everything husk does with a container's cgroup. Build one with [`manager`].
pub trait CgroupManager: std::fmt::Debug {
    /// The cgroup path this manager works on.
    fn path(&self) -> &CgroupPath;

    fn hierarchy(&self) -> Hierarchy;

    /// The container's directory in every hierarchy (to mount `/sys/fs/cgroup` inside the
    /// container, to report paths).
    fn dirs(&self) -> Vec<ControllerDir>;

    /// The directory to hand to `clone3(CLONE_INTO_CGROUP)`; `None` when joining it alone
    /// would not place the process in all of the container's cgroups (v1).
    fn clone_into_dir(&self) -> Option<PathBuf>;

    /// Creates the cgroup (all missing parents too). v1: in every mounted hierarchy,
    /// `name=systemd` and the hybrid cgroup2 mount included, and fills an empty cpuset from
    /// its parent. v2: enables controllers in the ancestors per [`ControllerPolicy`].
    /// Idempotent.
    fn create(&self) -> Result<(), CgroupError>;

    /// Moves process `pid` (all its threads) into the cgroup.
    fn add_task(&self, pid: i32) -> Result<(), CgroupError>;

    /// Applies every field of `resources` that is set. A value this host cannot honour
    /// (absent controller, missing file, v1-only field on v2, kernel ignoring it) is an
    /// error naming the file or field and the value. Used by create and by `update`.
    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError>;

    /// Freezes every process of the cgroup and waits until the kernel reports it frozen.
    fn freeze(&self) -> Result<(), CgroupError>;

    fn thaw(&self) -> Result<(), CgroupError>;

    fn is_frozen(&self) -> Result<bool, CgroupError>;

    /// Every process in the cgroup and the cgroups below it, sorted.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;

    /// Sends `signal` to every process. v2 with SIGKILL uses `cgroup.kill`; otherwise the
    /// cgroup is frozen, each process signalled, and thawed. A cgroup that no longer exists
    /// has nothing to kill.
    fn kill_all(&self, signal: i32) -> Result<(), CgroupError>;

    /// Resource usage in the shape of runc's `events --stats` `data` object.
    fn stats(&self) -> Result<Stats, CgroupError>;

    /// How many processes the OOM killer killed in this cgroup.
    fn oom_count(&self) -> Result<u64, CgroupError>;

    /// Removes the cgroup (and any child cgroups) everywhere. Idempotent, also after a
    /// create that stopped half way; retries briefly while the kernel reports it busy.
    /// Processes must be gone first (see [`CgroupManager::kill_all`]).
    fn destroy(&self) -> Result<(), CgroupError>;
}

/// The manager for `path` on a host with layout `hierarchy`, using the hierarchies
/// mounted in this process's mount namespace.
pub fn manager(
    hierarchy: Hierarchy,
    path: &CgroupPath,
) -> Result<Box<dyn CgroupManager>, CgroupError> {
    Ok(match hierarchy {
        Hierarchy::V1 => Box::new(V1Manager::new(path.clone())?),
        Hierarchy::V2 => Box::new(V2Manager::new(path.clone())?),
    })
}

/// A v2 manager on the cgroup2 filesystem mounted at `mount_point` (e.g. the hybrid
/// `/sys/fs/cgroup/unified`), enabling controllers per `policy`.
pub fn v2_manager_at(
    mount_point: &Path,
    path: &CgroupPath,
    policy: ControllerPolicy,
) -> Box<dyn CgroupManager> {
    Box::new(V2Manager::at_mount(mount_point, path.clone()).with_controller_policy(policy))
}

/// The hugepage sizes this kernel supports, as hugetlb file names spell them (`2MB`).
pub fn hugepage_sizes() -> Result<Vec<String>, CgroupError> {
    let dir = Path::new("/sys/kernel/mm/hugepages");
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CgroupError::ListDir {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut sizes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::ListDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name();
        let kb = name
            .to_str()
            .and_then(|n| n.strip_prefix("hugepages-"))
            .and_then(|n| n.strip_suffix("kB"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(kb) = kb {
            sizes.push(convert::hugepage_name_from_kb(kb));
        }
    }
    sizes.sort();
    Ok(sizes)
}

fn parse_signal(signal: i32) -> Result<Signal, CgroupError> {
    Signal::try_from(signal).map_err(|source| CgroupError::InvalidSignal { signal, source })
}

/// Freezes the cgroup, signals every process in it, and thaws it again: frozen, the set
/// of processes cannot change while we signal. A container that was already paused stays
/// paused (the signal is delivered on resume), except for SIGKILL, which needs the
/// processes to run to die on cgroup v1.
fn signal_frozen(cgroup: &dyn CgroupManager, signal: Signal) -> Result<(), CgroupError> {
    let was_frozen = cgroup.is_frozen()?;
    cgroup.freeze()?;
    let mut errors = error::ErrorList::default();
    errors.record(cgroup.pids().and_then(|pids| signal_each(&pids, signal)));
    if !was_frozen || signal == Signal::SIGKILL {
        errors.record(cgroup.thaw());
    }
    errors.finish("kill_all")
}

/// Signals each pid; a pid that already exited is fine.
fn signal_each(pids: &[i32], signal: Signal) -> Result<(), CgroupError> {
    for &pid in pids {
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(source) => {
                return Err(CgroupError::Kill {
                    pid,
                    signal: signal as i32,
                    source,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn detects_this_host_and_rejects_other_filesystems() {
        // This host: /sys/fs/cgroup is a tmpfs with v1 mounts (hybrid).
        let expected = match statfs(Path::new(CGROUP_ROOT)).map(|s| s.filesystem_type()) {
            Ok(t) if t == CGROUP2_SUPER_MAGIC => Hierarchy::V2,
            _ => Hierarchy::V1,
        };
        assert_eq!(detect().unwrap(), expected);
        assert_eq!(
            detect_at(Path::new("/sys/fs/cgroup/unified")).ok(),
            Path::new("/sys/fs/cgroup/unified")
                .exists()
                .then_some(Hierarchy::V2)
        );
        assert!(matches!(
            detect_at(Path::new("/proc")),
            Err(CgroupError::NotMounted { .. })
        ));
    }

    #[test]
    fn signal_numbers_are_validated() {
        assert!(parse_signal(9).is_ok());
        assert!(matches!(
            parse_signal(0),
            Err(CgroupError::InvalidSignal { .. })
        ));
        assert!(matches!(
            parse_signal(1000),
            Err(CgroupError::InvalidSignal { .. })
        ));
    }

    #[test]
    fn lists_hugepage_sizes() {
        let sizes = hugepage_sizes().unwrap();
        if Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
            assert!(sizes.contains(&"2MB".to_string()), "{sizes:?}");
        }
        assert!(
            sizes
                .iter()
                .all(|s| s.ends_with("KB") || s.ends_with("MB") || s.ends_with("GB"))
        );
    }
}
