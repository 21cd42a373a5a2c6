//! A private podman world driving the runtime under test.
//!
//! Every [`Podman`] has its own storage (`--root`), run dir (`--runroot`),
//! tmp dir and events file under the test binary's scratch dir, its own
//! `containers.conf` (ulimits this machine allows, cgroupfs, file events, no
//! network), and its own cgroup parent, so tests run in parallel and a
//! leftover is attributable. The image is imported offline from the busybox
//! rootfs. Dropping it removes every container and then checks that nothing
//! was left behind: runtime state entries, cgroups, mounts, processes.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;

use crate::engines::image::{self, IMAGE};
use crate::engines::packages::{self, PODMAN};
use crate::engines::pty::PtySession;
use crate::engines::run::{Cmd, Ran};
use crate::engines::scan;
use crate::reaper;
use crate::runtime::runtime_path;
use crate::sandbox::base_dir;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Dirs podman 4.3 makes outside its `--root`/`--runroot`/`--tmpdir` whatever
/// the config says: its network run dir and its blob-info cache.
const SYSTEM_DIRS: [&str; 2] = ["/run/containers", "/var/lib/containers"];

/// How many [`Podman`]s are alive, and which [`SYSTEM_DIRS`] existed before
/// the first one (those are never removed).
struct Live {
    count: usize,
    preexisting: Option<Vec<bool>>,
}

static LIVE: Mutex<Live> = Mutex::new(Live {
    count: 0,
    preexisting: None,
});

fn live() -> MutexGuard<'static, Live> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

fn enter() {
    let mut live = live();
    if live.preexisting.is_none() {
        live.preexisting = Some(SYSTEM_DIRS.iter().map(|d| Path::new(d).exists()).collect());
    }
    live.count += 1;
}

/// When the last podman goes, removes the system dirs podman made (they hold
/// only its empty network run dir and a cache file).
fn leave() {
    let mut live = live();
    live.count = live.count.saturating_sub(1);
    if live.count > 0 {
        return;
    }
    let preexisting = live.preexisting.clone().unwrap_or_default();
    for (dir, existed) in SYSTEM_DIRS.iter().zip(preexisting) {
        if !existed {
            let _ = fs::remove_dir_all(dir);
        }
    }
    // podman passes no --root (and its cleanup path would not pass one), so the runtime used
    // its default /run/husk: remove what is left there only if it is empty. rmdir, never a
    // recursive remove, so real state is never touched.
    if let Ok(bridges) = fs::read_dir("/run/husk/net/ipam") {
        for b in bridges.flatten() {
            let _ = fs::remove_dir(b.path());
        }
    }
    for dir in [
        "/run/husk/net/ipam",
        "/run/husk/net/dns",
        "/run/husk/net/hooks",
        "/run/husk/net",
        "/run/husk",
    ] {
        let _ = fs::remove_dir(dir);
    }
}

/// podman's config for the tests. Root lacks CAP_SYS_RESOURCE here and the
/// hard nofile limit is 20000: podman's default ulimits (1048576) would make
/// every runtime fail, so they are lowered to what the machine allows.
fn containers_conf(dir: &Path) -> String {
    format!(
        r#"[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"

[network]
network_config_dir = "{}"
"#,
        dir.join("networks").display()
    )
}

/// One test's podman.
pub struct Podman {
    dir: PathBuf,
    podman: PathBuf,
    runtime: PathBuf,
    cgroup_parent: String,
    netns: Option<PathBuf>,
}

impl Podman {
    /// A podman for test `name`, with the busybox image imported.
    #[track_caller]
    pub fn new(name: &str) -> Podman {
        Podman::build(name, None)
    }

    /// Like [`Podman::new`], with every podman command run inside the
    /// network namespace at `netns` (which the test owns and deletes).
    #[track_caller]
    pub fn in_netns(name: &str, netns: &Path) -> Podman {
        Podman::build(name, Some(netns.to_path_buf()))
    }

    #[track_caller]
    fn build(name: &str, netns: Option<PathBuf>) -> Podman {
        packages::require(PODMAN);
        reaper::ensure_started();
        let runtime = runtime_path().to_path_buf();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = base_dir().join(format!("podman-{name}-{seq}"));
        for sub in ["storage", "runroot", "tmp", "networks", "out"] {
            let d = dir.join(sub);
            if let Err(e) = fs::create_dir_all(&d) {
                panic!("create {}: {e}", d.display());
            }
        }
        let conf = dir.join("containers.conf");
        if let Err(e) = fs::write(&conf, containers_conf(&dir)) {
            panic!("write {}: {e}", conf.display());
        }
        enter();
        let podman = Podman {
            podman: packages::path_of(&PODMAN[0]),
            runtime,
            cgroup_parent: format!("/husk-eng-{}-{seq}", std::process::id()),
            netns,
            dir,
        };
        podman
            .cmd(&["import", &image::rootfs_tar().to_string_lossy(), IMAGE])
            .run()
            .assert_success();
        podman
    }

