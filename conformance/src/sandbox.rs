//! One test's private world: a temp dir with its own `--root`, a bundle with a
//! busybox rootfs, host-side dirs, and a guard that cleans up on drop.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, umount2};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::command::{Invocation, Output};
use crate::config::Config;
use crate::mountinfo::mounts_under;
use crate::reaper;
use crate::rootfs;
use crate::runtime::runtime_path;
use crate::wait::wait_until;

const BASE_PREFIX: &str = "husk-conf-";

static SEQ: AtomicU32 = AtomicU32::new(0);

fn next_seq() -> u32 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// This test binary's scratch dir: `$TMPDIR/husk-conf-<pid>`, removed at exit.
pub fn base_dir() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let tmp = std::env::temp_dir();
        remove_stale_base_dirs(&tmp);
        let base = tmp.join(format!("{BASE_PREFIX}{}", std::process::id()));
        if let Err(e) = fs::create_dir_all(&base) {
            panic!("create {}: {e}", base.display());
        }
        // Container users other than root (user namespaces) must reach the rootfs.
        let _ = fs::set_permissions(&base, fs::Permissions::from_mode(0o755));
        let _ = BASE_AT_EXIT.set(base.clone());
        register_exit_cleanup();
        base
    })
}

fn register_exit_cleanup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        extern "C" fn remove_base_at_exit() {
            if let Some(base) = BASE_AT_EXIT.get() {
                remove_tree_safely(base);
            }
        }
        // SAFETY: registers a plain `extern "C" fn()` with no captured state;
        // it only runs at process exit, after the test harness finished.
        unsafe {
            libc::atexit(remove_base_at_exit);
        }
    });
}

static BASE_AT_EXIT: OnceLock<PathBuf> = OnceLock::new();

/// Removes scratch dirs left by test binaries that died without cleaning up.
fn remove_stale_base_dirs(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(BASE_PREFIX)) else {
            continue;
        };
        if pid
            .parse::<u32>()
            .is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        {
            remove_tree_safely(&entry.path());
        }
    }
}

/// Unmounts whatever is mounted under `dir`, then deletes it, unless a mount
/// refuses to go: deleting through a bind mount would delete host files.
fn remove_tree_safely(dir: &Path) -> bool {
    for mount in mounts_under(dir).iter().rev() {
        let _ = umount2(mount, MntFlags::MNT_DETACH);
    }
    if !mounts_under(dir).is_empty() {
        return false;
    }
    fs::remove_dir_all(dir).is_ok() || !dir.exists()
}

/// A per-test scratch world. Drop cleans up and checks nothing was left.
pub struct Sandbox {
    name: String,
    dir: PathBuf,
    root: PathBuf,
    bundle: PathBuf,
    logs: PathBuf,
    ids: Mutex<BTreeSet<String>>,
}

impl Sandbox {
    /// Makes a sandbox with a populated bundle rootfs. `name` labels dirs and ids.
    pub fn new(name: &str) -> Sandbox {
        // Resolve the runtime first: a missing binary should fail with its own message.
        let _ = runtime_path();
        reaper::ensure_started();
        let name = sanitize(name);
        let dir = base_dir().join(format!("{name}-{}", next_seq()));
        let root = dir.join("state");
        let bundle = dir.join("bundle");
        let logs = dir.join("logs");
        for d in [&dir, &root, &bundle, &logs] {
            if let Err(e) = fs::create_dir_all(d) {
                panic!("create {}: {e}", d.display());
            }
        }
        for d in [&dir, &bundle] {
            let _ = fs::set_permissions(d, fs::Permissions::from_mode(0o755));
        }
        let _ = fs::set_permissions(&root, fs::Permissions::from_mode(0o700));
        let rootfs_dir = bundle.join("rootfs");
        if let Err(e) = rootfs::populate(&rootfs_dir) {
            panic!("populate {}: {e}", rootfs_dir.display());
        }
        Sandbox {
            name,
            dir,
            root,
            bundle,
            logs,
            ids: Mutex::new(BTreeSet::new()),
        }
    }

