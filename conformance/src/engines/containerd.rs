//! A private containerd daemon driving the runtime under test through its
//! runc shim (`ctr run --runc-binary RUNTIME`).
//!
//! Every [`Containerd`] runs its own daemon with root, state and sockets in
//! the test binary's scratch dir, no CRI plugin, and a namespace of its own
//! (so the default cgroup paths `/<namespace>/<id>` are its own too). The
//! image is imported offline from an OCI layout tarball. Dropping it deletes
//! every task and container, checks that nothing was left behind (runtime
//! state, cgroups, mounts, shims and container processes, shim sockets),
//! then stops the daemon and removes its dirs.
//!
//! The runc shim of containerd 1.6 puts its sockets under the fixed dir
//! `/run/containerd/s`; tests are serialized so that dir can be removed
//! safely at the end of each one when this test made it.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::engines::image;
use crate::engines::packages::{self, CONTAINERD};
use crate::engines::pty::PtySession;
use crate::engines::run::{Cmd, Ran, wait_child};
use crate::engines::scan;
use crate::reaper;
use crate::runtime::runtime_path;
use crate::sandbox::base_dir;
use crate::wait::wait_until;

static SEQ: AtomicU32 = AtomicU32::new(0);
static SERIAL: Mutex<()> = Mutex::new(());

/// The shim's fixed socket dir and its parent.
const SHIM_SOCKETS: &str = "/run/containerd/s";
const RUN_CONTAINERD: &str = "/run/containerd";

fn shim_sockets() -> BTreeSet<PathBuf> {
    fs::read_dir(SHIM_SOCKETS)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

fn config_toml(dir: &Path) -> String {
    let p = |sub: &str| dir.join(sub).display().to_string();
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = "{debug}"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
        root = p("root"),
        state = p("state"),
        sock = p("c.sock"),
        debug = p("debug.sock"),
        opt = p("opt"),
    )
}

/// How the daemon is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In this machine's mount namespace.
    Host,
    /// In a private mount namespace where the `hugetlb` cgroup hierarchy,
    /// which this host has but does not mount, is mounted as well: the shim's
    /// cgroup library refuses to load a v1 cgroup while any hierarchy listed
    /// in /proc/PID/cgroup is unmounted, and then `ctr task metrics` has
    /// nothing to report, whatever the runtime. See `engines/containerd-in-mountns.sh`.
    PrivateMountsWithHugetlb,
}

/// One test's containerd.
pub struct Containerd {
    dir: PathBuf,
    ns: String,
    runtime: PathBuf,
    ctr: PathBuf,
    daemon: Option<Child>,
    mode: Mode,
    run_containerd_existed: bool,
    shim_sockets_before: BTreeSet<PathBuf>,
    _serial: MutexGuard<'static, ()>,
}

impl Containerd {
    /// Starts a daemon for test `name` and imports the busybox image.
    #[track_caller]
    pub fn start(name: &str) -> Containerd {
        Containerd::start_in(name, Mode::Host)
    }

    /// Like [`Containerd::start`], choosing how the daemon runs.
    #[track_caller]
    pub fn start_in(name: &str, mode: Mode) -> Containerd {
        packages::require(CONTAINERD);
        reaper::ensure_started();
        let runtime = runtime_path().to_path_buf();
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = base_dir().join(format!("ctd-{name}-{seq}"));
        for sub in ["root", "state", "runc", "fifo", "opt", "out"] {
            let d = dir.join(sub);
            if let Err(e) = fs::create_dir_all(&d) {
                panic!("create {}: {e}", d.display());
            }
        }
        let config = dir.join("config.toml");
        if let Err(e) = fs::write(&config, config_toml(&dir)) {
            panic!("write {}: {e}", config.display());
        }
        let mut ctd = Containerd {
            ns: format!("husktest-{}-{seq}", std::process::id()),
            ctr: packages::path_of(&CONTAINERD[1]),
            runtime,
            daemon: None,
            mode,
            run_containerd_existed: Path::new(RUN_CONTAINERD).exists(),
            shim_sockets_before: shim_sockets(),
            _serial: serial,
            dir,
        };
        ctd.spawn_daemon(&config, mode);
        ctd.cmd(&["images", "import", &image::oci_archive().to_string_lossy()])
            .run()
            .assert_success();
        ctd
    }

