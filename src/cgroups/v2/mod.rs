//! The cgroup v2 driver. It works on any cgroup2 mount, including the controller-less
//! one a hybrid host has at `/sys/fs/cgroup/unified`.

pub(crate) mod resources;
pub(crate) mod stats;

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use super::bpf_program;
use super::devices::parse_rules;
use super::error::CgroupError;
use super::mountinfo::{CgroupMounts, V2Mount};
use super::path::CgroupPath;
use super::stats::Stats;
use super::write_plan::execute;
use super::{
    CgroupManager, ControllerDir, Hierarchy, bpf_attach, files, hugepage_sizes, signal_frozen,
};
use resources::V2Facts;

const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which controllers [`CgroupManager::create`] enables on the way down to the cgroup
/// (by writing `+name` into each ancestor's `cgroup.subtree_control`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControllerPolicy {
    /// Every controller the parent offers (what runc and crun do).
    All,
    /// Only these (and only where offered). `Only(vec![])` changes no ancestor, which is
    /// what tests on a shared host want.
    Only(Vec<String>),
}

/// Manages one container's cgroup on a cgroup2 mount.
#[derive(Clone, Debug)]
pub struct V2Manager {
    mount: V2Mount,
    path: CgroupPath,
    policy: ControllerPolicy,
}

impl V2Manager {
    /// Uses the cgroup2 mount found in `/proc/self/mountinfo`.
    pub fn new(path: CgroupPath) -> Result<Self, CgroupError> {
        let mounts = CgroupMounts::discover()?;
        let mount = mounts.v2.ok_or_else(|| CgroupError::NotMounted {
            path: PathBuf::from(super::CGROUP_ROOT),
            fs_type: 0,
        })?;
        Ok(Self {
            mount,
            path,
            policy: ControllerPolicy::All,
        })
    }

    /// Uses the cgroup2 filesystem mounted at `mount_point` (e.g. `/sys/fs/cgroup/unified`
    /// on a hybrid host, or a fixture directory).
    pub fn at_mount(mount_point: impl Into<PathBuf>, path: CgroupPath) -> Self {
        Self {
            mount: V2Mount {
                mount_point: mount_point.into(),
                root: "/".to_string(),
            },
            path,
            policy: ControllerPolicy::All,
        }
    }

    pub fn with_controller_policy(mut self, policy: ControllerPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> PathBuf {
        self.mount.dir(&self.path)
    }

    /// Ids of the device programs attached directly to the cgroup.
    pub fn device_program_ids(&self) -> Result<Vec<u32>, CgroupError> {
        Ok(bpf_attach::query(&self.dir())?.ids)
    }

    fn wanted(&self, controller: &str) -> bool {
        match &self.policy {
            ControllerPolicy::All => true,
            ControllerPolicy::Only(list) => list.iter().any(|c| c == controller),
        }
    }

    /// Turns on the wanted controllers in `parent` for its children. A controller the
    /// kernel refuses (e.g. a parent with processes of its own) is skipped: `apply` then
    /// reports exactly which controller is missing when a limit needs it.
    fn enable_controllers(&self, parent: &Path) -> Result<(), CgroupError> {
        let offered = files::read(parent, "cgroup.controllers")?;
        let enabled = files::read(parent, "cgroup.subtree_control")?;
        let enabled: Vec<&str> = enabled.split_whitespace().collect();
        for controller in offered.split_whitespace() {
            if self.wanted(controller) && !enabled.contains(&controller) {
                let _ = files::write(parent, "cgroup.subtree_control", &format!("+{controller}"));
            }
        }
        Ok(())
    }

    fn facts(&self, resources: &LinuxResources) -> Result<V2Facts, CgroupError> {
        let mut facts = V2Facts::default();
        let dir = self.dir();
        if let Some(cpu) = resources.cpu()
            && cpu.period().is_some_and(|p| p != 0)
            && cpu.quota().is_none_or(|q| q == 0)
            && let Some(text) = files::read_optional(&dir, "cpu.max")?
        {
            facts.cpu_max_quota = text.split_whitespace().next().map(str::to_string);
        }
        if resources
            .memory()
            .is_some_and(|m| m.check_before_update() == Some(true))
        {
            facts.memory_usage = files::read_u64_optional(&dir, "memory.current")?;
        }
        Ok(facts)
    }

    fn frozen_state(dir: &Path) -> Result<Option<bool>, CgroupError> {
        let events = files::read_flat_keyed(dir, "cgroup.events")?;
        Ok(events.get("frozen").map(|f| *f == 1))
    }

    fn set_frozen(&self, frozen: bool, operation: &'static str) -> Result<(), CgroupError> {
        let dir = self.dir();
        let value = if frozen { "1" } else { "0" };
        files::write(&dir, "cgroup.freeze", value)?;
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        let mut delay = Duration::from_millis(1);
        loop {
            let seen = Self::frozen_state(&dir)?;
            if seen == Some(frozen) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                if frozen {
                    let _ = files::write(&dir, "cgroup.freeze", "0");
                }
                return Err(CgroupError::FreezeTimeout {
                    operation,
                    path: dir.join("cgroup.events"),
                    wanted: if frozen { "frozen 1" } else { "frozen 0" },
                    seen: seen.map_or("no frozen key".to_string(), |f| {
                        format!("frozen {}", u8::from(f))
                    }),
                });
            }
            sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }
}

impl CgroupManager for V2Manager {
    fn path(&self) -> &CgroupPath {
        &self.path
    }

