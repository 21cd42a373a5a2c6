//! A throwaway network world for husk's built-in networking (`io.husk.net.*`).
//!
//! ```text
//! containers ─ bridge ─[host ns]─ uplink0 198.51.100.1 ═══ eth0 198.51.100.2 [upstream ns]
//! ```
//!
//! The "host" is a network namespace of its own: husk runs inside it (`nsenter --net`), so its
//! bridges, veths and nftables table live and die there and never touch this machine's network.
//! The "upstream" namespace next door stands in for the internet; the host's default route
//! points at it and it has no route anywhere else, so no packet can leave the machine.
//!
//! husk is run with `nsenter --net=/run/netns/<host>`, never `ip netns exec`: the latter
//! remounts /sys and hides the cgroup mounts husk needs.
//!
//! Dropping a [`NetWorld`] force-deletes every container it created (inside the host
//! namespace, where their network lives), checks that nothing is left (state, cgroups, mounts,
//! processes, links, leases and other files under `<root>/net`, nft set and map elements),
//! deletes both namespaces, and panics if something was left.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::command::{Invocation, Output};
use crate::config::Config;
use crate::reaper;
use crate::runtime::runtime_path;
use crate::sandbox::{Sandbox, write_config_to};
use crate::wait::HANG_GUARD;

/// The host's address on its uplink (what upstream sees after masquerade).
pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The upstream namespace's address: "the internet".
pub const UPSTREAM_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The host end of the link to upstream.
pub const UPLINK: &str = "uplink0";

const NS_PREFIX: &str = "husk-nete-";

static SEQ: AtomicU32 = AtomicU32::new(0);

fn next_seq() -> u32 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// One interface of the host namespace, from `ip -j -d link show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    /// `bridge`, `veth`, ... (None for loopback).
    pub kind: Option<String>,
    /// The bridge it is attached to.
    pub master: Option<String>,
}

/// A host namespace, an upstream namespace and a sandbox; see the module docs.
pub struct NetWorld {
    sb: Sandbox,
    label: String,
    host: String,
    upstream: String,
    ids: Mutex<BTreeSet<String>>,
}

impl NetWorld {
    /// Builds the two namespaces and the link between them. `label` names ids and dirs.
    #[track_caller]
    pub fn new(label: &str) -> NetWorld {
        remove_stale_namespaces();
        let sb = Sandbox::new(label);
        let host = format!("{NS_PREFIX}{}-{}", std::process::id(), next_seq());
        let upstream = format!("{host}-up");
        // Made before the namespaces so that a failure below still deletes them (Drop).
        let world = NetWorld {
            sb,
            label: label
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(12)
                .collect(),
            host,
            upstream,
            ids: Mutex::new(BTreeSet::new()),
        };
        let (h, u) = (world.host.as_str(), world.upstream.as_str());
        let host_cidr = format!("{HOST_ADDR}/24");
        let upstream_cidr = format!("{UPSTREAM_ADDR}/24");
        let upstream_addr = UPSTREAM_ADDR.to_string();
        for args in [
            &["netns", "add", h][..],
            &["netns", "add", u],
            &["-n", h, "link", "set", "lo", "up"],
            &["-n", u, "link", "set", "lo", "up"],
            &[
                "-n", h, "link", "add", UPLINK, "type", "veth", "peer", "name", "eth0", "netns", u,
            ],
            &["-n", h, "addr", "add", &host_cidr, "dev", UPLINK],
            &["-n", u, "addr", "add", &upstream_cidr, "dev", "eth0"],
            &["-n", h, "link", "set", UPLINK, "up"],
            &["-n", u, "link", "set", "eth0", "up"],
            // Like a real host: everything not local goes upstream (which drops it).
            &["-n", h, "route", "add", "default", "via", &upstream_addr],
        ] {
            ip(args);
        }
        world
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sb
    }

