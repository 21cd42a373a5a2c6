//! Resource control on real containers: memory, pids, cpu and cpuset limits,
//! device rules, pause/resume, update, ps, events, kill --all and cgroup
//! removal, observed from inside the container and from the host's cgroup
//! files.
//!
//! The host layout these tests expect is the one of a cgroup v1 (or hybrid)
//! machine: one hierarchy per controller under `/sys/fs/cgroup/<controller>`
//! and, on hybrid hosts, a controller-less cgroup2 mount at
//! `/sys/fs/cgroup/unified`. Every container here (except the test of the
//! default path) sets `linux.cgroupsPath` to `/husk/<id>` so the files are
//! found whatever the runtime's default is.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use husk_conformance::command::exit_code;
use husk_conformance::runtime::{husk_only, runtime_path};
use husk_conformance::{Config, Output, Sandbox, reaper, wait_for_file, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};
use nix::unistd::Pid;
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

// ---------------------------------------------------------------------------
// Host-side cgroup files
// ---------------------------------------------------------------------------

/// The `cgroupsPath` every test container gets.
fn cgroups_path(id: &str) -> String {
    format!("/husk/{id}")
}

/// The container's directory in one hierarchy (`memory`, `unified`, ...).
fn cgroup_dir(hierarchy: &str, id: &str) -> PathBuf {
    Path::new(CGROUP_ROOT).join(hierarchy).join("husk").join(id)
}