    fn hierarchy(&self) -> Hierarchy {
        Hierarchy::V2
    }

    fn dirs(&self) -> Vec<ControllerDir> {
        vec![ControllerDir {
            controllers: Vec::new(),
            mount_point: self.mount.mount_point.clone(),
            dir: self.dir(),
        }]
    }

    fn clone_into_dir(&self) -> Option<PathBuf> {
        Some(self.dir())
    }

    fn create(&self) -> Result<(), CgroupError> {
        let leaf = self.dir();
        let Ok(relative) = leaf.strip_prefix(&self.mount.mount_point) else {
            return files::create_dir_all(&leaf);
        };
        let mut parent = self.mount.mount_point.clone();
        for component in relative.components() {
            self.enable_controllers(&parent)?;
            parent.push(component);
            match std::fs::create_dir(&parent) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(CgroupError::CreateDir {
                        path: parent,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        files::write(&self.dir(), "cgroup.procs", &pid.to_string())
    }

    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        // Validate and compile everything before the first write.
        let program =
            match resources.devices() {
                Some(rules) => Some(bpf_program::compile(&parse_rules(rules)?).map_err(
                    |reason| CgroupError::DeviceRule {
                        rule: format!("{} rules", rules.len()),
                        reason,
                    },
                )?),
                None => None,
            };
        let facts = self.facts(resources)?;
        let writes = resources::plan(resources, &facts)?;
        let dir = self.dir();
        let available: OnceCell<Result<Vec<String>, String>> = OnceCell::new();
        let dir_for =
            |controller: &'static str, field: &'static str| -> Result<PathBuf, CgroupError> {
                if controller.is_empty() {
                    return Ok(dir.clone());
                }
                let list = available.get_or_init(|| {
                    files::read(&dir, "cgroup.controllers")
                        .map(|text| text.split_whitespace().map(str::to_string).collect())
                        .map_err(|e| super::error::error_chain(&e))
                });
                let present = match list {
                    Ok(list) => list.iter().any(|c| c == controller),
                    Err(_) => false,
                };
                if present {
                    Ok(dir.clone())
                } else {
                    Err(CgroupError::ControllerMissing {
                        controller: controller.to_string(),
                        resource: field.to_string(),
                        where_: format!(" in {}", dir.join("cgroup.controllers").display()),
                    })
                }
            };
        execute(&writes, &dir_for)?;
        if let Some(program) = program {
            let prog = bpf_attach::load(&program)?;
            bpf_attach::attach_replacing(&dir, &prog)?;
        }
        Ok(())
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        self.set_frozen(true, "freeze")
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false, "thaw")
    }

    /// The state asked for (cgroup.freeze), not the effective one in cgroup.events: a fatal
    /// signal briefly wakes a frozen task, and a paused container stays paused meanwhile.
    fn is_frozen(&self) -> Result<bool, CgroupError> {
        let dir = self.dir();
        if !files::exists(&dir, "cgroup.freeze") {
            return Self::frozen_state(&dir)?
                .ok_or_else(|| files::parse_error(&dir, "cgroup.events", "no frozen key"));
        }
        Ok(files::read(&dir, "cgroup.freeze")?.trim() == "1")
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        files::read_procs_recursive(&self.dir())
    }

    fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        let signal = super::parse_signal(signal)?;
        let dir = self.dir();
        if !dir.exists() {
            return Ok(());
        }
        // cgroup.kill (Linux 5.14) kills the whole subtree atomically, forks included.
        if signal == nix::sys::signal::Signal::SIGKILL && files::exists(&dir, "cgroup.kill") {
            return files::write(&dir, "cgroup.kill", "1");
        }
        signal_frozen(self, signal)
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        stats::read_all(&self.dir(), &hugepage_sizes()?)
    }

