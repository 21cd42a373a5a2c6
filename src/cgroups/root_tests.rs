//! Root tier: tests against the real cgroup hierarchies of this host.
//!
//! Requires: root; for the `v1_*` tests a v1/hybrid host with the controllers each test
//! names; for the `v2_unified_*` tests a cgroup2 mount (on this hybrid host
//! `/sys/fs/cgroup/unified`, which has no controllers: those tests use only core files
//! and the device eBPF program). A test whose requirement is missing says "skipped" on
//! stderr and returns.
//!
//! Every cgroup is named `/husk-test-<pid>-<n>-<tag>` and removed by [`Guard`] even when
//! the test fails: it thaws, kills the children it spawned and everything else in the
//! cgroup, reaps, then destroys (a destroy failure fails the test).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use std::os::unix::process::ExitStatusExt;

use super::mountinfo::CgroupMounts;
use super::{
    CgroupError, CgroupManager, CgroupPath, ControllerPolicy, Hierarchy, V1Manager, V2Manager,
    detect,
};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique_path(tag: &str) -> CgroupPath {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    CgroupPath::new(&format!("/husk-test-{}-{n}-{tag}", std::process::id())).unwrap()
}

fn skip(test: &str, why: &str) {
    eprintln!("{test}: skipped: {why}");
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The v1 mounts, if this is a root run on a v1/hybrid host with `controllers` mounted.
fn v1_host(test: &str, controllers: &[&str]) -> Option<CgroupMounts> {
    if !is_root() {
        skip(test, "needs root");
        return None;
    }
    if detect().ok() != Some(Hierarchy::V1) {
        skip(test, "needs a cgroup v1 (or hybrid) host");
        return None;
    }
    let mounts = CgroupMounts::discover().unwrap();
    if let Some(missing) = controllers.iter().find(|c| mounts.v1_mount(c).is_none()) {
        skip(test, &format!("needs the v1 {missing} controller mounted"));
        return None;
    }
    Some(mounts)
}

/// The cgroup2 mount point, if this is a root run and one exists.
fn v2_mount(test: &str) -> Option<PathBuf> {
    if !is_root() {
        skip(test, "needs root");
        return None;
    }
    let mounts = CgroupMounts::discover().unwrap();
    match mounts.v2 {
        Some(m) => Some(m.mount_point),
        None => {
            skip(test, "needs a cgroup2 mount");
            None
        }
    }
}

/// A `sh -c` child whose stdin and stdout the test drives: scripts start with `read _`
/// so the test can move the child into a cgroup before it does anything.
struct Script {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Script {
    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// Lets the script pass its next `read _`.
    fn go(&mut self) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// The next line the script prints, or `None` once it exited.
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line).unwrap() {
            0 => None,
            _ => Some(line.trim_end().to_string()),
        }
    }

    fn wait(&mut self) -> ExitStatus {
        self.stdin.take();
        self.child.wait().unwrap()
    }
}

/// Owns a test cgroup and the children put in it; cleans both up on drop.
struct Guard {
    cgroup: Box<dyn CgroupManager>,
    scripts: Vec<Script>,
}

impl Guard {
    fn new(cgroup: Box<dyn CgroupManager>) -> Self {
        Self {
            cgroup,
            scripts: Vec::new(),
        }
    }

    /// Starts `sh -c script` (not yet in the cgroup) and returns its index.
    fn spawn(&mut self, script: &str) -> usize {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        self.scripts.push(Script {
            child,
            stdin,
            stdout,
        });
        self.scripts.len() - 1
    }

    /// Spawns `script` and moves it into the cgroup.
    fn spawn_inside(&mut self, script: &str) -> usize {
        let i = self.spawn(script);
        let pid = self.scripts[i].pid();
        self.cgroup.add_task(pid).unwrap();
        i
    }