    /// The test's scratch dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cgroup parent every container of this podman gets (cgroupfs path).
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// `podman <global flags> args...`. For `run` and `create`, the test's
    /// `--cgroup-parent` is inserted after the verb.
    pub fn cmd(&self, args: &[&str]) -> Cmd {
        let dir = |sub: &str| self.dir.join(sub);
        let mut cmd = Cmd::new(&self.podman, &self.dir.join("out"))
            .current_dir(&self.dir)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(dir("storage"))
            .arg("--runroot")
            .arg(dir("runroot"))
            .arg("--tmpdir")
            .arg(dir("tmp"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file"])
            .arg("--network-config-dir")
            .arg(dir("networks"))
            .arg("--runtime")
            .arg(&self.runtime);
        if let Some((verb, rest)) = args.split_first() {
            cmd = cmd.arg(verb);
            if matches!(*verb, "run" | "create") {
                cmd = cmd.args(["--cgroup-parent", &self.cgroup_parent]);
            }
            cmd = cmd.args(rest);
        }
        if let Some(ns) = &self.netns {
            cmd = cmd.in_netns(ns);
        }
        cmd
    }

    /// Runs `podman args...` to completion.
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> Ran {
        self.cmd(args).run()
    }

    /// Runs `podman args...` with `input` on stdin.
    #[track_caller]
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Ran {
        self.cmd(args).stdin(input.as_bytes()).run()
    }

    /// Runs `podman args...` on a terminal of `rows` x `cols`.
    #[track_caller]
    pub fn pty(&self, args: &[&str], rows: u16, cols: u16) -> PtySession {
        PtySession::spawn(&self.cmd(args), rows, cols)
    }

    /// `podman inspect --format FORMAT name`, trimmed; panics on failure.
    #[track_caller]
    pub fn inspect(&self, name: &str, format: &str) -> String {
        let out = self.run(&["inspect", "--format", format, name]);
        out.assert_success();
        out.stdout.trim().to_string()
    }

    /// The full id of container `name`.
    #[track_caller]
    pub fn id_of(&self, name: &str) -> String {
        self.inspect(name, "{{.Id}}")
    }

    /// The cgroup path of container `id`: `<parent>/libpod-<id>`.
    pub fn container_cgroup(&self, id: &str) -> String {
        format!("{}/libpod-{id}", self.cgroup_parent)
    }

    /// The runtime's state dir for `id`: podman passes no `--root`, so it is
    /// the runtime's default, `/run/<runtime name>/<id>`.
    pub fn runtime_state(&self, id: &str) -> PathBuf {
        let name = self
            .runtime
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Path::new("/run").join(name).join(id)
    }

    /// Every container id this podman ever made: from its events file and
    /// its container list.
    pub fn known_ids(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        let lists = [
            self.cmd(&[
                "events",
                "--stream=false",
                "--filter",
                "type=container",
                "--format",
                "{{.ID}}",
            ]),
            self.cmd(&["ps", "-a", "--no-trunc", "-q"]),
        ];
        for list in lists {
            if let Ok(out) = list.try_run() {
                ids.extend(
                    out.stdout
                        .lines()
                        .map(str::trim)
                        .filter(|l| l.len() == 64)
                        .map(String::from),
                );
            }
        }
        ids
    }

    /// Everything the test's containers left behind: runtime state entries,
    /// container cgroups, mounts under the scratch dir, processes (monitors
    /// or container processes). Empty means clean.
    pub fn leftovers(&self) -> Vec<String> {
        let ids = self.known_ids();
        let mut found = Vec::new();
        for id in &ids {
            let state = self.runtime_state(id);
            if state.exists() {
                found.push(format!("runtime state {}", state.display()));
            }
        }
        found.extend(
            scan::cgroup_dirs(&self.cgroup_parent)
                .into_iter()
                .filter(|d| d.to_string_lossy().contains("libpod-"))
                .map(|d| format!("cgroup {}", d.display())),
        );
        found.extend(
            scan::mounts(&self.dir)
                .into_iter()
                .map(|m| format!("mount {}", m.display())),
        );
        let needles = self.needles(&ids);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        found.extend(
            scan::processes_after_grace(&self.dir, &needles, |_| false)
                .into_iter()
                .map(|p| format!("process {p}")),
        );
        found
    }

    fn needles(&self, ids: &BTreeSet<String>) -> Vec<String> {
        let mut needles = vec![self.dir.to_string_lossy().into_owned()];
        needles.extend(ids.iter().cloned());
        needles
    }

    /// Panics unless [`Podman::leftovers`] is empty.
    #[track_caller]
    pub fn assert_clean(&self) {
        let left = self.leftovers();
        assert!(left.is_empty(), "podman left things behind: {left:#?}");
    }

    fn cleanup(&mut self) -> Vec<String> {
        let ids = self.known_ids();
        let _ = self
            .cmd(&["rm", "--all", "--force", "--time", "0"])
            .try_run();
        let problems = self.leftovers();
        // Remove by hand what is left, so one bad test cannot poison others.
        let needles = self.needles(&ids);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        scan::kill_processes(&self.dir, &needles);
        for id in &ids {
            let state = self.runtime_state(id);
            if state.exists() {
                let _ = Cmd::new(&self.runtime, &self.dir.join("out"))
                    .args(["delete", "--force", id])
                    .try_run();
                let _ = fs::remove_dir_all(&state);
            }
        }
        // The parent and podman's `conmon` cgroup below it are podman's, not
        // the runtime's: they go without being reported.
        let stuck = scan::remove_cgroups(&self.cgroup_parent);
        if !stuck.is_empty() {
            eprintln!("warning: cgroups would not go: {stuck:?}");
        }
        if !scan::remove_tree(&self.dir) {
            // Storage may be busy for a moment after the last container went.
            thread::sleep(std::time::Duration::from_millis(200));
            if !scan::remove_tree(&self.dir) {
                eprintln!("warning: could not remove {}", self.dir.display());
            }
        }
        problems
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let problems = self.cleanup();
        leave();
        if !problems.is_empty() && !thread::panicking() {
            panic!("cleanup check: podman and the runtime left things behind: {problems:#?}");
        }
    }
}