    fn oom_count(&self) -> Result<u64, CgroupError> {
        stats::oom_kills(&self.dir())
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        files::remove_tree(&self.dir())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::cgroups::files::tests::tempdir;
    use std::fs;

    struct Fixture {
        root: PathBuf,
        manager: V2Manager,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    const LEAF_FILES: &[&str] = &[
        "cgroup.procs",
        "cgroup.freeze",
        "cgroup.events",
        "cpuset.cpus",
        "cpuset.mems",
        "memory.max",
        "memory.swap.max",
        "memory.low",
        "memory.high",
        "cpu.weight",
        "cpu.max",
        "cpu.max.burst",
        "cpu.idle",
        "pids.max",
        "io.weight",
        "io.max",
        "hugetlb.2MB.max",
        "rdma.max",
    ];

    fn fixture(tag: &str, controllers: &str) -> Fixture {
        let root = tempdir(tag);
        let leaf = root.join("husk-test/c1");
        fs::create_dir_all(&leaf).unwrap();
        for dir in [root.clone(), root.join("husk-test")] {
            fs::write(dir.join("cgroup.controllers"), controllers).unwrap();
            fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
        }
        fs::write(leaf.join("cgroup.controllers"), controllers).unwrap();
        for file in LEAF_FILES {
            fs::write(leaf.join(file), "").unwrap();
        }
        let manager = V2Manager::at_mount(&root, CgroupPath::new("/husk-test/c1").unwrap());
        Fixture { root, manager }
    }

    fn read(fx: &Fixture, file: &str) -> String {
        fs::read_to_string(fx.manager.dir().join(file)).unwrap()
    }

    #[test]
    fn apply_writes_every_field_to_fixture_files() {
        let fx = fixture("v2-apply", "cpuset cpu io memory hugetlb pids rdma misc\n");
        let resources: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728},
            "cpu": {"shares": 2048, "quota": 50000, "period": 100000, "burst": 1000, "idle": 1,
                    "cpus": "0-1", "mems": "0"},
            "pids": {"limit": 32},
            "blockIO": {"weight": 1000,
                        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": 1000}},
            "unified": {"memory.high": "60000000"}
        }))
        .unwrap();
        fx.manager.apply(&resources).unwrap();
        for (file, value) in [
            ("cpuset.cpus", "0-1"),
            ("cpuset.mems", "0"),
            ("memory.max", "67108864"),
            ("memory.swap.max", "67108864"),
            ("memory.low", "33554432"),
            ("memory.high", "60000000"),
            ("cpu.weight", "174"),
            ("cpu.max", "50000 100000"),
            ("cpu.max.burst", "1000"),
            ("cpu.idle", "1"),
            ("pids.max", "32"),
            // No io.bfq.weight in the fixture: the converted io.weight is used.
            ("io.weight", "default 10000"),
            ("io.max", "8:0 rbps=1000"),
            ("hugetlb.2MB.max", "4194304"),
            ("rdma.max", "mlx5_0 hca_handle=3 hca_object=1000"),
        ] {
            assert_eq!(read(&fx, file), value, "{file}");
        }
    }