    fn s(&mut self, i: usize) -> &mut Script {
        &mut self.scripts[i]
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // A frozen v1 task cannot die, so thaw first; errors (e.g. no freezer) are fine.
        let _ = self.cgroup.thaw();
        for script in &mut self.scripts {
            let _ = kill(Pid::from_raw(script.pid()), Signal::SIGKILL);
        }
        let _ = self.cgroup.kill_all(Signal::SIGKILL as i32);
        for script in &mut self.scripts {
            script.stdin.take();
            let _ = script.child.wait();
        }
        if let Err(e) = self.cgroup.destroy() {
            let text = super::error::error_chain(&e);
            if std::thread::panicking() {
                eprintln!("cleanup: {text}");
            } else {
                panic!("cleanup: {text}");
            }
        }
    }
}

fn resources(json: serde_json::Value) -> LinuxResources {
    serde_json::from_value(json).unwrap()
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

fn proc_state(pid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The state follows the parenthesised command name.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.chars().next().unwrap()
}

/// Polls `check` until it is true or 10 s pass (a bound on waiting, not a timing assertion).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        sleep(Duration::from_millis(10));
    }
}

/// `major:minor` of some block device of this host.
fn some_block_device() -> Option<String> {
    let mut names: Vec<_> = std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    names
        .iter()
        .find_map(|p| std::fs::read_to_string(p.join("dev")).ok())
        .map(|s| s.trim().to_string())
}

const OPEN_DEV_NULL: &str = "if (: </dev/null) 2>&-; then echo open; else echo denied; fi";

// ---------------------------------------------------------------- v1 (real hierarchies)