/// A cgroup file of the container, read on the host, trimmed.
#[track_caller]
fn host_file(hierarchy: &str, id: &str, file: &str) -> String {
    let path = cgroup_dir(hierarchy, id).join(file);
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// Every cgroup hierarchy mounted under /sys/fs/cgroup (v1 controllers,
/// `name=systemd`, the hybrid cgroup2 mount): the dirs holding `cgroup.procs`.
fn hierarchies() -> Vec<String> {
    let mut found: Vec<String> = fs::read_dir(CGROUP_ROOT)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().join("cgroup.procs").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// `husk/<id>` dirs that exist in any hierarchy.
fn cgroup_dirs_left(id: &str) -> Vec<PathBuf> {
    hierarchies()
        .iter()
        .map(|h| cgroup_dir(h, id))
        .filter(|d| d.exists())
        .collect()
}

/// Whether /sys/fs/cgroup is a v1 (or hybrid) layout.
fn is_v1_host() -> bool {
    statfs(CGROUP_ROOT).is_ok_and(|fs| fs.filesystem_type() != CGROUP2_SUPER_MAGIC)
}

/// Pids listed in a `cgroup.procs` file.
fn procs_in(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// Parses a cpu or memory node list such as `0-3,5`.
fn parse_list(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Processes seen from the host
// ---------------------------------------------------------------------------

/// Fields of `/proc/<pid>/stat` after the command name (index 0 is the state).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(String::from).collect())
}

fn proc_state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The command line of `pid`, arguments joined by spaces.
fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            String::from_utf8_lossy(&raw)
                .split('\0')
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn alive(pid: i32) -> bool {
    proc_state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

// ---------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------

/// `runc spec` with `cgroupsPath` `/husk/<id>` and `resources` merged into
/// `linux.resources` key by key (the default device rules stay).
fn config_with(id: &str, resources: Value) -> Config {
    let mut config = Config::runc_spec().set("/linux/cgroupsPath", json!(cgroups_path(id)));
    if let Value::Object(map) = resources {
        for (key, value) in map {
            config = config.set(&format!("/linux/resources/{key}"), value);
        }
    }
    config
}

/// Creates and starts `config` as `id`, then waits for `/host/ready`.
#[track_caller]
fn start_ready(sb: &Sandbox, id: &str, config: &Config, host: &Path) {
    sb.create_ok(id, config);
    sb.start(id).assert_success();
    wait_for_file(&host.join("ready"));
}

/// The container's init pid as `state` reports it.
#[track_caller]
fn init_pid(sb: &Sandbox, id: &str) -> i32 {
    let state = sb.state(id);
    state["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or_else(|| panic!("state has no pid: {state}"))
}

/// `exec ID sh -c SCRIPT`, which must succeed.
#[track_caller]
fn exec_sh(sb: &Sandbox, id: &str, script: &str) -> Output {
    let out = sb.runtime(&["exec", id, "sh", "-c", script]);
    out.assert_success();
    out
}

/// `ps --format json ID`, parsed.
#[track_caller]
fn ps_json(sb: &Sandbox, id: &str) -> Vec<i32> {
    let out = sb.runtime(&["ps", "--format", "json", id]);
    out.assert_success();
    let mut pids: Vec<i32> = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("ps json is not a list of pids ({e}):\n{out}"));
    pids.sort_unstable();
    pids
}

/// `events --stats ID`: checks the envelope and returns its `data`.
#[track_caller]
fn stats(sb: &Sandbox, id: &str) -> Value {
    let out = sb.runtime(&["events", "--stats", id]);
    out.assert_success();
    let lines = out.stdout_lines();
    assert_eq!(lines.len(), 1, "one event line expected:\n{out}");
    let event: Value = serde_json::from_str(lines[0])
        .unwrap_or_else(|e| panic!("event is not JSON ({e}):\n{out}"));
    assert_eq!(event["type"], "stats", "{event}");
    assert_eq!(event["id"], id, "{event}");
    event["data"].clone()
}

/// The unsigned number at `pointer`, or a panic showing the document.
#[track_caller]
fn num(doc: &Value, pointer: &str) -> u64 {
    doc.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {doc}"))
}

#[track_caller]
fn read_host(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// Integer written by the container into a host file; None while incomplete.
fn read_number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A runtime command running in the background (`events --interval`), or one
/// fed a file on stdin. Killed and reaped on drop.
struct Background {
    child: Option<Child>,
    command: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Background {
    fn start(sb: &Sandbox, args: &[&str], label: &str, stdin: Option<&Path>) -> Background {
        let stdout = sb.dir().join(format!("{label}.bg.out"));
        let stderr = sb.dir().join(format!("{label}.bg.err"));
        let create =
            |p: &Path| File::create(p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        let input = match stdin {
            Some(path) => Stdio::from(
                File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display())),
            ),
            None => Stdio::null(),
        };
        let mut cmd = Command::new(runtime_path());
        cmd.arg("--root")
            .arg(sb.root())
            .args(args)
            .stdin(input)
            .stdout(create(&stdout))
            .stderr(create(&stderr));
        let command = format!(
            "{} --root {} {}",
            runtime_path().display(),
            sb.root().display(),
            args.join(" ")
        );
        let child =
            reaper::spawn_owned(&mut cmd).unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
        Background {
            child: Some(child),
            command,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn describe(&self) -> String {
        format!(
            "  command: {}\n  stdout: {}\n  stderr: {}",
            self.command,
            self.stdout(),
            fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Waits (hang guard only) for the command to exit; returns its exit code.
    #[track_caller]
    fn wait_exit(&mut self) -> i32 {
        let Some(mut child) = self.child.take() else {
            panic!("{} was already waited for", self.command);
        };
        let mut status = None;
        wait_until(&format!("{} exits", self.command), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        reaper::release(&child);
        status.map(exit_code).unwrap_or(-1)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            reaper::release(&child);
        }
    }
}

// ---------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------

#[test]
fn memory_limit_oom_kills_an_init_that_exceeds_it() {
    let sb = Sandbox::new("oom-init");
    let id = sb.new_id();
    // dd allocates its 64 MiB block and fills it from /dev/zero: anonymous
    // memory charged to the container, twice the limit.
    let config = config_with(
        &id,
        json!({"memory": {"limit": 32 * MIB, "swap": 32 * MIB}}),
    )
    .sh("cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
         exec dd if=/dev/zero of=/dev/null bs=64M count=1");
    let out = sb.run_id(&id, &config);
    assert_eq!(
        out.stdout_lines().first().copied(),
        Some((32 * MIB).to_string().as_str()),
        "the container sees its limit:\n{out}"
    );
    assert_eq!(out.code, 128 + 9, "killed by the OOM killer:\n{out}");
}

#[test]
fn oom_kill_of_a_child_is_reported_by_events_and_the_container_survives() {
    // husk-only: runc 1.1's `events --interval` does not exit when the container stops.
    if !husk_conformance::runtime::husk_only(
        "oom_kill_of_a_child_is_reported_by_events_and_the_container_survives",
    ) {
        return;
    }
    let sb = Sandbox::new("oom-events");
    let host = sb.host_dir("shared");
    let id = sb.new_id();
    let config = config_with(
        &id,
        json!({"memory": {"limit": 32 * MIB, "swap": 32 * MIB}}),
    )
    .bind(&host, "/host", &[])
    .sh("touch /host/ready; \
         while [ ! -e /host/go ]; do sleep 0.05; done; \
         dd if=/dev/zero of=/dev/null bs=64M count=1; \
         echo $? > /host/dd-rc; \
         cat /sys/fs/cgroup/memory/memory.oom_control > /host/oom-control; \
         touch /host/done; \
         exec sleep 1000");
    start_ready(&sb, &id, &config, &host);

    let mut events =
        Background::start(&sb, &["events", "--interval", "200ms", &id], "events", None);
    // The first stats line means events has read the OOM-kill count it
    // compares against; only then may the OOM happen.
    wait_until("events printed its first stats line", || {
        events.stdout().lines().any(|l| l.contains("\"stats\""))
    });
    fs::write(host.join("go"), "").unwrap();
    wait_for_file(&host.join("done"));

    assert_eq!(read_host(&host.join("dd-rc")), "137", "dd was SIGKILLed");
    let oom_control = read_host(&host.join("oom-control"));
    let kills = oom_control
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert_eq!(kills, Some(1), "memory.oom_control inside:\n{oom_control}");

    wait_until("events reports the oom", || {
        events.stdout().lines().any(|l| l.contains("\"oom\""))
    });
    let oom_line: Value = events
        .stdout()
        .lines()
        .find(|l| l.contains("\"oom\""))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("oom line is not JSON:\n{}", events.describe()));
    assert_eq!(
        oom_line,
        json!({"type": "oom", "id": id}),
        "{}",
        events.describe()
    );

    let data = stats(&sb, &id);
    assert_eq!(num(&data, "/memory/usage/limit"), 32 * MIB, "{data}");
    assert!(
        num(&data, "/memory/usage/max") >= 30 * MIB,
        "peak usage should have reached the limit: {data}"
    );
    assert_eq!(
        sb.status(&id).as_deref(),
        Some("running"),
        "init survived the OOM"
    );

    sb.kill(&id, "KILL").assert_success();
    sb.wait_status(&id, "stopped");
    let code = events.wait_exit();
    assert_eq!(
        code,
        0,
        "events exits once the container stops:\n{}",
        events.describe()
    );
}

// ---------------------------------------------------------------------------
// Pids
// ---------------------------------------------------------------------------

#[test]
fn pids_limit_stops_a_bounded_fork_bomb() {
    let sb = Sandbox::new("pids-bomb");
    let host = sb.host_dir("shared");
    let id = sb.new_id();
    // The bomb runs in its own shell (ash exits when a fork fails); init
    // survives it and reports with builtins only, since the cgroup is full.
    let config = config_with(&id, json!({"pids": {"limit": 20}}))
        .bind(&host, "/host", &[])
        .sh("sh -c 'i=0; while [ $i -lt 100 ]; do sleep 1000 & i=$((i+1)); done' 2> /host/bomb.err; \
             read current < /sys/fs/cgroup/pids/pids.current; \
             read max < /sys/fs/cgroup/pids/pids.max; \
             echo \"$current $max\" > /host/inside; \
             : > /host/ready; \
             exec sleep 1000");
    start_ready(&sb, &id, &config, &host);

    let inside = read_host(&host.join("inside"));
    let (current, max) = inside
        .split_once(' ')
        .unwrap_or_else(|| panic!("inside: {inside:?}"));
    assert_eq!(max, "20", "pids.max inside");
    let current: u32 = current
        .parse()
        .unwrap_or_else(|_| panic!("pids.current inside: {inside:?}"));
    assert!(
        (2..=20).contains(&current),
        "pids.current inside after the bomb: {current}"
    );
    let err = read_host(&host.join("bomb.err"));
    assert!(
        err.contains("fork") || err.contains("Resource temporarily unavailable"),
        "the bomb's shell should report a failed fork: {err:?}"
    );

    assert_eq!(host_file("pids", &id, "pids.max"), "20");
    let failed_forks = host_file("pids", &id, "pids.events")
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(
        failed_forks.is_some_and(|n| n > 0),
        "pids.events max: {failed_forks:?}"
    );

    let pids = ps_json(&sb, &id);
    assert!(
        pids.len() <= 20,
        "{} processes with a limit of 20: {pids:?}",
        pids.len()
    );
    let sleeps = pids.iter().filter(|p| cmdline(**p) == "sleep 1000").count();
    assert!(
        (1..100).contains(&sleeps),
        "some but not all 100 sleeps started: {sleeps}"
    );
    assert_eq!(
        sb.status(&id).as_deref(),
        Some("running"),
        "container still alive"
    );
}

// ---------------------------------------------------------------------------
// CPU and cpuset
// ---------------------------------------------------------------------------

#[test]
fn cpu_quota_period_and_shares_are_visible_inside() {
    let sb = Sandbox::new("cpu-limits");
    let id = sb.new_id();
    let config = config_with(
        &id,
        json!({"cpu": {"quota": 25000, "period": 50000, "shares": 512}}),
    )
    .sh("cd /sys/fs/cgroup/cpu && cat cpu.cfs_quota_us cpu.cfs_period_us cpu.shares");
    let out = sb.run_id(&id, &config);
    out.assert_success();
    assert_eq!(out.stdout_lines(), vec!["25000", "50000", "512"], "{out}");
}

#[test]
fn cpuset_cpus_and_mems_are_visible_inside() {
    let sb = Sandbox::new("cpuset");
    let id = sb.new_id();
    let cpus = parse_list(&read_host(Path::new(
        "/sys/fs/cgroup/cpuset/cpuset.effective_cpus",
    )));
    let mems = parse_list(&read_host(Path::new(
        "/sys/fs/cgroup/cpuset/cpuset.effective_mems",
    )));
    // The highest cpu: on a multi-cpu host this differs from the default "all".
    let cpu = *cpus
        .iter()
        .max()
        .unwrap_or_else(|| panic!("host has no cpus"));
    let mem = *mems
        .first()
        .unwrap_or_else(|| panic!("host has no memory nodes"));
    let config = config_with(
        &id,
        json!({"cpu": {"cpus": cpu.to_string(), "mems": mem.to_string()}}),
    )
    .sh(
        "cat /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/cpuset/cpuset.mems; \
         grep -E '^(Cpus|Mems)_allowed_list' /proc/self/status",
    );
    let out = sb.run_id(&id, &config);
    out.assert_success();
    let expected_cpu = cpu.to_string();
    let expected_mem = mem.to_string();
    assert_eq!(
        out.stdout_lines(),
        vec![
            expected_cpu.as_str(),
            expected_mem.as_str(),
            &format!("Cpus_allowed_list:\t{cpu}"),
            &format!("Mems_allowed_list:\t{mem}"),
        ],
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// Pause and resume
// ---------------------------------------------------------------------------

#[test]
fn pause_freezes_and_resume_thaws_a_busy_container() {
    let sb = Sandbox::new("pause-resume");
    let host = sb.host_dir("shared");
    let id = sb.new_id();
    // A counter published by rename, so the host never reads half a write.
    let config = config_with(&id, json!({}))
        .bind(&host, "/host", &[])
        .sh("touch /host/ready; i=0; \
             while :; do i=$((i+1)); echo $i > /host/c.tmp; mv /host/c.tmp /host/counter; done");
    start_ready(&sb, &id, &config, &host);
    let counter = host.join("counter");
    wait_until("the counter advances", || {
        read_number(&counter).is_some_and(|n| n >= 3)
    });
    let init = init_pid(&sb, &id);
    sb.runtime(&["resume", &id])
        .assert_failure()
        .assert_stderr_contains("not paused");

    sb.runtime(&["pause", &id]).assert_success();
    assert_eq!(sb.status(&id).as_deref(), Some("paused"));
    assert_eq!(host_file("freezer", &id, "freezer.state"), "FROZEN");
    // Frozen v1 tasks sleep uninterruptibly; a child that exited just before
    // the freeze may still be a zombie.
    assert_eq!(proc_state(init), Some('D'), "frozen init {init}");
    for pid in ps_json(&sb, &id) {
        let state = proc_state(pid);
        assert!(
            matches!(state, Some('D' | 'Z') | None),
            "task {pid} ({}) is {state:?} while frozen",
            cmdline(pid)
        );
    }
    let frozen_at = read_number(&counter).unwrap_or_else(|| panic!("counter unreadable"));
    let ticks_at = cpu_ticks(init).unwrap_or_else(|| panic!("no stat for init {init}"));
    // A window for a broken freeze to show itself; nothing is timed.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        read_number(&counter),
        Some(frozen_at),
        "counter moved while paused"
    );
    assert_eq!(
        cpu_ticks(init),
        Some(ticks_at),
        "init used cpu while paused"
    );
    assert_eq!(sb.status(&id).as_deref(), Some("paused"));

    sb.runtime(&["resume", &id]).assert_success();
    assert_eq!(sb.status(&id).as_deref(), Some("running"));
    assert_eq!(host_file("freezer", &id, "freezer.state"), "THAWED");
    wait_until("the counter advances after resume", || {
        read_number(&counter).is_some_and(|n| n > frozen_at)
    });
}

// ---------------------------------------------------------------------------
// Update
// ---------------------------------------------------------------------------

/// A container that idles until killed, with `resources`.
fn idle(sb: &Sandbox, id: &str, resources: Value) -> PathBuf {
    let host = sb.host_dir("shared");
    let config = config_with(id, resources)
        .bind(&host, "/host", &[])
        .sh("touch /host/ready; exec sleep 1000");
    start_ready(sb, id, &config, &host);
    host
}

/// memory limit, memory+swap limit and pids.max as the container reads them.
fn limits_inside(sb: &Sandbox, id: &str) -> Vec<String> {
    exec_sh(
        sb,
        id,
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes \
             /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes \
             /sys/fs/cgroup/pids/pids.max",
    )
    .stdout_lines()
    .into_iter()
    .map(String::from)
    .collect()
}

fn limits_on_host(id: &str) -> Vec<String> {
    vec![
        host_file("memory", id, "memory.limit_in_bytes"),
        host_file("memory", id, "memory.memsw.limit_in_bytes"),
        host_file("pids", id, "pids.max"),
    ]
}

#[test]
fn update_flags_raise_live_memory_and_pids_limits() {
    let sb = Sandbox::new("update-flags");
    let id = sb.new_id();
    idle(
        &sb,
        &id,
        json!({"memory": {"limit": 32 * MIB, "swap": 32 * MIB}, "pids": {"limit": 40}}),
    );
    let before = vec![
        (32 * MIB).to_string(),
        (32 * MIB).to_string(),
        "40".to_string(),
    ];
    assert_eq!(limits_on_host(&id), before);

    sb.runtime(&[
        "update",
        "--memory",
        "64m",
        "--memory-swap",
        "64m",
        "--pids-limit",
        "30",
        &id,
    ])
    .assert_success();
    let after = vec![
        (64 * MIB).to_string(),
        (64 * MIB).to_string(),
        "30".to_string(),
    ];
    assert_eq!(limits_on_host(&id), after, "host cgroup files");
    assert_eq!(limits_inside(&sb, &id), after, "read inside the container");
    let data = stats(&sb, &id);
    assert_eq!(num(&data, "/memory/usage/limit"), 64 * MIB, "{data}");
    assert_eq!(num(&data, "/pids/limit"), 30, "{data}");
}

#[test]
fn update_flags_change_live_cpu_and_cpuset() {
    // husk-only: runc 1.1 spells the flag --cpu-share only.
    if !husk_conformance::runtime::husk_only("update_flags_change_live_cpu_and_cpuset") {
        return;
    }
    let sb = Sandbox::new("update-cpu-flags");
    let id = sb.new_id();
    let cpus = parse_list(&read_host(Path::new(
        "/sys/fs/cgroup/cpuset/cpuset.effective_cpus",
    )));
    let mems = parse_list(&read_host(Path::new(
        "/sys/fs/cgroup/cpuset/cpuset.effective_mems",
    )));
    let cpu = *cpus
        .iter()
        .max()
        .unwrap_or_else(|| panic!("host has no cpus"));
    let mem = *mems
        .first()
        .unwrap_or_else(|| panic!("host has no memory nodes"));
    idle(&sb, &id, json!({}));

    let (cpu_text, mem_text) = (cpu.to_string(), mem.to_string());
    sb.runtime(&[
        "update",
        "--cpu-quota",
        "30000",
        "--cpu-period",
        "60000",
        "--cpu-shares",
        "300",
        "--cpuset-cpus",
        &cpu_text,
        "--cpuset-mems",
        &mem_text,
        &id,
    ])
    .assert_success();
    assert_eq!(host_file("cpu", &id, "cpu.cfs_quota_us"), "30000");
    assert_eq!(host_file("cpu", &id, "cpu.cfs_period_us"), "60000");
    assert_eq!(host_file("cpu", &id, "cpu.shares"), "300");
    assert_eq!(host_file("cpuset", &id, "cpuset.cpus"), cpu_text);
    assert_eq!(host_file("cpuset", &id, "cpuset.mems"), mem_text);
    // Init (pid 1 inside) was already running: the new cpuset moved it too.
    let inside = exec_sh(
        &sb,
        &id,
        "cd /sys/fs/cgroup/cpu && cat cpu.cfs_quota_us cpu.cfs_period_us cpu.shares; \
         grep Cpus_allowed_list /proc/1/status /proc/self/status",
    );
    assert_eq!(
        inside.stdout_lines(),
        vec![
            "30000",
            "60000",
            "300",
            &format!("/proc/1/status:Cpus_allowed_list:\t{cpu}"),
            &format!("/proc/self/status:Cpus_allowed_list:\t{cpu}"),
        ],
        "{inside}"
    );
}

#[test]
fn update_resources_file_lowers_live_limits() {
    let sb = Sandbox::new("update-file");
    let id = sb.new_id();
    idle(
        &sb,
        &id,
        json!({"memory": {"limit": 64 * MIB, "swap": 64 * MIB}, "pids": {"limit": 40}}),
    );
    let file = sb.dir().join("resources.json");
    let doc = json!({"memory": {"limit": 48 * MIB, "swap": 48 * MIB}, "pids": {"limit": 25}});
    fs::write(&file, doc.to_string()).unwrap();

    sb.runtime(&["update", "--resources", &file.to_string_lossy(), &id])
        .assert_success();
    let after = vec![
        (48 * MIB).to_string(),
        (48 * MIB).to_string(),
        "25".to_string(),
    ];
    assert_eq!(limits_on_host(&id), after, "host cgroup files");
    assert_eq!(limits_inside(&sb, &id), after, "read inside the container");
}

#[test]
fn update_resources_from_stdin_changes_only_what_it_names() {
    let sb = Sandbox::new("update-stdin");
    let id = sb.new_id();
    idle(
        &sb,
        &id,
        json!({"memory": {"limit": 32 * MIB, "swap": 32 * MIB}, "pids": {"limit": 40},
               "cpu": {"shares": 1024}}),
    );
    let input = sb.dir().join("stdin.json");
    let doc =
        json!({"pids": {"limit": 12}, "cpu": {"shares": 256, "quota": 20000, "period": 100000}});
    fs::write(&input, doc.to_string()).unwrap();

    let mut update = Background::start(
        &sb,
        &["update", "--resources", "-", &id],
        "update-stdin",
        Some(&input),
    );
    assert_eq!(
        update.wait_exit(),
        0,
        "update from stdin:\n{}",
        update.describe()
    );
    assert_eq!(host_file("pids", &id, "pids.max"), "12");
    assert_eq!(host_file("cpu", &id, "cpu.shares"), "256");
    assert_eq!(host_file("cpu", &id, "cpu.cfs_quota_us"), "20000");
    assert_eq!(
        host_file("memory", &id, "memory.limit_in_bytes"),
        (32 * MIB).to_string(),
        "untouched"
    );
    let inside = exec_sh(
        &sb,
        &id,
        "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.shares \
             /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us \
             /sys/fs/cgroup/memory/memory.limit_in_bytes",
    );
    let memory = (32 * MIB).to_string();
    assert_eq!(
        inside.stdout_lines(),
        vec!["12", "256", "20000", "100000", memory.as_str()],
        "{inside}"
    );
}

#[test]
fn update_with_a_bad_cpuset_fails_and_keeps_the_old_value() {
    let sb = Sandbox::new("update-bad");
    let id = sb.new_id();
    idle(&sb, &id, json!({}));
    let before = host_file("cpuset", &id, "cpuset.cpus");

    sb.runtime(&["update", "--cpuset-cpus", "99", &id])
        .assert_failure()
        .assert_stderr_contains("cpuset.cpus");
    assert_eq!(host_file("cpuset", &id, "cpuset.cpus"), before);
    assert_eq!(sb.status(&id).as_deref(), Some("running"));
}

// ---------------------------------------------------------------------------
// ps and events --stats
// ---------------------------------------------------------------------------

#[test]
fn ps_lists_every_container_process_in_json_and_table() {
    let sb = Sandbox::new("ps");
    let host = sb.host_dir("shared");
    let id = sb.new_id();
    let config = config_with(&id, json!({}))
        .bind(&host, "/host", &[])
        .sh("sleep 1000 & sleep 1001 & touch /host/ready; wait");
    start_ready(&sb, &id, &config, &host);
    let init = init_pid(&sb, &id);
    sb.runtime(&["exec", "--detach", &id, "sleep", "1002"])
        .assert_success();
    wait_until("the exec'd process is listed", || {
        ps_json(&sb, &id).len() == 4
    });

    let pids = ps_json(&sb, &id);
    assert!(pids.contains(&init), "init {init} in {pids:?}");
    let mut commands: Vec<String> = pids.iter().map(|p| cmdline(*p)).collect();
    commands.sort();
    assert_eq!(
        &commands[1..],
        ["sleep 1000", "sleep 1001", "sleep 1002"],
        "{commands:?}"
    );
    assert!(commands[0].starts_with("sh -c"), "{commands:?}");
    // The runtime's view matches the kernel's, in the v1 pids hierarchy and
    // in the hybrid cgroup2 mount.
    assert_eq!(
        procs_in(&cgroup_dir("pids", &id)),
        pids,
        "v1 pids cgroup.procs"
    );
    if Path::new("/sys/fs/cgroup/unified").exists() {
        assert_eq!(
            procs_in(&cgroup_dir("unified", &id)),
            pids,
            "cgroup2 cgroup.procs"
        );
    }

    let table = sb.runtime(&["ps", &id]);
    table.assert_success();
    let mut lines = table.stdout.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|h| h == "PID")
        .unwrap_or_else(|| panic!("no PID column:\n{table}"));
    let rows: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
    let mut listed: Vec<i32> = rows
        .iter()
        .filter_map(|r| r.split_whitespace().nth(column)?.parse().ok())
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, pids, "table rows:\n{table}");
    assert!(rows.iter().any(|r| r.contains("sleep 1002")), "{table}");
}

#[test]
fn events_stats_report_real_usage() {
    let sb = Sandbox::new("events-stats");
    let host = sb.host_dir("shared");
    let id = sb.new_id();
    let config = config_with(&id, json!({"pids": {"limit": 50}}))
        .bind(&host, "/host", &[])
        .sh("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; \
             touch /host/ready; sleep 1000 & wait");
    start_ready(&sb, &id, &config, &host);
    wait_until("init and its sleep run", || ps_json(&sb, &id).len() == 2);

    let usage_before: u64 = host_file("cpuacct", &id, "cpuacct.usage").parse().unwrap();
    let data = stats(&sb, &id);
    let usage_after: u64 = host_file("cpuacct", &id, "cpuacct.usage").parse().unwrap();

    let cpu = num(&data, "/cpu/usage/total");
    assert!(cpu > 0, "{data}");
    assert!(
        (usage_before..=usage_after).contains(&cpu),
        "cpu total {cpu} is the cgroup's cpuacct.usage ({usage_before}..={usage_after})"
    );
    assert!(num(&data, "/memory/usage/usage") > 0, "{data}");
    assert_eq!(num(&data, "/pids/current"), 2, "{data}");
    assert_eq!(host_file("pids", &id, "pids.current"), "2");
    assert_eq!(num(&data, "/pids/limit"), 50, "{data}");
}

// ---------------------------------------------------------------------------
// Devices
// ---------------------------------------------------------------------------

#[test]
fn device_rules_allow_read_deny_write_and_deny_unlisted_devices() {
    // Device nodes are bind-mounted from the host, not listed in linux.devices,
    // so only linux.resources.devices decides (runtimes allow listed nodes and
    // /dev/null, /dev/zero and friends after the config's rules).
    for node in ["/dev/loop-control", "/dev/fuse"] {
        if !Path::new(node).exists() {
            eprintln!("skipping: host has no {node}");
            return;
        }
    }
    let sb = Sandbox::new("devices");
    let id = sb.new_id();
    let config = config_with(&id, json!({}))
        .push(
            "/linux/resources/devices",
            json!({"allow": true, "type": "c", "major": 10, "minor": 237, "access": "rwm"}),
        )
        .push(
            "/linux/resources/devices",
            json!({"allow": false, "type": "c", "major": 10, "minor": 237, "access": "w"}),
        )
        .bind(Path::new("/dev/loop-control"), "/dev/hc-loop", &[])
        .bind(Path::new("/dev/fuse"), "/dev/hc-fuse", &[])
        .sh(
            "try() { if ( eval \"$1\" ); then echo ok; else echo denied; fi; }; \
             try 'true < /dev/hc-loop'; \
             try 'true > /dev/hc-loop'; \
             try 'true < /dev/hc-fuse'; \
             try 'true > /dev/null'; \
             head -c 4 /dev/zero | wc -c",
        );
    let out = sb.run_id(&id, &config);
    out.assert_success();
    assert_eq!(
        out.stdout_lines(),
        vec!["ok", "denied", "denied", "ok", "4"],
        "loop-control read, loop-control write, fuse read, /dev/null write, /dev/zero read:\n{out}"
    );
    assert!(out.stderr.contains("Operation not permitted"), "{out}");
}

// ---------------------------------------------------------------------------
// kill --all
// ---------------------------------------------------------------------------

#[test]
fn kill_all_signals_every_process() {
    let sb = Sandbox::new("kill-all");
    let host = sb.host_dir("shared");
    let id = sb.new_id();
    let config = config_with(&id, json!({})).bind(&host, "/host", &[]).sh(
        "trap 'echo init >> /host/log' USR1; \
             for n in 1 2 3; do \
               sh -c \"trap 'echo child$n >> /host/log; exit 0' USR1; touch /host/child$n; \
                       while :; do sleep 0.1; done\" & \
             done; \
             touch /host/ready; \
             while :; do sleep 0.1; done",
    );
    start_ready(&sb, &id, &config, &host);
    for n in 1..=3 {
        wait_for_file(&host.join(format!("child{n}")));
    }
    let log = host.join("log");
    let read_log = || fs::read_to_string(&log).unwrap_or_default();

    // Without --all only init gets the signal.
    sb.kill(&id, "USR1").assert_success();
    wait_until("init logs USR1", || read_log().lines().any(|l| l == "init"));
    assert!(
        !read_log().contains("child"),
        "kill without --all reached children:\n{}",
        read_log()
    );

    sb.runtime(&["kill", "--all", &id, "USR1"]).assert_success();
    wait_until("every child logs USR1", || {
        let text = read_log();
        (1..=3).all(|n| text.lines().any(|l| l == format!("child{n}")))
    });
    wait_until("init logs USR1 again", || {
        read_log().lines().filter(|l| *l == "init").count() == 2
    });
    // Left: init and the sleep it may be waiting for.
    let init = init_pid(&sb, &id);
    wait_until("the children are gone", || {
        ps_json(&sb, &id)
            .iter()
            .all(|p| *p == init || cmdline(*p) == "sleep 0.1")
    });

    sb.runtime(&["kill", "--all", &id, "KILL"]).assert_success();
    sb.wait_status(&id, "stopped");
}

// ---------------------------------------------------------------------------
// Cgroup removal
// ---------------------------------------------------------------------------

#[test]
fn delete_removes_the_default_cgroup_from_every_hierarchy() {
    if !husk_only("delete_removes_the_default_cgroup_from_every_hierarchy") {
        return;
    }
    let sb = Sandbox::new("cgroup-everywhere");
    let host = sb.host_dir("shared");
    let id = sb.new_id();
    // No cgroupsPath: husk's default is /husk/<id>.
    let config = Config::runc_spec()
        .bind(&host, "/host", &[])
        .sh("cat /proc/self/cgroup > /host/cgroup; touch /host/ready; exec sleep 1000");
    start_ready(&sb, &id, &config, &host);
    let init = init_pid(&sb, &id);

    let all = hierarchies();
    assert!(
        all.iter().any(|h| h == "memory"),
        "v1 memory hierarchy expected: {all:?}"
    );
    for hierarchy in &all {
        let dir = cgroup_dir(hierarchy, &id);
        assert!(
            procs_in(&dir).contains(&init),
            "init {init} in {}",
            dir.display()
        );
    }
    if all.iter().any(|h| h == "unified") {
        // The hybrid cgroup2 mount: the container joined it too.
        let seen = read_host(&host.join("cgroup"));
        assert!(
            seen.lines().any(|l| l == format!("0::/husk/{id}")),
            "/proc/self/cgroup inside:\n{seen}"
        );
    }

    sb.kill(&id, "KILL").assert_success();
    sb.wait_status(&id, "stopped");
    sb.delete(&id).assert_success();
    assert_eq!(cgroup_dirs_left(&id), Vec::<PathBuf>::new());
    sb.assert_nothing_left(&id);
}

#[test]
fn delete_after_sigkill_of_init_leaves_no_cgroup() {
    let sb = Sandbox::new("sigkill-delete");
    let host = sb.host_dir("shared");
    let id = sb.new_id();
    let config = config_with(&id, json!({"pids": {"limit": 10}}))
        .bind(&host, "/host", &[])
        .sh("sleep 1000 & touch /host/ready; wait");
    start_ready(&sb, &id, &config, &host);
    assert!(!cgroup_dirs_left(&id).is_empty());

    kill(Pid::from_raw(init_pid(&sb, &id)), Signal::SIGKILL).unwrap();
    sb.wait_status(&id, "stopped");
    sb.delete(&id).assert_success();
    assert_eq!(cgroup_dirs_left(&id), Vec::<PathBuf>::new());
    sb.assert_nothing_left(&id);
}

#[test]
fn delete_after_sigkill_of_init_kills_what_is_left_without_a_pid_namespace() {
    let sb = Sandbox::new("sigkill-no-pidns");
    let host = sb.host_dir("shared");
    let id = sb.new_id();
    // Without a pid namespace the init's death does not take its children
    // along: they stay in the cgroup until delete kills them.
    let config = config_with(&id, json!({}))
        .remove_namespace("pid")
        .bind(&host, "/host", &[])
        .sh("sleep 1000 & echo $! > /host/child; touch /host/ready; wait");
    start_ready(&sb, &id, &config, &host);
    let child: i32 = read_host(&host.join("child")).parse().unwrap();

    kill(Pid::from_raw(init_pid(&sb, &id)), Signal::SIGKILL).unwrap();
    sb.wait_status(&id, "stopped");
    assert!(
        alive(child),
        "precondition: the child {child} outlives init"
    );

    sb.delete(&id).assert_success();
    assert!(
        !alive(child),
        "delete must kill the leftover process {child}"
    );
    assert_eq!(cgroup_dirs_left(&id), Vec::<PathBuf>::new());
    sb.assert_nothing_left(&id);
}

// ---------------------------------------------------------------------------
// Bad values
// ---------------------------------------------------------------------------

/// `create` with `resources` must fail, mention each of `mentions`, run no
/// user code and leave nothing behind.
#[track_caller]
fn assert_create_fails_cleanly(name: &str, resources: Value, mentions: &[&str]) {
    let sb = Sandbox::new(name);
    let host = sb.host_dir("shared");
    let id = sb.new_id();
    let config = config_with(&id, resources)
        .bind(&host, "/host", &[])
        .sh("touch /host/ran; exec sleep 1000");
    let out = sb.create(&id, &config, &[]);
    out.assert_failure();
    for needle in mentions {
        out.assert_stderr_contains(needle);
    }
    sb.runtime(&["state", &id]).assert_failure();
    assert!(!host.join("ran").exists(), "user code ran");
    assert_eq!(cgroup_dirs_left(&id), Vec::<PathBuf>::new());
    sb.assert_nothing_left(&id);
}

#[test]
fn cpuset_cpus_beyond_the_host_fail_cleanly() {
    assert_create_fails_cleanly(
        "bad-cpuset",
        json!({"cpu": {"cpus": "99"}}),
        &["cpuset.cpus", "99"],
    );
}

#[test]
fn cpu_quota_below_the_kernel_minimum_fails_cleanly() {
    // The kernel refuses CFS quotas under 1ms.
    assert_create_fails_cleanly(
        "bad-quota",
        json!({"cpu": {"quota": 500, "period": 100000}}),
        &["quota", "500"],
    );
}

#[test]
fn memory_swap_below_the_limit_fails_cleanly() {
    assert_create_fails_cleanly(
        "bad-swap",
        json!({"memory": {"limit": 32 * MIB, "swap": 16 * MIB}}),
        &["swap"],
    );
}

#[test]
fn unified_key_on_a_v1_host_fails_cleanly() {
    // husk-only: runc refuses any unified key on v1 without naming it.
    if !husk_conformance::runtime::husk_only("unified_key_on_a_v1_host_fails_cleanly") {
        return;
    }
    if !is_v1_host() {
        eprintln!("skipping: /sys/fs/cgroup is cgroup v2, where unified keys are valid");
        return;
    }
    assert_create_fails_cleanly(
        "bad-unified",
        json!({"unified": {"memory.high": "100000000"}}),
        &["unified", "memory.high"],
    );
}

#[test]
fn memory_limit_too_small_for_init_says_it_was_oom_killed() {
    // husk-only: runc reports the failed limit write instead (no kernel minimum on v1).
    if !husk_conformance::runtime::husk_only(
        "memory_limit_too_small_for_init_says_it_was_oom_killed",
    ) {
        return;
    }
    // No kernel minimum on v1: the limit is accepted, then the init process
    // is OOM-killed while it sets the container up. runc reports
    // "container init was OOM-killed (memory limit too low?)".
    assert_create_fails_cleanly("tiny-memory", json!({"memory": {"limit": 4096}}), &["oom"]);
}
