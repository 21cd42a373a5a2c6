//! The cgroup v1 driver (also used on hybrid hosts, where it joins the cgroup2 mount too).

pub(crate) mod resources;
pub(crate) mod stats;

use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use super::error::{CgroupError, ErrorList};
use super::mountinfo::CgroupMounts;
use super::path::CgroupPath;
use super::stats::Stats;
use super::write_plan::execute;
use super::{
    CgroupManager, ControllerDir, Hierarchy, files, hugepage_sizes, signal_each, signal_frozen,
};
use resources::V1Facts;

/// How long freezing may take before husk gives up (tasks in uninterruptible sleep can
/// delay it); the cgroup is thawed again on timeout.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// Hierarchies whose `cgroup.procs` lists the container's processes, in order of
/// preference for [`CgroupManager::pids`] (the cgroup2 mount is preferred over all).
const PROCS_PREFERENCE: &[&str] = &[
    "pids",
    "freezer",
    "name=systemd",
    "devices",
    "memory",
    "cpu",
];

/// Manages one container's cgroup on a v1 (or hybrid) host: a directory of the same
/// path in every mounted hierarchy, plus the cgroup2 mount if there is one.
#[derive(Clone, Debug)]
pub struct V1Manager {
    path: CgroupPath,
    mounts: CgroupMounts,
}

impl V1Manager {
    /// Uses the hierarchies mounted in this process's mount namespace.
    pub fn new(path: CgroupPath) -> Result<Self, CgroupError> {
        Ok(Self::with_mounts(CgroupMounts::discover()?, path))
    }

    /// Uses the given hierarchies (fixtures, or a caller that already read mountinfo).
    pub fn with_mounts(mounts: CgroupMounts, path: CgroupPath) -> Self {
        Self { path, mounts }
    }

    /// The directory of this cgroup in the hierarchy that has `controller`.
    pub fn controller_dir(&self, controller: &str) -> Option<PathBuf> {
        self.mounts.v1_mount(controller).map(|m| m.dir(&self.path))
    }

    fn require(
        &self,
        controller: &'static str,
        resource: &'static str,
    ) -> Result<PathBuf, CgroupError> {
        self.controller_dir(controller)
            .ok_or_else(|| CgroupError::ControllerMissing {
                controller: controller.to_string(),
                resource: resource.to_string(),
                where_: String::new(),
            })
    }

    /// Every directory of this cgroup: one per v1 hierarchy, then the cgroup2 one.
    fn all_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.mounts.v1.iter().map(|m| m.dir(&self.path)).collect();
        dirs.extend(self.mounts.v2.iter().map(|m| m.dir(&self.path)));
        dirs
    }

    fn procs_dir(&self) -> Option<PathBuf> {
        self.mounts
            .v2
            .as_ref()
            .map(|m| m.dir(&self.path))
            .or_else(|| PROCS_PREFERENCE.iter().find_map(|c| self.controller_dir(c)))
            .or_else(|| self.mounts.v1.first().map(|m| m.dir(&self.path)))
    }

    fn facts(&self, resources: &LinuxResources) -> Result<V1Facts, CgroupError> {
        let mut facts = V1Facts::default();
        let Some(memory) = resources.memory() else {
            return Ok(facts);
        };
        let Some(dir) = self.controller_dir("memory") else {
            return Ok(facts);
        };
        let both = memory.limit().is_some_and(|l| l != 0) && memory.swap().is_some_and(|s| s != 0);
        if both {
            facts.memory_limit = files::read_u64_optional(&dir, "memory.limit_in_bytes")?;
        }
        if memory.check_before_update() == Some(true) {
            facts.memory_usage = files::read_u64_optional(&dir, "memory.usage_in_bytes")?;
        }
        Ok(facts)
    }

    fn freezer_state(dir: &Path) -> Result<String, CgroupError> {
        Ok(files::read(dir, "freezer.state")?.trim().to_string())
    }

    fn set_freezer(
        &self,
        wanted: &'static str,
        operation: &'static str,
    ) -> Result<(), CgroupError> {
        let dir = self.require("freezer", operation)?;
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        let mut delay = Duration::from_millis(1);
        loop {
            // Writing again nudges tasks that were busy when the last attempt ran.
            files::write(&dir, "freezer.state", wanted)?;
            let seen = Self::freezer_state(&dir)?;
            if seen == wanted {
                return Ok(());
            }
            if Instant::now() >= deadline {
                if wanted == "FROZEN" {
                    // Do not leave the container half frozen.
                    let _ = files::write(&dir, "freezer.state", "THAWED");
                }
                return Err(CgroupError::FreezeTimeout {
                    operation,
                    path: dir.join("freezer.state"),
                    wanted,
                    seen,
                });
            }
            sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    /// Gives a new cpuset cgroup (and any empty ancestor) the parent's cpus and mems:
    /// a v1 cpuset with empty `cpuset.cpus`/`cpuset.mems` refuses tasks.
    fn init_cpuset(&self) -> Result<(), CgroupError> {
        let Some(mount) = self.mounts.v1_mount("cpuset") else {
            return Ok(());
        };
        init_cpuset_chain(&mount.mount_point, &mount.dir(&self.path))
    }
}

/// Walks from `root` down to `leaf`, copying `cpuset.cpus`/`cpuset.mems` from each
/// parent into a child where they are empty.
pub(crate) fn init_cpuset_chain(root: &Path, leaf: &Path) -> Result<(), CgroupError> {
    let Ok(relative) = leaf.strip_prefix(root) else {
        return Ok(());
    };
    let mut parent = root.to_path_buf();
    for component in relative.components() {
        let child = parent.join(component);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if files::read(&child, file)?.trim().is_empty() {
                let value = files::read(&parent, file)?;
                files::write(&child, file, value.trim())?;
            }
        }
        parent = child;
    }
    Ok(())
}

