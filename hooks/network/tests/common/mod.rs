//! Test rig for root tests: every test body runs in a re-executed copy of the test binary inside
//! a fresh network + mount namespace (the "host"), so links, nft tables, sysctls and mounts it
//! makes die with that process. "Containers" and "the internet" are processes in their own
//! network (+ mount) namespaces, killed when their guard drops or when the test process dies.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use husk_net::{NetworkRecord, NetworkRequest, Target};

const INNER: &str = "HUSK_NET_TEST_INNER";

/// Run `body` in a new network and mount namespace, in a fresh process. Skips (with a note)
/// when not root.
pub fn isolated(name: &str, body: fn()) {
    if std::env::var(INNER).as_deref() == Ok(name) {
        body();
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping {name}: needs root");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(INNER, name)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "isolated run of {name} failed:\n{text}"
    );
}

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("husk-net-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A process in new namespaces, killed (SIGKILL) and reaped on drop, and when the test process
/// dies (parent-death signal).
pub struct NsProcess {
    pub child: Child,
}

impl NsProcess {
    /// `unshare <flags> sleep`: waits until the process sits in its new namespaces.
    pub fn start(flags: &[&str]) -> NsProcess {
        let mut cmd = Command::new("unshare");
        cmd.args(flags).args([
            "--",
            "/bin/busybox",
            "sh",
            "-c",
            "echo ready; exec /bin/busybox sleep 600",
        ]);
        cmd.stdout(Stdio::piped()).stdin(Stdio::null());
        // SAFETY: prctl in the pre-exec child only sets its parent-death signal.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        NsProcess { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A simulated container: new net + mount namespaces and a rootfs directory with etc/.
pub struct Container {
    pub proc: NsProcess,
    pub id: String,
    pub rootfs: PathBuf,
}

impl Container {
    pub fn start(dir: &Path, id: &str) -> Container {
        let rootfs = dir.join(id).join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        let proc = NsProcess::start(&["--net", "--mount", "--propagation", "private"]);
        Container {
            proc,
            id: id.to_string(),
            rootfs,
        }
    }

    pub fn target(&self) -> Target {
        Target {
            container_id: self.id.clone(),
            pid: self.proc.pid(),
            rootfs: self.rootfs.clone(),
            owner_dir: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }
}

/// "The internet": a namespace at 198.51.100.2 linked to the host (198.51.100.1) by a veth.
pub struct Upstream {
    pub proc: NsProcess,
}

pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const UPSTREAM_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

impl Upstream {
    pub fn start() -> Upstream {
        let proc = NsProcess::start(&["--net"]);
        let pid = proc.pid().to_string();
        sh(&["ip", "link", "set", "lo", "up"]);
        sh(&[
            "ip", "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", &pid,
        ]);
        sh(&["ip", "addr", "add", "198.51.100.1/24", "dev", "up0"]);
        sh(&["ip", "link", "set", "up0", "up"]);
        nsenter(proc.pid(), &["ip", "link", "set", "lo", "up"]);
        nsenter(
            proc.pid(),
            &["ip", "addr", "add", "198.51.100.2/24", "dev", "eth0"],
        );
        nsenter(proc.pid(), &["ip", "link", "set", "eth0", "up"]);
        Upstream { proc }
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }
}

/// Run a command; panic with its output on failure.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a command; Ok(stdout) or Err(stdout+stderr).
pub fn try_sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(text + &String::from_utf8_lossy(&out.stderr))
    }
}

pub fn nsenter(pid: i32, args: &[&str]) -> String {
    let t = pid.to_string();
    let mut full = vec!["nsenter", "-t", &t, "-n", "--"];
    full.extend(args);
    sh(&full)
}

pub fn ping(from_pid: i32, to: Ipv4Addr) -> bool {
    let t = from_pid.to_string();
    let to = to.to_string();
    try_sh(&[
        "nsenter",
        "-t",
        &t,
        "-n",
        "--",
        "/bin/busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        &to,
    ])
    .is_ok()
}

pub fn annotations(pairs: &[(&str, &str)]) -> NetworkRequest {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    husk_net::parse_annotations(&map).unwrap().unwrap()
}

/// Fork a child that enters `pid`'s network namespace and runs `f`; its String result comes back
/// through a pipe. The test process is single-threaded apart from the idle harness thread.
pub fn in_netns<F: FnOnce() -> String>(pid: i32, f: F) -> String {
    let (r, w) = pipe();
    let ns = File::open(format!("/proc/{pid}/ns/net")).unwrap();
    // SAFETY: the child enters a namespace, runs `f`, writes to the pipe and _exit()s.
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        // SAFETY: setns on a valid fd in the child only.
        let ok = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } == 0;
        let out = if ok { f() } else { "setns failed".to_string() };
        let mut wf = File::from(w);
        let _ = wf.write_all(out.as_bytes());
        drop(wf);
        // SAFETY: leave the forked child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    drop(w);
    let mut s = String::new();
    File::from(r).read_to_string(&mut s).unwrap();
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
    s
}

/// A forked server in some network namespace, killed on drop.
pub struct Server {
    pid: i32,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling and reaping our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// Fork a server loop into `pid`'s network namespace. Returns once it is bound.
pub fn serve_in_netns(
    pid: i32,
    serve: fn(u16, &str, Option<OwnedFd>),
    port: u16,
    tag: &str,
) -> Server {
    let (r, w) = pipe();
    let ns = File::open(format!("/proc/{pid}/ns/net")).unwrap();
    let tag = tag.to_string();
    // SAFETY: see in_netns; the child never returns.
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        // SAFETY: child only: die with the test, enter the namespace.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET);
        }
        drop(r);
        serve(port, &tag, Some(w));
        // SAFETY: leave without destructors.
        unsafe { libc::_exit(0) };
    }
    drop(w);
    let mut ready = [0u8; 1];
    File::from(r).read_exact(&mut ready).unwrap();
    Server { pid: child }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors from pipe2.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn signal_ready(ready: Option<OwnedFd>) {
    if let Some(fd) = ready {
        let _ = File::from(fd).write_all(b"r");
    }
}

/// Answers each TCP connection with "<tag> <peer address>\n".
pub fn tcp_tag_server(port: u16, tag: &str, ready: Option<OwnedFd>) {
    let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
    signal_ready(ready);
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        let peer = s
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let _ = s.write_all(format!("{tag} {peer}\n").as_bytes());
    }
}