    /// `/run/netns/<host>`: the namespace husk runs in.
    pub fn host_netns(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.host)
    }

    /// `/run/netns/<upstream>`: the internet.
    pub fn upstream_netns(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.upstream)
    }

    /// husk's network state dir: `<root>/net`.
    pub fn net_state_dir(&self) -> PathBuf {
        self.sb.root().join("net")
    }

    /// `nsenter --net=<host> husk --root <root> <args>`.
    pub fn husk_invocation(&self, args: &[&str]) -> Invocation {
        nsenter(&self.host_netns())
            .arg(runtime_path())
            .arg("--root")
            .arg(self.sb.root())
            .args(args.iter().copied())
    }

    /// The same command line as [`NetWorld::husk_invocation`], for a test that must spawn
    /// (and maybe kill) husk itself. nsenter execs husk (no fork for a network namespace),
    /// so the child's pid is husk's.
    pub fn husk_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.host_netns().display()))
            .arg(runtime_path())
            .arg("--root")
            .arg(self.sb.root())
            .args(args);
        cmd
    }

    /// Runs husk inside the host namespace.
    pub fn husk(&self, args: &[&str]) -> Output {
        let label = args.first().copied().unwrap_or("husk");
        self.sb.exec(self.husk_invocation(args), label)
    }

    /// Runs `argv` in the host namespace.
    pub fn in_host(&self, argv: &[&str]) -> Output {
        self.sb.exec(
            nsenter(&self.host_netns()).args(argv.iter().copied()),
            "in-host",
        )
    }

    /// Runs `argv` in the upstream namespace.
    pub fn in_upstream(&self, argv: &[&str]) -> Output {
        self.sb.exec(
            nsenter(&self.upstream_netns()).args(argv.iter().copied()),
            "in-upstream",
        )
    }

    /// Runs host program `argv` in the network namespace of container `id` (its init's).
    #[track_caller]
    pub fn in_container_netns(&self, id: &str, argv: &[&str]) -> Output {
        let ns = PathBuf::from(format!("/proc/{}/ns/net", self.pid(id)));
        self.sb
            .exec(nsenter(&ns).args(argv.iter().copied()), "in-container-ns")
    }

    /// A new unique container id, deleted when the world drops.
    pub fn new_id(&self) -> String {
        let id = format!("hn-{}-{}-{}", self.label, std::process::id(), next_seq());
        self.register(&id);
        id
    }

    /// Registers an id for the cleanup at drop.
    pub fn register(&self, id: &str) {
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
    }

    /// A fresh bundle (its own busybox rootfs) holding `config`.
    pub fn bundle(&self, config: &Config) -> PathBuf {
        let bundle = self.sb.extra_bundle(&format!("net-{}", next_seq()));
        write_config_to(&bundle, config);
        bundle
    }

    /// `husk create --bundle <bundle> <id>` (not checked).
    pub fn create(&self, id: &str, bundle: &Path) -> Output {
        self.register(id);
        let bundle = bundle.to_string_lossy();
        self.husk(&["create", "--bundle", &bundle, id])
    }

    /// Creates and starts a container from `bundle`; returns its id.
    #[track_caller]
    pub fn start_container_in(&self, bundle: &Path) -> String {
        let id = self.new_id();
        self.create(&id, bundle).assert_success();
        self.husk(&["start", &id]).assert_success();
        id
    }

    /// Creates and starts a container running `config` in a fresh bundle; returns its id.
    #[track_caller]
    pub fn start_container(&self, config: &Config) -> String {
        self.start_container_in(&self.bundle(config))
    }

    /// `husk exec <id> sh -c <script>`.
    pub fn exec(&self, id: &str, script: &str) -> Output {
        self.husk(&["exec", id, "sh", "-c", script])
    }

    /// `husk state <id>`, parsed.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        let out = self.husk(&["state", id]);
        out.assert_success();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("state output is not JSON ({e}):\n{out}"))
    }

    /// The container's init pid, from `husk state`.
    #[track_caller]
    pub fn pid(&self, id: &str) -> i32 {
        let state = self.state(id);
        state["pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 0)
            .unwrap_or_else(|| panic!("no pid in the state of {id}: {state}"))
    }

    /// The IPv4 address of the container's `eth0`, as the kernel has it.
    #[track_caller]
    pub fn address(&self, id: &str) -> Ipv4Addr {
        let out = self.in_container_netns(id, &["ip", "-j", "-4", "addr", "show", "dev", "eth0"]);
        out.assert_success();
        let parsed: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("ip -j output is not JSON ({e}):\n{out}"));
        let addrs: Vec<Ipv4Addr> = parsed
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a["local"].as_str()?.parse().ok())
            .collect();
        match addrs.as_slice() {
            [one] => *one,
            _ => {
                panic!("container {id}: expected one IPv4 address on eth0, found {addrs:?}\n{out}")
            }
        }
    }

    /// Adds a route in the upstream namespace back to `subnet` through the host, so upstream
    /// can answer a container whose traffic is not masqueraded.
    #[track_caller]
    pub fn route_upstream_to(&self, subnet: &str) {
        let via = HOST_ADDR.to_string();
        ip(&["-n", &self.upstream, "route", "add", subnet, "via", &via]);
    }

    /// The interfaces of the host namespace.
    #[track_caller]
    pub fn host_links(&self) -> Vec<Link> {
        self.try_host_links().unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_host_links(&self) -> Result<Vec<Link>, String> {
        let out = run(Command::new("ip").args(["-n", &self.host, "-j", "-d", "link", "show"]))?;
        let parsed: Value =
            serde_json::from_str(&out).map_err(|e| format!("ip -j link: not JSON ({e}): {out}"))?;
        Ok(parsed
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| Link {
                name: l["ifname"].as_str().unwrap_or_default().to_string(),
                kind: l["linkinfo"]["info_kind"].as_str().map(String::from),
                master: l["master"].as_str().map(String::from),
            })
            .collect())
    }

    /// Every regular file under `<root>/net` (leases, markers, resolv.conf files, records).
    pub fn net_state_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        collect_files(&self.net_state_dir(), &mut files);
        files.sort();
        files
    }

    /// The lease files: `<root>/net/ipam/<bridge>/<address>`.
    pub fn leases(&self) -> Vec<(String, Ipv4Addr)> {
        let mut leases: Vec<(String, Ipv4Addr)> = self
            .net_state_files()
            .iter()
            .filter(|p| {
                p.parent().and_then(Path::parent) == Some(&self.net_state_dir().join("ipam"))
            })
            .filter_map(|p| {
                let addr = p.file_name()?.to_str()?.parse().ok()?;
                let bridge = p.parent()?.file_name()?.to_str()?.to_string();
                Some((bridge, addr))
            })
            .collect();
        leases.sort();
        leases
    }

    /// Every element of every set and map in husk's `table ip husk` of the host namespace, as
    /// `<set>: <element JSON>`; empty if the table does not exist.
    #[track_caller]
    pub fn nft_elements(&self) -> Vec<String> {
        self.try_nft_elements().unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_nft_elements(&self) -> Result<Vec<String>, String> {
        let out = reaper::output(
            Command::new("nsenter")
                .arg(format!("--net={}", self.host_netns().display()))
                .args(["nft", "-j", "list", "table", "ip", "husk"]),
        )
        .map_err(|e| format!("run nft: {e}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("No such file or directory") {
                return Ok(Vec::new());
            }
            return Err(format!("nft list table ip husk failed: {err}"));
        }
        let parsed: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("nft -j output is not JSON: {e}"))?;
        let mut found = Vec::new();
        for item in parsed["nftables"].as_array().into_iter().flatten() {
            for kind in ["set", "map"] {
                let set = &item[kind];
                let name = set["name"].as_str().unwrap_or("?");
                for elem in set["elem"].as_array().into_iter().flatten() {
                    found.push(format!("{kind} {name}: {elem}"));
                }
            }
        }
        Ok(found)
    }

    /// What husk's networking left in the host namespace and under `<root>/net`: links other
    /// than `lo` and the uplink, files, nft elements. Empty means clean.
    pub fn network_leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        match self.try_host_links() {
            Ok(links) => found.extend(
                links
                    .iter()
                    .filter(|l| l.name != "lo" && l.name != UPLINK)
                    .map(|l| format!("link {l:?}")),
            ),
            Err(e) => found.push(format!("cannot list links: {e}")),
        }
        found.extend(
            self.net_state_files()
                .iter()
                .map(|p| format!("file {}", p.display())),
        );
        match self.try_nft_elements() {
            Ok(elements) => found.extend(elements.into_iter().map(|e| format!("nft element {e}"))),
            Err(e) => found.push(format!("cannot list nft elements: {e}")),
        }
        found
    }

    /// Panics unless [`NetWorld::network_leftovers`] is empty.
    #[track_caller]
    pub fn assert_network_clean(&self) {
        let left = self.network_leftovers();
        assert!(
            left.is_empty(),
            "husk's network left things behind: {left:#?}"
        );
    }

    /// Everything left: per container (state, cgroups, mounts, processes) and the network.
    pub fn leftovers(&self) -> Vec<String> {
        let mut found: Vec<String> = self
            .ids()
            .iter()
            .flat_map(|id| self.sb.leftovers(id))
            .collect();
        found.extend(self.network_leftovers());
        found.sort();
        found.dedup();
        found
    }

    /// Panics unless [`NetWorld::leftovers`] is empty.
    #[track_caller]
    pub fn assert_nothing_left(&self) {
        let left = self.leftovers();
        assert!(left.is_empty(), "left behind: {left:#?}");
    }

    fn ids(&self) -> Vec<String> {
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn cleanup(&self) -> Vec<String> {
        let ids = self.ids();
        for id in &ids {
            // Best effort: judged by the leftover scan below.
            let _ = self
                .husk_invocation(&["delete", "--force", id])
                .try_execute(&self.sb.dir().join(format!("cleanup-{}", next_seq())));
        }
        // delete may return while SIGKILLed processes are still exiting.
        let grace = Instant::now() + Duration::from_secs(10);
        while Instant::now() < grace
            && ids.iter().any(|id| {
                self.sb
                    .leftovers(id)
                    .iter()
                    .any(|l| l.starts_with("process"))
            })
        {
            thread::sleep(Duration::from_millis(20));
        }
        let problems = self.leftovers();
        for id in &ids {
            remove_cgroups_named(id);
        }
        problems
    }
}