impl CgroupManager for V1Manager {
    fn path(&self) -> &CgroupPath {
        &self.path
    }

    fn hierarchy(&self) -> Hierarchy {
        Hierarchy::V1
    }

    fn dirs(&self) -> Vec<ControllerDir> {
        let mut dirs: Vec<ControllerDir> = self
            .mounts
            .v1
            .iter()
            .map(|m| ControllerDir {
                controllers: m.controllers.clone(),
                mount_point: m.mount_point.clone(),
                dir: m.dir(&self.path),
            })
            .collect();
        dirs.extend(self.mounts.v2.iter().map(|m| ControllerDir {
            controllers: Vec::new(),
            mount_point: m.mount_point.clone(),
            dir: m.dir(&self.path),
        }));
        dirs
    }

    fn clone_into_dir(&self) -> Option<PathBuf> {
        None
    }

    fn create(&self) -> Result<(), CgroupError> {
        for dir in self.all_dirs() {
            files::create_dir_all(&dir)?;
        }
        self.init_cpuset()
    }

    fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        // The cpuset must be usable before the task can join it (idempotent).
        self.init_cpuset()?;
        for dir in self.all_dirs() {
            files::write(&dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        let facts = self.facts(resources)?;
        let writes = resources::plan(resources, &facts)?;
        execute(&writes, &|controller, field| {
            self.require(controller, field)
        })
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        self.set_freezer("FROZEN", "freeze")
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.set_freezer("THAWED", "thaw")
    }

    fn is_frozen(&self) -> Result<bool, CgroupError> {
        let dir = self.require("freezer", "is_frozen")?;
        Ok(Self::freezer_state(&dir)? == "FROZEN")
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        match self.procs_dir() {
            Some(dir) => files::read_procs_recursive(&dir),
            None => Ok(Vec::new()),
        }
    }

    fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        let signal = super::parse_signal(signal)?;
        let freezer = self.controller_dir("freezer").filter(|d| d.exists());
        if freezer.is_none() {
            // Without a freezer processes may fork while we signal; two passes catch
            // children forked during the first.
            signal_each(&self.pids()?, signal)?;
            return signal_each(&self.pids()?, signal);
        }
        signal_frozen(self, signal)
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        let mut out = Stats::default();
        let existing = |controller: &str| self.controller_dir(controller).filter(|d| d.exists());
        if let Some(dir) = existing("cpuacct") {
            stats::cpuacct(&dir, &mut out.cpu.usage)?;
        }
        if let Some(dir) = existing("cpu") {
            stats::cpu(&dir, &mut out.cpu.throttling)?;
        }
        if let Some(dir) = existing("cpuset") {
            stats::cpuset(&dir, &mut out.cpuset)?;
        }
        if let Some(dir) = existing("memory") {
            stats::memory(&dir, &mut out)?;
        }
        if let Some(dir) = existing("pids") {
            stats::pids(&dir, &mut out)?;
        }
        if let Some(dir) = existing("blkio") {
            stats::blkio(&dir, &mut out)?;
        }
        if let Some(dir) = existing("hugetlb") {
            stats::hugetlb(&dir, &hugepage_sizes()?, &mut out)?;
        }
        Ok(out)
    }