#[test]
fn v1_create_join_apply_and_read_back() {
    let test = "v1_create_join_apply_and_read_back";
    let Some(mounts) = v1_host(
        test,
        &["memory", "cpu", "cpuset", "pids", "blkio", "devices"],
    ) else {
        return;
    };
    let path = unique_path("apply");
    let manager = V1Manager::with_mounts(mounts.clone(), path.clone());
    let mut guard = Guard::new(Box::new(manager.clone()));
    guard.cgroup.create().unwrap();
    for dir in guard.cgroup.dirs() {
        assert!(dir.dir.is_dir(), "{}", dir.dir.display());
    }
    // The cpuset got its parent's cpus and mems, so tasks can join.
    let cpuset = manager.controller_dir("cpuset").unwrap();
    let root_cpuset = &mounts.v1_mount("cpuset").unwrap().mount_point;
    assert_eq!(
        read(&cpuset, "cpuset.cpus"),
        read(root_cpuset, "cpuset.cpus")
    );
    assert_eq!(
        read(&cpuset, "cpuset.mems"),
        read(root_cpuset, "cpuset.mems")
    );

    let i = guard.spawn_inside("read _; echo hi");
    let pid = guard.s(i).pid();
    assert_eq!(guard.cgroup.pids().unwrap(), [pid]);
    let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in membership.lines() {
        // A v1 hierarchy that was mounted once and unmounted lives on in /proc/PID/cgroup
        // (e.g. hugetlb after someone mounted it for crun): only mounted ones are ours.
        let controllers = line.split(':').nth(1).unwrap_or_default();
        let mounted = controllers.is_empty()
            || controllers.split(',').all(|c| {
                mounts.v1_mount(c.trim_start_matches("name=")).is_some()
                    || mounts.v1_mount(c).is_some()
            });
        if !mounted {
            continue;
        }
        let cgroup = line.rsplit(':').next().unwrap();
        assert_eq!(cgroup, path.as_str(), "{line}");
    }

    let device = some_block_device().unwrap();
    let r = resources(serde_json::json!({
        "devices": [{"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}],
        "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                   "kernelTCP": 8388608, "swappiness": 10, "disableOOMKiller": true,
                   "useHierarchy": true},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000,
                "realtimePeriod": 1000000, "realtimeRuntime": 10000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 50},
        "blockIO": {"weight": 500,
                    "throttleReadBpsDevice": [{"major": device.split(':').next().unwrap().parse::<i64>().unwrap(),
                                               "minor": device.split(':').nth(1).unwrap().parse::<i64>().unwrap(),
                                               "rate": 1048576}]}
    }));
    guard.cgroup.apply(&r).unwrap();
    let dir = |c: &str| manager.controller_dir(c).unwrap();
    assert_eq!(read(&dir("memory"), "memory.limit_in_bytes"), "67108864");
    assert_eq!(
        read(&dir("memory"), "memory.memsw.limit_in_bytes"),
        "134217728"
    );
    assert_eq!(
        read(&dir("memory"), "memory.soft_limit_in_bytes"),
        "33554432"
    );
    assert_eq!(
        read(&dir("memory"), "memory.kmem.tcp.limit_in_bytes"),
        "8388608"
    );
    assert_eq!(read(&dir("memory"), "memory.swappiness"), "10");
    assert!(read(&dir("memory"), "memory.oom_control").contains("oom_kill_disable 1"));
    assert_eq!(read(&dir("memory"), "memory.use_hierarchy"), "1");
    assert_eq!(read(&dir("cpu"), "cpu.shares"), "512");
    assert_eq!(read(&dir("cpu"), "cpu.cfs_period_us"), "100000");
    assert_eq!(read(&dir("cpu"), "cpu.cfs_quota_us"), "50000");
    assert_eq!(read(&dir("cpu"), "cpu.cfs_burst_us"), "1000");
    assert_eq!(read(&dir("cpu"), "cpu.rt_period_us"), "1000000");
    assert_eq!(read(&dir("cpu"), "cpu.rt_runtime_us"), "10000");
    assert_eq!(read(&dir("cpuset"), "cpuset.cpus"), "0");
    assert_eq!(read(&dir("cpuset"), "cpuset.mems"), "0");
    assert_eq!(read(&dir("pids"), "pids.max"), "50");
    assert!(read(&dir("blkio"), "blkio.bfq.weight").ends_with("500"));
    assert_eq!(
        read(&dir("blkio"), "blkio.throttle.read_bps_device"),
        format!("{device} 1048576")
    );
    assert_eq!(read(&dir("devices"), "devices.list"), "c 1:3 rwm\nc 1:5 r");

    // Lowering memory below memory+swap and raising it again both work (write order).
    guard
        .cgroup
        .apply(&resources(
            serde_json::json!({"memory": {"limit": 16777216, "swap": 33554432}}),
        ))
        .unwrap();
    assert_eq!(
        read(&dir("memory"), "memory.memsw.limit_in_bytes"),
        "33554432"
    );
    guard
        .cgroup
        .apply(&resources(
            serde_json::json!({"memory": {"limit": 268435456, "swap": 536870912}}),
        ))
        .unwrap();
    assert_eq!(read(&dir("memory"), "memory.limit_in_bytes"), "268435456");

    guard
        .cgroup
        .apply(&resources(serde_json::json!({"cpu": {"idle": 1}})))
        .unwrap();
    assert_eq!(read(&dir("cpu"), "cpu.idle"), "1");
    guard
        .cgroup
        .apply(&resources(serde_json::json!({"cpu": {"idle": 0}})))
        .unwrap();

    guard.s(i).go();
    assert_eq!(guard.s(i).line().as_deref(), Some("hi"));
}