    #[test]
    fn period_alone_keeps_the_current_quota() {
        let fx = fixture("v2-period", "cpu\n");
        fs::write(fx.manager.dir().join("cpu.max"), "25000 100000\n").unwrap();
        let resources: LinuxResources =
            serde_json::from_value(serde_json::json!({"cpu": {"period": 50000}})).unwrap();
        fx.manager.apply(&resources).unwrap();
        assert_eq!(read(&fx, "cpu.max"), "25000 50000");
    }

    #[test]
    fn controller_not_enabled_is_named_and_nothing_written() {
        let fx = fixture("v2-missing", "cpu pids\n");
        let resources: LinuxResources = serde_json::from_value(serde_json::json!({
            "pids": {"limit": 5}, "memory": {"limit": 1048576}
        }))
        .unwrap();
        let text = fx.manager.apply(&resources).unwrap_err().to_string();
        assert!(
            text.contains("\"memory\"")
                && text.contains("cgroup.controllers")
                && text.contains("memory.limit"),
            "{text}"
        );
        assert_eq!(read(&fx, "pids.max"), "");
        // A unified key for a missing controller is refused the same way.
        let resources: LinuxResources =
            serde_json::from_value(serde_json::json!({"unified": {"io.max": "8:0 rbps=1"}}))
                .unwrap();
        assert!(matches!(
            fx.manager.apply(&resources),
            Err(CgroupError::ControllerMissing { .. })
        ));
    }

    #[test]
    fn create_enables_controllers_per_policy() {
        let fx = fixture("v2-create", "cpu memory pids\n");
        fs::remove_dir_all(fx.root.join("husk-test")).unwrap();
        // A regular directory has no cgroup.controllers, so pre-create the middle level
        // as the kernel would show it.
        fs::create_dir(fx.root.join("husk-test")).unwrap();
        fs::write(fx.root.join("husk-test/cgroup.controllers"), "cpu memory\n").unwrap();
        fs::write(fx.root.join("husk-test/cgroup.subtree_control"), "").unwrap();
        let manager = fx
            .manager
            .clone()
            .with_controller_policy(ControllerPolicy::Only(vec!["memory".into(), "io".into()]));
        manager.create().unwrap();
        assert!(manager.dir().is_dir());
        assert_eq!(
            fs::read_to_string(fx.root.join("cgroup.subtree_control")).unwrap(),
            "+memory"
        );
        assert_eq!(
            fs::read_to_string(fx.root.join("husk-test/cgroup.subtree_control")).unwrap(),
            "+memory"
        );
        let none = fx
            .manager
            .clone()
            .with_controller_policy(ControllerPolicy::Only(vec![]));
        fs::write(fx.root.join("cgroup.subtree_control"), "").unwrap();
        none.create().unwrap();
        assert_eq!(
            fs::read_to_string(fx.root.join("cgroup.subtree_control")).unwrap(),
            ""
        );
    }

    #[test]
    fn dirs_and_clone_target() {
        let fx = fixture("v2-dirs", "");
        assert_eq!(
            fx.manager.clone_into_dir().unwrap(),
            fx.root.join("husk-test/c1")
        );
        assert_eq!(fx.manager.dirs()[0].mount_point, fx.root);
    }
}