    fn oom_count(&self) -> Result<u64, CgroupError> {
        stats::oom_kills(&self.require("memory", "oom_count")?)
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        let mut errors = ErrorList::default();
        for dir in self.all_dirs() {
            errors.record(files::remove_tree(&dir));
        }
        errors.finish("destroy")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::cgroups::files::tests::tempdir;
    use crate::cgroups::mountinfo::{V1Mount, V2Mount};
    use std::fs;

    /// A temp dir laid out like a v1 hybrid host, with the container cgroup's files.
    pub(crate) struct Fixture {
        pub root: PathBuf,
        pub manager: V1Manager,
    }

    const FILES: &[(&str, &[&str])] = &[
        (
            "cpu",
            &[
                "cpu.shares",
                "cpu.cfs_period_us",
                "cpu.cfs_quota_us",
                "cpu.cfs_burst_us",
                "cpu.idle",
                "cpu.rt_period_us",
                "cpu.rt_runtime_us",
            ],
        ),
        ("cpuset", &["cpuset.cpus", "cpuset.mems"]),
        (
            "memory",
            &[
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes",
                "memory.soft_limit_in_bytes",
                "memory.kmem.limit_in_bytes",
                "memory.kmem.tcp.limit_in_bytes",
                "memory.swappiness",
                "memory.oom_control",
                "memory.use_hierarchy",
            ],
        ),
        ("devices", &["devices.allow", "devices.deny"]),
        ("pids", &["pids.max"]),
        (
            "blkio",
            &[
                "blkio.bfq.weight",
                "blkio.leaf_weight",
                "blkio.bfq.weight_device",
                "blkio.leaf_weight_device",
                "blkio.throttle.read_bps_device",
                "blkio.throttle.write_bps_device",
                "blkio.throttle.read_iops_device",
                "blkio.throttle.write_iops_device",
            ],
        ),
        ("hugetlb", &["hugetlb.2MB.limit_in_bytes"]),
        ("net_cls", &["net_cls.classid"]),
        ("net_prio", &["net_prio.ifpriomap"]),
        ("rdma", &["rdma.max"]),
    ];

    impl Fixture {
        pub(crate) fn new(tag: &str, controllers: &[&str]) -> Self {
            let root = tempdir(tag);
            let path = CgroupPath::new("/husk-test/c1").unwrap();
            let mut mounts = CgroupMounts::default();
            for (controller, names) in FILES.iter().filter(|(c, _)| controllers.contains(c)) {
                let mount_point = root.join(controller);
                let dir = mount_point.join("husk-test/c1");
                fs::create_dir_all(&dir).unwrap();
                for name in *names {
                    // What the kernel shows in a fresh cgroup, where the code reads it.
                    let initial = if name.ends_with("limit_in_bytes") {
                        "9223372036854771712\n"
                    } else {
                        ""
                    };
                    fs::write(dir.join(name), initial).unwrap();
                }
                mounts.v1.push(V1Mount {
                    controllers: vec![controller.to_string()],
                    mount_point,
                    root: "/".into(),
                });
            }
            mounts.v2 = Some(V2Mount {
                mount_point: root.join("unified"),
                root: "/".into(),
            });
            Self {
                root,
                manager: V1Manager::with_mounts(mounts, path),
            }
        }

        pub(crate) fn read(&self, controller: &str, file: &str) -> String {
            fs::read_to_string(self.root.join(controller).join("husk-test/c1").join(file)).unwrap()
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    #[test]
    fn apply_writes_every_field_to_fixture_files() {
        let all: Vec<&str> = FILES.iter().map(|(c, _)| *c).collect();
        let fx = Fixture::new("v1-apply", &all);
        let resources: LinuxResources = serde_json::from_value(serde_json::json!({
            "devices": [{"allow": false, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}],
            "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                       "kernel": 16777216, "kernelTCP": 8388608, "swappiness": 10,
                       "disableOOMKiller": true, "useHierarchy": true},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000, "idle": 1,
                    "realtimeRuntime": 900, "realtimePeriod": 1000, "cpus": "0-1", "mems": "0"},
            "pids": {"limit": 32},
            "blockIO": {"weight": 500, "leafWeight": 300,
                        "weightDevice": [{"major": 8, "minor": 0, "weight": 600, "leafWeight": 200}],
                        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
                        "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2000}],
                        "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 30}],
                        "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 40}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
            "rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": 1000}}
        }))
        .unwrap();
        fx.manager.apply(&resources).unwrap();
        let expect = [
            ("cpuset", "cpuset.cpus", "0-1"),
            ("cpuset", "cpuset.mems", "0"),
            // Files keep the last write; the full ordered sequence is checked in the plan tests.
            ("devices", "devices.deny", "a *:* rwm"),
            ("devices", "devices.allow", "c 1:3 rwm"),
            ("memory", "memory.limit_in_bytes", "67108864"),
            ("memory", "memory.memsw.limit_in_bytes", "134217728"),
            ("memory", "memory.soft_limit_in_bytes", "33554432"),
            ("memory", "memory.kmem.limit_in_bytes", "16777216"),
            ("memory", "memory.kmem.tcp.limit_in_bytes", "8388608"),
            ("memory", "memory.swappiness", "10"),
            ("memory", "memory.oom_control", "1"),
            ("memory", "memory.use_hierarchy", "1"),
            ("cpu", "cpu.shares", "512"),
            ("cpu", "cpu.cfs_period_us", "100000"),
            ("cpu", "cpu.cfs_quota_us", "50000"),
            ("cpu", "cpu.cfs_burst_us", "1000"),
            ("cpu", "cpu.idle", "1"),
            ("cpu", "cpu.rt_period_us", "1000"),
            ("cpu", "cpu.rt_runtime_us", "900"),
            ("pids", "pids.max", "32"),
            ("blkio", "blkio.bfq.weight", "500"),
            ("blkio", "blkio.leaf_weight", "300"),
            ("blkio", "blkio.bfq.weight_device", "8:0 600"),
            ("blkio", "blkio.leaf_weight_device", "8:0 200"),
            ("blkio", "blkio.throttle.read_bps_device", "8:0 1000"),
            ("blkio", "blkio.throttle.write_bps_device", "8:0 2000"),
            ("blkio", "blkio.throttle.read_iops_device", "8:0 30"),
            ("blkio", "blkio.throttle.write_iops_device", "8:0 40"),
            ("hugetlb", "hugetlb.2MB.limit_in_bytes", "4194304"),
            ("net_cls", "net_cls.classid", "1048577"),
            ("net_prio", "net_prio.ifpriomap", "eth0 5"),
            ("rdma", "rdma.max", "mlx5_0 hca_handle=3 hca_object=1000"),
        ];
        for (controller, file, value) in expect {
            assert_eq!(fx.read(controller, file), value, "{controller}/{file}");
        }
    }