#[test]
fn v1_values_the_host_cannot_honour_are_errors() {
    let test = "v1_values_the_host_cannot_honour_are_errors";
    let Some(mounts) = v1_host(test, &["memory", "cpu"]) else {
        return;
    };
    let manager = V1Manager::with_mounts(mounts.clone(), unique_path("honour"));
    let guard = Guard::new(Box::new(manager));
    guard.cgroup.create().unwrap();

    // Linux >= 6.1 accepts memory.kmem.limit_in_bytes and ignores it.
    let err = guard
        .cgroup
        .apply(&resources(
            serde_json::json!({"memory": {"kernel": 16777216}}),
        ))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("memory.kmem.limit_in_bytes") && text.contains("16777216"),
        "{text}"
    );

    // The kernel clamps cpu.shares; the read-back reports it.
    let err = guard
        .cgroup
        .apply(&resources(serde_json::json!({"cpu": {"shares": 1000000}})))
        .unwrap_err();
    assert!(matches!(err, CgroupError::NotHonoured { .. }), "{err}");

    // A kernel refusal names the file and value (use_hierarchy=0 is no longer allowed).
    let err = guard
        .cgroup
        .apply(&resources(
            serde_json::json!({"memory": {"useHierarchy": false}}),
        ))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("memory.use_hierarchy") && text.contains("\"0\""),
        "{text}"
    );

    // A resource of a controller that is not mounted.
    if mounts.v1_mount("hugetlb").is_none() {
        let err = guard
            .cgroup
            .apply(&resources(
                serde_json::json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]}),
            ))
            .unwrap_err();
        assert!(
            matches!(err, CgroupError::ControllerMissing { .. }),
            "{err}"
        );
    }
    if mounts.v1_mount("net_cls").is_none() {
        let err = guard
            .cgroup
            .apply(&resources(serde_json::json!({"network": {"classID": 1}})))
            .unwrap_err();
        assert!(
            matches!(err, CgroupError::ControllerMissing { .. }),
            "{err}"
        );
    }
}

#[test]
fn v1_pids_limit_stops_forks() {
    let test = "v1_pids_limit_stops_forks";
    let Some(mounts) = v1_host(test, &["pids"]) else {
        return;
    };
    let manager = V1Manager::with_mounts(mounts, unique_path("pids"));
    let pids_dir = manager.controller_dir("pids").unwrap();
    let mut guard = Guard::new(Box::new(manager));
    guard.cgroup.create().unwrap();
    guard
        .cgroup
        .apply(&resources(serde_json::json!({"pids": {"limit": 1}})))
        .unwrap();

    // The shell is the one allowed task: its fork fails (dash then exits).
    let i = guard.spawn_inside("read _; /bin/true; echo forked");
    guard.s(i).go();
    assert_eq!(guard.s(i).line(), None);
    assert!(!guard.s(i).wait().success());
    let events = super::files::parse_flat_keyed(&read(&pids_dir, "pids.events"));
    assert!(events["max"] >= 1, "{events:?}");

    // With room for a child the same script forks.
    guard
        .cgroup
        .apply(&resources(serde_json::json!({"pids": {"limit": 10}})))
        .unwrap();
    let j = guard.spawn_inside("read _; /bin/true; echo forked");
    guard.s(j).go();
    assert_eq!(guard.s(j).line().as_deref(), Some("forked"));
    assert_eq!(guard.cgroup.stats().unwrap().pids.limit, 10);
}

#[test]
fn v1_memory_limit_oom_kills_and_counts() {
    let test = "v1_memory_limit_oom_kills_and_counts";
    let Some(mounts) = v1_host(test, &["memory"]) else {
        return;
    };
    let mut guard = Guard::new(Box::new(V1Manager::with_mounts(mounts, unique_path("oom"))));
    guard.cgroup.create().unwrap();
    guard
        .cgroup
        .apply(&resources(
            serde_json::json!({"memory": {"limit": 33554432, "swap": 33554432}}),
        ))
        .unwrap();
    assert_eq!(guard.cgroup.oom_count().unwrap(), 0);
    // dd's 200 MiB buffer, filled from /dev/zero, cannot fit in 32 MiB.
    let i = guard.spawn_inside("read _; exec dd if=/dev/zero of=/dev/null bs=200M count=1");
    guard.s(i).go();
    let status = guard.s(i).wait();
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "{status:?}");
    assert_eq!(guard.cgroup.oom_count().unwrap(), 1);
    let stats = guard.cgroup.stats().unwrap();
    // The peak reached the limit (failcnt is not asserted: recent kernels keep it 0
    // when memory+swap is limited as well).
    assert!(
        stats.memory.usage.max > 33554432 / 2,
        "{:?}",
        stats.memory.usage
    );
    assert_eq!(stats.memory.usage.limit, 33554432);
}