/// Answers each UDP datagram with "<tag> <peer address>".
pub fn udp_tag_server(port: u16, tag: &str, ready: Option<OwnedFd>) {
    let s = UdpSocket::bind(("0.0.0.0", port)).unwrap();
    signal_ready(ready);
    let mut buf = [0u8; 512];
    loop {
        if let Ok((_, peer)) = s.recv_from(&mut buf) {
            let _ = s.send_to(format!("{tag} {}", peer.ip()).as_bytes(), peer);
        }
    }
}

/// A DNS responder: A queries get 198.51.100.77, anything else an empty NOERROR answer.
pub fn dns_server(port: u16, _tag: &str, ready: Option<OwnedFd>) {
    let s = UdpSocket::bind(("0.0.0.0", port)).unwrap();
    signal_ready(ready);
    let mut buf = [0u8; 512];
    loop {
        let Ok((n, peer)) = s.recv_from(&mut buf) else {
            continue;
        };
        if let Some(reply) = dns_reply(&buf[..n]) {
            let _ = s.send_to(&reply, peer);
        }
    }
}

fn dns_reply(q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    // The question: labels up to a zero byte, then type and class.
    let mut i = 12;
    while i < q.len() && q[i] != 0 {
        i += 1 + q[i] as usize;
    }
    let qend = i + 5;
    if qend > q.len() {
        return None;
    }
    let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
    let mut r = Vec::new();
    r.extend_from_slice(&q[0..2]); // id
    r.extend_from_slice(&[0x81, 0x80]); // response, recursion desired + available, NOERROR
    r.extend_from_slice(&[0, 1]); // one question
    r.extend_from_slice(&[0, if qtype == 1 { 1 } else { 0 }]); // answers
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&q[12..qend]);
    if qtype == 1 {
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 51, 100, 77]);
    }
    Some(r)
}

pub fn tcp_get(addr: SocketAddr) -> String {
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        Ok(s) => s,
        Err(e) => return format!("connect error: {e}"),
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.trim().to_string()
}

pub fn udp_get(addr: SocketAddr) -> String {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 512];
    for _ in 0..4 {
        let _ = s.send_to(b"hi", addr);
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
    }
    "no udp reply".to_string()
}

pub fn sa(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// The nft elements of our table, as text (empty when the table is absent).
pub fn nft_elements() -> String {
    let listing = try_sh(&["nft", "list", "table", "ip", "husk"]).unwrap_or_default();
    listing
        .lines()
        .filter(|l| {
            l.contains("elements") || l.trim_start().starts_with(|c: char| c.is_ascii_digit())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Links in the host namespace other than loopback and the upstream veth.
pub fn our_links() -> Vec<String> {
    sh(&["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| {
            l.split(':')
                .nth(1)
                .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        })
        .filter(|n| n != "lo" && n != "up0")
        .collect()
}

/// Regular files under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Nothing of ours is left: no link, no nft element, no file under the state dir.
pub fn assert_clean(state_dir: &Path) {
    assert_eq!(our_links(), Vec::<String>::new(), "links left");
    assert_eq!(nft_elements(), "", "nft elements left");
    assert_eq!(files_under(state_dir), Vec::<PathBuf>::new(), "files left");
}

pub fn setup_ok(req: &NetworkRequest, c: &Container, state: &Path) -> NetworkRecord {
    match husk_net::setup(req, &c.target(), state) {
        Ok(r) => r,
        Err(e) => panic!("setup of {} failed: {}", c.id, husk_net::error_chain(&e)),
    }
}