    #[track_caller]
    fn spawn_daemon(&mut self, config: &Path, mode: Mode) {
        let log_path = self.log_path();
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));
        let containerd = packages::path_of(&CONTAINERD[0]);
        let mut cmd = match mode {
            Mode::Host => {
                let mut c = Command::new(&containerd);
                c.arg("--config").arg(config);
                c
            }
            Mode::PrivateMountsWithHugetlb => {
                let script = image::engines_dir().join("containerd-in-mountns.sh");
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "--", "sh"])
                    .arg(script)
                    .arg(self.dir.join("cgroup-view"))
                    .arg(&containerd)
                    .arg("--config")
                    .arg(config);
                c
            }
        };
        cmd.stdin(Stdio::null()).current_dir(&self.dir);
        match log.try_clone() {
            Ok(copy) => cmd.stdout(copy),
            Err(e) => panic!("dup {}: {e}", log_path.display()),
        };
        cmd.stderr(log);
        let child = reaper::spawn_owned(&mut cmd)
            .unwrap_or_else(|e| panic!("cannot start containerd: {e}"));
        self.daemon = Some(child);
        let sock = self.socket();
        wait_until("containerd answers on its socket", || {
            if let Some(d) = self.daemon.as_mut()
                && let Ok(Some(status)) = d.try_wait()
            {
                panic!(
                    "containerd exited ({status}) before serving; its log:\n{}",
                    fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            sock.exists()
                && Cmd::new(&self.ctr, &self.dir.join("out"))
                    .arg("--address")
                    .arg(&sock)
                    .arg("version")
                    .try_run()
                    .is_ok_and(|r| r.success())
        });
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("c.sock")
    }

    /// The daemon's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The namespace every command uses.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// The cgroup path ctr gives container `id`: `/<namespace>/<id>`.
    pub fn container_cgroup(&self, id: &str) -> String {
        format!("/{}/{id}", self.ns)
    }

    /// The runtime's `--root` for this namespace (the shim passes
    /// `<runc-root>/<namespace>`).
    pub fn runtime_root(&self) -> PathBuf {
        self.dir.join("runc").join(&self.ns)
    }

    /// `ctr --address SOCK -n NS args...`. `run` gets the runtime
    /// (`--runc-binary`), its root and a private fifo dir after the verb;
    /// `task exec` gets the fifo dir.
    pub fn cmd(&self, args: &[&str]) -> Cmd {
        let mut cmd = Cmd::new(&self.ctr, &self.dir.join("out"))
            .current_dir(&self.dir)
            .arg("--address")
            .arg(self.socket())
            .args(["-n", &self.ns]);
        let fifo = self.dir.join("fifo");
        match args {
            ["run", rest @ ..] => {
                cmd = cmd
                    .arg("run")
                    .arg("--runc-binary")
                    .arg(&self.runtime)
                    .arg("--runc-root")
                    .arg(self.dir.join("runc"))
                    .arg("--fifo-dir")
                    .arg(&fifo)
                    .args(rest);
            }
            [task @ ("task" | "t" | "tasks"), "exec", rest @ ..] => {
                cmd = cmd
                    .args([task, &"exec"])
                    .arg("--fifo-dir")
                    .arg(&fifo)
                    .args(rest);
            }
            _ => cmd = cmd.args(args),
        }
        cmd
    }

    /// Runs `ctr args...` to completion.
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> Ran {
        self.cmd(args).run()
    }

    /// Runs `ctr args...` with `input` on stdin.
    #[track_caller]
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Ran {
        self.cmd(args).stdin(input.as_bytes()).run()
    }

    /// Runs `ctr args...` on a terminal of `rows` x `cols`.
    #[track_caller]
    pub fn pty(&self, args: &[&str], rows: u16, cols: u16) -> PtySession {
        PtySession::spawn(&self.cmd(args), rows, cols)
    }

    /// The status column of `ctr task ls` for `id` (RUNNING, PAUSED, STOPPED),
    /// or None when there is no such task.
    pub fn task_status(&self, id: &str) -> Option<String> {
        let out = self.cmd(&["task", "ls"]).try_run().ok()?;
        out.stdout.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(id)).then(|| words.nth(1).map(String::from))?
        })
    }

    /// Polls `ctr task ls` until `id` reports `status`.
    #[track_caller]
    pub fn wait_task_status(&self, id: &str, status: &str) {
        wait_until(&format!("task {id} is {status}"), || {
            self.task_status(id).as_deref() == Some(status)
        });
    }

    fn container_ids(&self) -> Vec<String> {
        self.cmd(&["containers", "ls", "-q"])
            .try_run()
            .map(|r| r.stdout_lines().into_iter().map(String::from).collect())
            .unwrap_or_default()
    }

    fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// Everything left behind by deleted containers: runtime state entries,
    /// container cgroups, mounts under the scratch dir, shims and container
    /// processes. Empty means clean. (The daemon itself does not count.)
    pub fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        let root = self.runtime_root();
        for entry in fs::read_dir(&root).into_iter().flatten().flatten() {
            found.push(format!("runtime state {}", entry.path().display()));
        }
        let ns_cgroup = format!("/{}", self.ns);
        found.extend(
            scan::cgroup_dirs_in(&self.cgroup_root(), &ns_cgroup)
                .into_iter()
                .filter(|d| !d.ends_with(&self.ns))
                .map(|d| format!("cgroup {}", d.display())),
        );
        let mounts = match (self.mode, self.daemon_pid()) {
            (Mode::PrivateMountsWithHugetlb, Some(pid)) => scan::mounts_of(pid, &self.dir),
            _ => scan::mounts(&self.dir),
        };
        found.extend(
            mounts
                .into_iter()
                .filter(|m| !m.starts_with(self.dir.join("cgroup-view")))
                .map(|m| format!("mount {}", m.display())),
        );
        let daemon = self.daemon_pid().map(|p| p.to_string());
        let dir = self.dir.to_string_lossy().into_owned();
        let ns_flag = format!("-namespace {}", self.ns);
        found.extend(
            scan::processes_after_grace(&self.dir, &[&dir, &ns_flag], |p| {
                self.is_daemon_line(p, daemon.as_deref())
            })
            .into_iter()
            .map(|p| format!("process {p}")),
        );
        found
    }

    /// Where the daemon sees the cgroup hierarchies: its own mount namespace's
    /// /sys/fs/cgroup, through /proc while it runs.
    fn cgroup_root(&self) -> PathBuf {
        match (self.mode, self.daemon_pid()) {
            (Mode::PrivateMountsWithHugetlb, Some(pid)) => {
                PathBuf::from(format!("/proc/{pid}/root/sys/fs/cgroup"))
            }
            _ => PathBuf::from("/sys/fs/cgroup"),
        }
    }

    /// The daemon, or the `unshare`/`sh` wrapper that became it.
    fn is_daemon_line(&self, line: &str, daemon: Option<&str>) -> bool {
        let pid = line.split(' ').next();
        pid.is_some() && pid == daemon
            || line.contains("containerd --config")
                && line.contains(&*self.dir.to_string_lossy())
                && !line.contains("shim")
    }

    /// Panics unless [`Containerd::leftovers`] is empty.
    #[track_caller]
    pub fn assert_clean(&self) {
        let left = self.leftovers();
        assert!(
            left.is_empty(),
            "containerd and the runtime left things behind: {left:#?}"
        );
    }

    fn remove_all_containers(&self) {
        for id in self.container_ids() {
            let _ = self.cmd(&["task", "kill", "-s", "KILL", &id]).try_run();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.task_status(&id).as_deref(), Some("RUNNING" | "PAUSED"))
                && Instant::now() < deadline
            {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = self.cmd(&["task", "delete", "--force", &id]).try_run();
            let _ = self.cmd(&["containers", "rm", &id]).try_run();
        }
    }

    fn stop_daemon(&mut self) {
        let Some(mut child) = self.daemon.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if wait_child(&mut child, Duration::from_secs(15)).is_err() {
            eprintln!("warning: containerd did not stop on SIGTERM; killed it");
        }
    }

    /// Removes /run/containerd/s (and /run/containerd) when this test made
    /// them and they are empty; reports shim sockets left in them.
    fn shim_socket_leftovers(&self) -> Vec<String> {
        let now = shim_sockets();
        let sockets: Vec<String> = now
            .difference(&self.shim_sockets_before)
            .map(|p| format!("shim socket {}", p.display()))
            .collect();
        if !self.run_containerd_existed && now.is_empty() {
            let _ = fs::remove_dir(SHIM_SOCKETS);
            let _ = fs::remove_dir(Path::new(RUN_CONTAINERD).join("fifo"));
            let _ = fs::remove_dir(RUN_CONTAINERD);
        }
        sockets
    }

    fn cleanup(&mut self) -> Vec<String> {
        self.remove_all_containers();
        let mut problems = self.leftovers();
        // The private namespace's cgroups (hugetlb) are reachable only while
        // the daemon lives.
        let stuck = scan::remove_cgroups_in(&self.cgroup_root(), &format!("/{}", self.ns));
        if !stuck.is_empty() {
            eprintln!("warning: cgroups would not go: {stuck:?}");
        }
        self.stop_daemon();
        let dir = self.dir.to_string_lossy().into_owned();
        let ns_flag = format!("-namespace {}", self.ns);
        scan::kill_processes(&self.dir, &[&dir, &ns_flag]);
        problems.extend(self.shim_socket_leftovers());
        let stuck = scan::remove_cgroups(&format!("/{}", self.ns));
        if !stuck.is_empty() {
            eprintln!("warning: cgroups would not go: {stuck:?}");
        }
        if !scan::remove_tree(&self.dir) {
            eprintln!("warning: could not remove {}", self.dir.display());
        }
        problems
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let problems = self.cleanup();
        if !problems.is_empty() && !thread::panicking() {
            panic!("cleanup check: containerd and the runtime left things behind: {problems:#?}");
        }
    }
}