#[test]
fn v1_freeze_and_thaw_a_busy_child() {
    let test = "v1_freeze_and_thaw_a_busy_child";
    let Some(mounts) = v1_host(test, &["freezer"]) else {
        return;
    };
    let manager = V1Manager::with_mounts(mounts, unique_path("freeze"));
    let freezer = manager.controller_dir("freezer").unwrap();
    let mut guard = Guard::new(Box::new(manager));
    guard.cgroup.create().unwrap();
    let i = guard.spawn_inside("read _; while :; do :; done");
    guard.s(i).go();
    let pid = guard.s(i).pid();
    eventually("the loop to run", || proc_state(pid) == 'R');
    assert!(!guard.cgroup.is_frozen().unwrap());

    guard.cgroup.freeze().unwrap();
    assert!(guard.cgroup.is_frozen().unwrap());
    assert_eq!(read(&freezer, "freezer.state"), "FROZEN");
    assert_ne!(proc_state(pid), 'R');

    guard.cgroup.thaw().unwrap();
    assert!(!guard.cgroup.is_frozen().unwrap());
    assert_eq!(read(&freezer, "freezer.state"), "THAWED");
    eventually("the loop to run again", || proc_state(pid) == 'R');

    // Signalling a paused container keeps it paused; the signal lands on resume.
    guard.cgroup.freeze().unwrap();
    guard.cgroup.kill_all(Signal::SIGTERM as i32).unwrap();
    assert!(guard.cgroup.is_frozen().unwrap());
    assert_ne!(proc_state(pid), 'R');
    guard.cgroup.thaw().unwrap();
    assert_eq!(guard.s(i).wait().signal(), Some(Signal::SIGTERM as i32));
}

#[test]
fn v1_kill_all_signals_every_process() {
    let test = "v1_kill_all_signals_every_process";
    let Some(mounts) = v1_host(test, &["freezer"]) else {
        return;
    };
    let mut guard = Guard::new(Box::new(V1Manager::with_mounts(
        mounts,
        unique_path("kill"),
    )));
    guard.cgroup.create().unwrap();
    let killed: Vec<usize> = (0..3).map(|_| guard.spawn_inside("read _")).collect();
    // A grandchild forked inside the cgroup is found too.
    let parent = guard.spawn_inside("read _; sleep 1000 & echo $!; wait");
    guard.s(parent).go();
    let grandchild: i32 = guard.s(parent).line().unwrap().parse().unwrap();
    eventually("the grandchild to be listed", || {
        guard.cgroup.pids().unwrap().contains(&grandchild)
    });
    assert_eq!(guard.cgroup.pids().unwrap().len(), 5);

    guard.cgroup.kill_all(Signal::SIGTERM as i32).unwrap();
    for i in killed.into_iter().chain([parent]) {
        assert_eq!(guard.s(i).wait().signal(), Some(Signal::SIGTERM as i32));
    }
    eventually("the cgroup to empty", || {
        guard.cgroup.pids().unwrap().is_empty()
    });
    assert!(!guard.cgroup.is_frozen().unwrap());

    let last = guard.spawn_inside("read _");
    guard.cgroup.kill_all(Signal::SIGKILL as i32).unwrap();
    assert_eq!(guard.s(last).wait().signal(), Some(Signal::SIGKILL as i32));
}

#[test]
fn v1_stats_report_real_usage() {
    let test = "v1_stats_report_real_usage";
    let Some(mounts) = v1_host(test, &["cpuacct", "memory", "pids"]) else {
        return;
    };
    let mut guard = Guard::new(Box::new(V1Manager::with_mounts(
        mounts,
        unique_path("stats"),
    )));
    guard.cgroup.create().unwrap();
    guard
        .cgroup
        .apply(&resources(serde_json::json!({"pids": {"limit": 20}})))
        .unwrap();
    // v1 charges memory to the cgroup where it is allocated: allocate after joining.
    let i = guard
        .spawn_inside("read _; x=$(head -c 4000000 /dev/zero | tr '\\0' a); while :; do :; done");
    guard.s(i).go();
    eventually("cpu and memory to be charged", || {
        let stats = guard.cgroup.stats().unwrap();
        stats.cpu.usage.total > 0 && stats.memory.usage.usage > 0 && stats.pids.current == 1
    });
    let stats = guard.cgroup.stats().unwrap();
    assert!(!stats.cpu.usage.percpu.is_empty());
    assert_eq!(
        stats.cpu.usage.percpu.iter().sum::<u64>(),
        stats.cpu.usage.total
    );
    assert_eq!(stats.pids.limit, 20);
    assert!(!stats.memory.raw.is_empty());
    let json = serde_json::to_value(&stats).unwrap();
    assert!(json["cpu"]["usage"]["total"].as_u64().unwrap() > 0);
    assert!(json["memory"]["usage"]["usage"].as_u64().unwrap() > 0);
}