    #[test]
    fn absent_controller_is_a_clear_error_and_nothing_is_written() {
        let fx = Fixture::new("v1-absent", &["memory", "cpu"]);
        let resources: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 1048576},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]
        }))
        .unwrap();
        let err = fx.manager.apply(&resources).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("\"hugetlb\"") && text.contains("hugepageLimits"),
            "{text}"
        );
        assert_eq!(
            fx.read("memory", "memory.limit_in_bytes"),
            "9223372036854771712\n"
        );
    }

    #[test]
    fn missing_file_names_file_and_value() {
        let fx = Fixture::new("v1-missing-file", &["blkio"]);
        let resources: LinuxResources = serde_json::from_value(serde_json::json!({
            "blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}]}
        }))
        .unwrap();
        fs::remove_file(
            fx.root
                .join("blkio/husk-test/c1/blkio.throttle.read_bps_device"),
        )
        .unwrap();
        let text = fx.manager.apply(&resources).unwrap_err().to_string();
        assert!(
            text.contains("blkio.throttle.read_bps_device") && text.contains("8:0 1000"),
            "{text}"
        );
    }

    #[test]
    fn cpuset_chain_copies_parent_values_into_empty_children() {
        let root = tempdir("v1-cpuset");
        fs::write(root.join("cpuset.cpus"), "0-1\n").unwrap();
        fs::write(root.join("cpuset.mems"), "0\n").unwrap();
        let leaf = root.join("a/b");
        fs::create_dir_all(&leaf).unwrap();
        for dir in [root.join("a"), leaf.clone()] {
            fs::write(dir.join("cpuset.cpus"), "").unwrap();
            fs::write(dir.join("cpuset.mems"), "\n").unwrap();
        }
        fs::write(root.join("a/cpuset.cpus"), "1\n").unwrap();
        init_cpuset_chain(&root, &leaf).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("a/cpuset.cpus")).unwrap(),
            "1\n"
        );
        assert_eq!(fs::read_to_string(root.join("a/cpuset.mems")).unwrap(), "0");
        assert_eq!(fs::read_to_string(leaf.join("cpuset.cpus")).unwrap(), "1");
        assert_eq!(fs::read_to_string(leaf.join("cpuset.mems")).unwrap(), "0");
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn dirs_cover_every_hierarchy_and_the_unified_mount() {
        let fx = Fixture::new("v1-dirs", &["cpu", "memory"]);
        let dirs = fx.manager.dirs();
        assert_eq!(dirs.len(), 3);
        assert_eq!(dirs[2].controllers, Vec::<String>::new());
        assert_eq!(dirs[2].dir, fx.root.join("unified/husk-test/c1"));
        assert!(fx.manager.clone_into_dir().is_none());
    }
}