    /// The sandbox's temp dir; everything the test makes lives below it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `--root` state dir given to every runtime call.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn bundle(&self) -> &Path {
        &self.bundle
    }

    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    /// A fresh host-side dir (mode 0755) for bind mounts, hook logs and such.
    pub fn host_dir(&self, name: &str) -> PathBuf {
        let path = self.dir.join("host").join(name);
        if let Err(e) = fs::create_dir_all(&path) {
            panic!("create {}: {e}", path.display());
        }
        for p in [self.dir.join("host"), path.clone()] {
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o755));
        }
        path
    }

    /// Another bundle dir with its own populated rootfs.
    pub fn extra_bundle(&self, name: &str) -> PathBuf {
        let bundle = self.dir.join(format!("bundle-{}", sanitize(name)));
        if let Err(e) = rootfs::populate(&bundle.join("rootfs")) {
            panic!("populate {}: {e}", bundle.display());
        }
        let _ = fs::set_permissions(&bundle, fs::Permissions::from_mode(0o755));
        bundle
    }

    /// A new unique container id, registered for cleanup.
    pub fn new_id(&self) -> String {
        let short: String = self.name.chars().take(20).collect();
        let id = format!("hc-{short}-{}-{}", std::process::id(), next_seq());
        self.register(&id);
        id
    }

    /// Registers an id the test made up itself, so drop cleans it up.
    pub fn register(&self, id: &str) {
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
    }

    /// Writes `config` as `config.json` into the main bundle.
    pub fn write_config(&self, config: &Config) {
        write_config_to(&self.bundle, config);
    }

    /// The runtime with `--root <root>` and then `args`.
    pub fn call(&self, args: &[&str]) -> Invocation {
        self.call_with_globals(&[], args)
    }

    /// The runtime with `--root <root>`, extra global flags, then `args`.
    pub fn call_with_globals(&self, globals: &[&str], args: &[&str]) -> Invocation {
        Invocation::new(runtime_path())
            .arg("--root")
            .arg(&self.root)
            .args(globals.iter().copied())
            .args(args.iter().copied())
    }

    /// Runs an invocation, capturing its output under the sandbox's log dir.
    pub fn exec(&self, invocation: Invocation, label: &str) -> Output {
        invocation.execute(&self.out_prefix(label))
    }

    fn out_prefix(&self, label: &str) -> PathBuf {
        self.logs
            .join(format!("{:03}-{}", next_seq(), sanitize(label)))
    }

    /// `runtime --root R <args>`.
    pub fn runtime(&self, args: &[&str]) -> Output {
        let label = args.first().copied().unwrap_or("runtime");
        self.exec(self.call(args), label)
    }

    /// Writes `config` and runs it in the foreground with a new id:
    /// `run --bundle B ID`. Returns the container's exit code and output.
    pub fn run(&self, config: &Config) -> Output {
        let id = self.new_id();
        self.run_id(&id, config)
    }

    /// Like [`Sandbox::run`] with a chosen id.
    pub fn run_id(&self, id: &str, config: &Config) -> Output {
        self.register(id);
        self.write_config(config);
        let bundle = self.bundle.to_string_lossy().into_owned();
        self.runtime(&["run", "--bundle", &bundle, id])
    }

    /// Writes `config` and runs `create --bundle B [extra...] ID`.
    pub fn create(&self, id: &str, config: &Config, extra: &[&str]) -> Output {
        self.register(id);
        self.write_config(config);
        let bundle = self.bundle.to_string_lossy().into_owned();
        let mut args = vec!["create", "--bundle", &bundle];
        args.extend_from_slice(extra);
        args.push(id);
        self.runtime(&args)
    }

    /// `create` that must succeed; returns its output (the container's stdio
    /// files: read them later with [`Output::stdout_now`]).
    #[track_caller]
    pub fn create_ok(&self, id: &str, config: &Config) -> Output {
        let out = self.create(id, config, &[]);
        out.assert_success();
        out
    }

    pub fn start(&self, id: &str) -> Output {
        self.runtime(&["start", id])
    }

    /// `state ID` parsed; panics if the command fails or prints no JSON.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        let out = self.runtime(&["state", id]);
        out.assert_success();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("state output is not JSON ({e}):\n{out}"))
    }

    /// The `status` field of `state ID`, or None if `state` fails.
    pub fn status(&self, id: &str) -> Option<String> {
        let out = self.runtime(&["state", id]);
        if !out.success() {
            return None;
        }
        let value: Value = serde_json::from_str(&out.stdout).ok()?;
        value.get("status")?.as_str().map(String::from)
    }

    pub fn kill(&self, id: &str, signal: &str) -> Output {
        self.runtime(&["kill", id, signal])
    }

    pub fn delete(&self, id: &str) -> Output {
        self.runtime(&["delete", id])
    }

    pub fn delete_force(&self, id: &str) -> Output {
        self.runtime(&["delete", "--force", id])
    }

    /// Polls `state` until the container reports `status`.
    pub fn wait_status(&self, id: &str, status: &str) {
        wait_until(&format!("container {id} is {status}"), || {
            self.status(id).as_deref() == Some(status)
        });
    }

    /// Creates, starts and waits for a container to stop; returns the create
    /// output, whose files hold what the container printed.
    #[track_caller]
    pub fn create_start_wait(&self, id: &str, config: &Config) -> Output {
        let created = self.create_ok(id, config);
        self.start(id).assert_success();
        self.wait_status(id, "stopped");
        created
    }

    /// Everything `id` left behind: state entries under `--root`, cgroup dirs
    /// named after it, processes whose root is inside the sandbox, and mounts
    /// under the sandbox dir. Empty means clean.
    pub fn leftovers(&self, id: &str) -> Vec<String> {
        let mut found = Vec::new();
        found.extend(
            state_entries(&self.root, id)
                .iter()
                .map(|p| format!("state entry {}", p.display())),
        );
        found.extend(
            cgroup_dirs(id)
                .iter()
                .map(|p| format!("cgroup {}", p.display())),
        );
        found.extend(
            self.leftover_mounts()
                .iter()
                .map(|p| format!("mount {}", p.display())),
        );
        found.extend(
            self.leftover_processes()
                .iter()
                .map(|p| format!("process {p}")),
        );
        found
    }

    /// Panics unless [`Sandbox::leftovers`] is empty for `id`.
    #[track_caller]
    pub fn assert_nothing_left(&self, id: &str) {
        let left = self.leftovers(id);
        assert!(
            left.is_empty(),
            "container {id} left things behind: {left:#?}"
        );
    }

    fn leftover_mounts(&self) -> Vec<PathBuf> {
        mounts_under(&self.dir)
    }

    /// Live processes whose root dir is inside this sandbox (container processes).
    fn leftover_processes(&self) -> Vec<i32> {
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                fs::read_link(format!("/proc/{pid}/root"))
                    .is_ok_and(|root| root.starts_with(&self.dir))
            })
            .collect()
    }

    fn cleanup(&mut self) -> Vec<String> {
        let ids: Vec<String> = self
            .ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        for id in &ids {
            // Best effort: the result is judged by the leftover scan below.
            let _ = self
                .call(&["delete", "--force", id])
                .try_execute(&self.out_prefix("cleanup-delete"));
        }
        // The runtime may return while SIGKILLed processes are still exiting.
        let grace = Instant::now() + Duration::from_secs(10);
        while !self.leftover_processes().is_empty() && Instant::now() < grace {
            thread::sleep(Duration::from_millis(20));
        }
        let mut problems: Vec<String> = ids.iter().flat_map(|id| self.leftovers(id)).collect();
        problems.sort();
        problems.dedup();
        self.force_cleanup(&ids);
        problems
    }

    /// Removes by hand what the runtime left, so one bad test cannot poison others.
    fn force_cleanup(&self, ids: &[String]) {
        for pid in self.leftover_processes() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for id in ids {
            for dir in cgroup_dirs(id).iter().rev() {
                remove_cgroup(dir);
            }
        }
        if !remove_tree_safely(&self.dir) {
            eprintln!(
                "warning: could not remove {} (mounts remain)",
                self.dir.display()
            );
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let problems = self.cleanup();
        if !problems.is_empty() && !thread::panicking() {
            panic!(
                "cleanup check: the runtime left things behind after delete --force: {problems:#?}"
            );
        }
    }
}

/// Writes `config` as `bundle/config.json`.
pub fn write_config_to(bundle: &Path, config: &Config) {
    let path = bundle.join("config.json");
    if let Err(e) = fs::write(&path, config.to_json_string()) {
        panic!("write {}: {e}", path.display());
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Entries under the state root whose name mentions `id`.
fn state_entries(root: &Path, id: &str) -> Vec<PathBuf> {
    fs::read_dir(root)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().contains(id))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Cgroup dirs (up to 3 levels below each hierarchy) whose name mentions `id`.
fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    for hierarchy in hierarchies.flatten() {
        collect_named(&hierarchy.path(), id, 3, &mut found);
    }
    if found.is_empty() {
        // A pure cgroup2 host has the hierarchy at /sys/fs/cgroup itself.
        collect_named(Path::new("/sys/fs/cgroup"), id, 3, &mut found);
        found.dedup();
    }
    found
}

fn collect_named(dir: &Path, id: &str, depth: u32, found: &mut Vec<PathBuf>) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        if entry.file_name().to_string_lossy().contains(id) {
            found.push(path.clone());
        }
        collect_named(&path, id, depth - 1, found);
    }
}

fn remove_cgroup(dir: &Path) {
    for _ in 0..50 {
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