#[test]
fn v1_device_deny_blocks_dev_null() {
    let test = "v1_device_deny_blocks_dev_null";
    let Some(mounts) = v1_host(test, &["devices"]) else {
        return;
    };
    let mut guard = Guard::new(Box::new(V1Manager::with_mounts(
        mounts,
        unique_path("devices"),
    )));
    guard.cgroup.create().unwrap();
    let i = guard.spawn_inside(&format!(
        "read _; {OPEN_DEV_NULL}; read _; {OPEN_DEV_NULL}; read _; {OPEN_DEV_NULL}"
    ));
    guard.s(i).go();
    assert_eq!(guard.s(i).line().as_deref(), Some("open"));

    guard
        .cgroup
        .apply(&resources(serde_json::json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]})))
        .unwrap();
    guard.s(i).go();
    assert_eq!(guard.s(i).line().as_deref(), Some("denied"));

    guard
        .cgroup
        .apply(&resources(serde_json::json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]})))
        .unwrap();
    guard.s(i).go();
    assert_eq!(guard.s(i).line().as_deref(), Some("open"));
}

#[test]
fn v1_destroy_is_idempotent_and_cleans_a_half_created_tree() {
    let test = "v1_destroy_is_idempotent_and_cleans_a_half_created_tree";
    let Some(mounts) = v1_host(test, &["memory", "cpu"]) else {
        return;
    };
    let top = unique_path("destroy");
    let manager = V1Manager::with_mounts(mounts.clone(), top.clone());
    let guard = Guard::new(Box::new(manager.clone()));
    // As if a create crashed: the directory exists in two hierarchies only, with a
    // nested child cgroup (like a systemd scope under its slice) in one of them.
    let memory = manager.controller_dir("memory").unwrap();
    std::fs::create_dir_all(memory.join("child.scope")).unwrap();
    std::fs::create_dir_all(manager.controller_dir("cpu").unwrap()).unwrap();
    guard.cgroup.destroy().unwrap();
    for dir in guard.cgroup.dirs() {
        assert!(!dir.dir.exists(), "{}", dir.dir.display());
    }
    guard.cgroup.destroy().unwrap();
}

#[test]
fn v1_nested_systemd_style_path_is_created_and_removed_from_the_top() {
    let test = "v1_nested_systemd_style_path_is_created_and_removed_from_the_top";
    let Some(mounts) = v1_host(test, &["memory", "pids", "cpuset"]) else {
        return;
    };
    // Under a unique top so that concurrent runs never share a directory.
    let top = unique_path("nested");
    let scope = super::resolve_path(Some("machine-husk.slice:libpod:c1"), "c1", true).unwrap();
    assert_eq!(
        scope.as_str(),
        "/machine.slice/machine-husk.slice/libpod-c1.scope"
    );
    let path = CgroupPath::new(&format!("{top}{scope}")).unwrap();
    // The guard owns the top, so the whole tree goes even on failure.
    let mut guard = Guard::new(Box::new(V1Manager::with_mounts(mounts.clone(), top)));
    let manager = V1Manager::with_mounts(mounts, path);
    manager.create().unwrap();
    let cpuset = manager.controller_dir("cpuset").unwrap();
    assert!(!read(&cpuset, "cpuset.cpus").is_empty());
    assert!(!read(cpuset.parent().unwrap(), "cpuset.mems").is_empty());
    let i = guard.spawn("read _; echo ok");
    manager.add_task(guard.s(i).pid()).unwrap();
    assert_eq!(guard.cgroup.pids().unwrap(), [guard.s(i).pid()]);
    assert_eq!(manager.pids().unwrap(), [guard.s(i).pid()]);
    guard.s(i).go();
    assert_eq!(guard.s(i).line().as_deref(), Some("ok"));
}