impl Drop for NetWorld {
    fn drop(&mut self) {
        let problems = self.cleanup();
        // Deleting the namespaces removes whatever husk left in them (links, nft table).
        for ns in [&self.host, &self.upstream] {
            let _ = reaper::output(Command::new("ip").args(["netns", "delete", ns]));
        }
        if !problems.is_empty() && !thread::panicking() {
            panic!("cleanup check: husk left things behind after delete --force: {problems:#?}");
        }
        // The sandbox drops next: it unmounts and removes its dir.
    }
}

/// Retries `attempt` until it succeeds; panics with the last output after [`HANG_GUARD`].
/// For things that become true soon but not at once (a server starting to listen).
#[track_caller]
pub fn eventually(what: &str, mut attempt: impl FnMut() -> Output) -> Output {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let out = attempt();
        if out.success() {
            return out;
        }
        if Instant::now() > deadline {
            panic!("{what}: still failing after {HANG_GUARD:?}; last attempt:\n{out}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `f` on a short-lived thread inside the network namespace at `netns` and returns what
/// it made: a socket made there stays in that namespace, and the switch is per thread, so the
/// rest of the process never leaves its own namespace.
pub fn in_netns<T: Send>(netns: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    thread::scope(|s| {
        s.spawn(|| {
            let ns = fs::File::open(netns)?;
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the thread in the namespace panicked")))
    })
}

/// Makes host program `program` runnable in a container of `bundle`: copies it to
/// `<rootfs>/opt/<name>` and returns `config` with read-only binds of the host directories
/// holding its shared libraries (as `ldd` lists them), at the same paths.
#[track_caller]
pub fn with_host_program(config: Config, bundle: &Path, program: &Path) -> (Config, String) {
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| panic!("{} has no file name", program.display()));
    let dest = bundle.join("rootfs/opt").join(&name);
    if let Err(e) = fs::copy(program, &dest) {
        panic!("copy {} to {}: {e}", program.display(), dest.display());
    }
    let listed = run(Command::new("ldd").arg(program)).unwrap_or_else(|e| panic!("{e}"));
    let dirs: BTreeSet<PathBuf> = listed
        .split_whitespace()
        .filter(|t| t.starts_with('/'))
        .filter_map(|t| Path::new(t).parent().map(Path::to_path_buf))
        .collect();
    let mut config = config;
    for dir in dirs {
        let source = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        config = config.bind(&source, &dir.to_string_lossy(), &["ro", "nosuid", "nodev"]);
    }
    (config, format!("/opt/{name}"))
}

fn nsenter(netns: &Path) -> Invocation {
    Invocation::new(Path::new("nsenter")).arg(format!("--net={}", netns.display()))
}

/// Runs a command to completion; its stdout, or a message naming it and its stderr.
fn run(cmd: &mut Command) -> Result<String, String> {
    let line = format!("{cmd:?}");
    let out = reaper::output(cmd).map_err(|e| format!("run {line}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{line} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[track_caller]
fn ip(args: &[&str]) -> String {
    run(Command::new("ip").args(args)).unwrap_or_else(|e| panic!("{e}"))
}

fn collect_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_files(&entry.path(), found),
            Ok(_) => found.push(entry.path()),
            Err(_) => {}
        }
    }
}

/// Deletes the namespaces of test binaries that died without cleaning up.
fn remove_stale_namespaces() {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = reaper::output(Command::new("ip").args(["netns", "delete", &name]));
        }
    }
}

/// Kills what is left in cgroups named after `id` and removes them (deepest first), so a
/// failed test cannot poison the next.
fn remove_cgroups_named(id: &str) {
    let mut dirs = Vec::new();
    if let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") {
        for h in hierarchies.flatten() {
            collect_dirs_named(&h.path(), id, 3, &mut dirs);
        }
    }
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for dir in dirs {
        for _ in 0..50 {
            if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            if fs::remove_dir(&dir).is_ok() || !dir.exists() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn collect_dirs_named(dir: &Path, id: &str, depth: u32, found: &mut Vec<PathBuf>) {
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
        if entry.file_name().to_string_lossy().contains(id) {
            found.push(entry.path());
        }
        collect_dirs_named(&entry.path(), id, depth - 1, found);
    }
}