// ------------------------------------- v2 on the real cgroup2 mount (core files + eBPF)

fn v2_guard(test: &str, tag: &str) -> Option<(Guard, V2Manager)> {
    let mount = v2_mount(test)?;
    // Change no ancestor's subtree_control on a shared host.
    let manager = V2Manager::at_mount(mount, unique_path(tag))
        .with_controller_policy(ControllerPolicy::Only(Vec::new()));
    let guard = Guard::new(Box::new(manager.clone()));
    guard.cgroup.create().unwrap();
    Some((guard, manager))
}

#[test]
fn v2_unified_procs_events_freeze_and_kill() {
    let Some((mut guard, manager)) = v2_guard("v2_unified_procs_events_freeze_and_kill", "core")
    else {
        return;
    };
    let dir = manager.dir();
    assert_eq!(read(&dir, "cgroup.events"), "populated 0\nfrozen 0");
    let i = guard.spawn_inside("read _; while :; do :; done");
    let pid = guard.s(i).pid();
    assert_eq!(guard.cgroup.pids().unwrap(), [pid]);
    assert_eq!(read(&dir, "cgroup.procs"), pid.to_string());
    assert!(read(&dir, "cgroup.events").contains("populated 1"));
    let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        membership
            .lines()
            .any(|l| l == format!("0::{}", manager.path())),
        "{membership}"
    );
    guard.s(i).go();
    eventually("the loop to run", || proc_state(pid) == 'R');

    guard.cgroup.freeze().unwrap();
    assert!(guard.cgroup.is_frozen().unwrap());
    assert_eq!(read(&dir, "cgroup.freeze"), "1");
    assert_ne!(proc_state(pid), 'R');
    guard.cgroup.thaw().unwrap();
    assert!(!guard.cgroup.is_frozen().unwrap());
    eventually("the loop to run again", || proc_state(pid) == 'R');

    // Real cpu.stat (a core file): the loop was charged.
    eventually("cpu time to be charged", || {
        guard.cgroup.stats().unwrap().cpu.usage.total > 0
    });

    // A paused container stays paused when signalled; the signal lands on resume.
    let p = guard.spawn_inside("read _");
    guard.cgroup.freeze().unwrap();
    guard.cgroup.kill_all(Signal::SIGTERM as i32).unwrap();
    assert!(guard.cgroup.is_frozen().unwrap());
    guard.cgroup.thaw().unwrap();
    assert_eq!(guard.s(p).wait().signal(), Some(Signal::SIGTERM as i32));
    assert_eq!(guard.s(i).wait().signal(), Some(Signal::SIGTERM as i32));

    // SIGTERM goes through freeze / signal / thaw.
    let i = guard.spawn_inside("read _; while :; do :; done");
    guard.s(i).go();
    let j = guard.spawn_inside("read _");
    guard.cgroup.kill_all(Signal::SIGTERM as i32).unwrap();
    assert_eq!(guard.s(i).wait().signal(), Some(Signal::SIGTERM as i32));
    assert_eq!(guard.s(j).wait().signal(), Some(Signal::SIGTERM as i32));
    assert!(!guard.cgroup.is_frozen().unwrap());

    // SIGKILL goes through cgroup.kill.
    let k = guard.spawn_inside("read _");
    let parent = guard.spawn_inside("read _; sleep 1000 & echo $!; wait");
    guard.s(parent).go();
    let grandchild: i32 = guard.s(parent).line().unwrap().parse().unwrap();
    assert!(guard.cgroup.pids().unwrap().contains(&grandchild));
    guard.cgroup.kill_all(Signal::SIGKILL as i32).unwrap();
    assert_eq!(guard.s(k).wait().signal(), Some(Signal::SIGKILL as i32));
    assert_eq!(
        guard.s(parent).wait().signal(),
        Some(Signal::SIGKILL as i32)
    );
    eventually("the cgroup to empty", || {
        read(&dir, "cgroup.events").contains("populated 0")
    });
}

#[test]
fn v2_unified_device_program_blocks_dev_null_and_is_replaced() {
    let Some((mut guard, manager)) = v2_guard(
        "v2_unified_device_program_blocks_dev_null_and_is_replaced",
        "bpf",
    ) else {
        return;
    };
    let i = guard.spawn_inside(&format!(
        "read _; {OPEN_DEV_NULL}; read _; {OPEN_DEV_NULL}; read _; {OPEN_DEV_NULL}"
    ));
    assert!(manager.device_program_ids().unwrap().is_empty());
    guard
        .cgroup
        .apply(&resources(serde_json::json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]})))
        .unwrap();
    let first = manager.device_program_ids().unwrap();
    assert_eq!(first.len(), 1);
    guard.s(i).go();
    assert_eq!(guard.s(i).line().as_deref(), Some("denied"));

    // Update: the new program replaces the old one (both attached would still deny).
    guard
        .cgroup
        .apply(&resources(serde_json::json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}]})))
        .unwrap();
    let second = manager.device_program_ids().unwrap();
    assert_eq!(second.len(), 1);
    assert_ne!(first, second);
    guard.s(i).go();
    assert_eq!(guard.s(i).line().as_deref(), Some("open"));

    // Read-only access to /dev/null does not allow opening it for writing.
    guard
        .cgroup
        .apply(&resources(serde_json::json!({"devices": [
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "r"}]})))
        .unwrap();
    guard.s(i).go();
    assert_eq!(guard.s(i).line().as_deref(), Some("open"));
    let j =
        guard.spawn_inside("read _; if (: >/dev/null) 2>&-; then echo open; else echo denied; fi");
    guard.s(j).go();
    assert_eq!(guard.s(j).line().as_deref(), Some("denied"));
}

#[test]
fn v2_unified_limits_need_controllers_and_core_unified_keys_work() {
    let Some((guard, manager)) = v2_guard(
        "v2_unified_limits_need_controllers_and_core_unified_keys_work",
        "ctl",
    ) else {
        return;
    };
    let offered = read(&manager.dir(), "cgroup.controllers");
    if !offered.split_whitespace().any(|c| c == "memory") {
        let err = guard
            .cgroup
            .apply(&resources(
                serde_json::json!({"memory": {"limit": 1048576}}),
            ))
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("\"memory\"") && text.contains("cgroup.controllers"),
            "{text}"
        );
        assert!(matches!(
            guard.cgroup.oom_count(),
            Err(CgroupError::ReadFile { .. })
        ));
    }
    guard
        .cgroup
        .apply(&resources(
            serde_json::json!({"unified": {"cgroup.max.depth": "3"}}),
        ))
        .unwrap();
    assert_eq!(read(&manager.dir(), "cgroup.max.depth"), "3");
    let err = guard
        .cgroup
        .apply(&resources(
            serde_json::json!({"unified": {"../cgroup.procs": "1"}}),
        ))
        .unwrap_err();
    assert!(matches!(err, CgroupError::UnifiedKey { .. }), "{err}");
}

#[test]
fn v2_unified_destroy_removes_nested_cgroups_and_is_idempotent() {
    let Some((guard, manager)) = v2_guard(
        "v2_unified_destroy_removes_nested_cgroups_and_is_idempotent",
        "rm",
    ) else {
        return;
    };
    std::fs::create_dir_all(manager.dir().join("inner/deeper")).unwrap();
    guard.cgroup.destroy().unwrap();
    assert!(!manager.dir().exists());
    guard.cgroup.destroy().unwrap();
    // Killing and listing a cgroup that is gone is not an error.
    guard.cgroup.kill_all(Signal::SIGKILL as i32).unwrap();
    assert!(guard.cgroup.pids().unwrap().is_empty());
}
