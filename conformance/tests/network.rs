//! husk's built-in networking (`io.husk.net.*`, see hooks/network/README.md) on real containers.
//!
//! Every test builds its own world (`husk_conformance::networld`): a throwaway "host" network
//! namespace that husk runs in, and an "upstream" namespace at 198.51.100.2 standing in for the
//! internet. Each test has its own bridge and subnet (10.77.N.0/24), so they run in parallel.
//! Dropping the world force-deletes every container and checks that nothing is left: state,
//! cgroups, mounts, processes, links, files under `<root>/net`, nft elements.
//!
//! These are husk features: with another runtime the tests print a skip notice.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use husk_conformance::networld::{
    HOST_ADDR, NetWorld, UPLINK, UPSTREAM_ADDR, eventually, in_netns, with_host_program,
};
use husk_conformance::reaper;
use husk_conformance::runtime::husk_only;
use husk_conformance::sandbox::write_config_to;
use husk_conformance::wait::HANG_GUARD;
use husk_conformance::{Config, NamedNetns, Output, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `runc spec`'s capabilities plus CAP_NET_RAW, which busybox ping needs.
const CAPS: [&str; 4] = [
    "CAP_AUDIT_WRITE",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
];

/// A busybox container on `bridge` with `subnet`, running `script`. Its nameserver is
/// upstream's address, so nothing in it ever asks this machine's own resolver.
fn networked(bridge: &str, subnet: &str, script: &str) -> Config {
    Config::runc_spec()
        .capabilities(&CAPS)
        .annotation("io.husk.net.bridge", bridge)
        .annotation("io.husk.net.subnet", subnet)
        .annotation("io.husk.net.dns", &UPSTREAM_ADDR.to_string())
        .sh(script)
}

fn wget(url: &str) -> String {
    format!("wget -q -O - {url}")
}

/// The host's busybox wget, for the host and upstream namespaces.
fn host_wget(url: &str) -> [&str; 6] {
    ["busybox", "wget", "-q", "-O", "-", url]
}

#[test]
fn containers_on_one_bridge_reach_each_other_and_the_gateway() {
    if !husk_only("containers_on_one_bridge_reach_each_other_and_the_gateway") {
        return;
    }
    let world = NetWorld::new("l2");
    let config = networked("hn-l2", "10.77.1.0/24", "sleep 1000");
    let a = world.start_container(&config);
    let b = world.start_container(&config);
    let (addr_a, addr_b) = (world.address(&a), world.address(&b));
    assert_ne!(addr_a, addr_b, "two containers got the same address");
    let gateway = Ipv4Addr::new(10, 77, 1, 1);
    for (from, to) in [(&a, gateway), (&a, addr_b), (&b, gateway), (&b, addr_a)] {
        eventually(&format!("{from} pings {to}"), || {
            world.exec(from, &format!("ping -c1 -W1 {to}"))
        });
    }
}

#[test]
fn outgoing_traffic_is_masqueraded_unless_nat_is_false() {
    if !husk_only("outgoing_traffic_is_masqueraded_unless_nat_is_false") {
        return;
    }
    let world = NetWorld::new("nat");
    let server = PeerServer::start(&world.upstream_netns(), 9000);
    // Upstream can answer a container that is not masqueraded only with a route back.
    world.route_upstream_to("10.77.2.0/24");
    let config = networked("hn-nat", "10.77.2.0/24", "sleep 1000");
    let masqueraded = world.start_container(&config);
    let plain = world.start_container(&config.annotation("io.husk.net.nat", "false"));
    let url = format!("http://{UPSTREAM_ADDR}:9000/");

    let seen = eventually("the masqueraded container reaches upstream", || {
        world.exec(&masqueraded, &wget(&url))
    });
    assert_eq!(
        seen.stdout.trim(),
        HOST_ADDR.to_string(),
        "upstream must see the host's address:\n{seen}"
    );
    let plain_addr = world.address(&plain);
    let seen = eventually("the nat=false container reaches upstream", || {
        world.exec(&plain, &wget(&url))
    });
    assert_eq!(
        seen.stdout.trim(),
        plain_addr.to_string(),
        "with nat=false upstream must see the container's own address:\n{seen}"
    );
    let peers = server.peers();
    assert!(peers.contains(&IpAddr::V4(HOST_ADDR)), "{peers:?}");
    assert!(peers.contains(&IpAddr::V4(plain_addr)), "{peers:?}");
    let masq_addr = world.address(&masqueraded);
    assert!(
        !peers.contains(&IpAddr::V4(masq_addr)),
        "the masqueraded container's own address {masq_addr} reached upstream: {peers:?}"
    );
}

#[test]
fn tcp_port_forward_answers_upstream_host_loopback_and_containers() {
    if !husk_only("tcp_port_forward_answers_upstream_host_loopback_and_containers") {
        return;
    }
    let world = NetWorld::new("fwd");
    let bundle = world.bundle(
        &networked("hn-fwd", "10.77.3.0/24", "exec httpd -f -p 80 -h /var/www")
            .annotation("io.husk.net.ports", "18080:80"),
    );
    let page = format!("hc page {}", bundle.display());
    fs::write(
        bundle.join("rootfs/var/www/index.html"),
        format!("{page}\n"),
    )
    .expect("write index.html");
    let web = world.start_container_in(&bundle);
    let neighbour = world.start_container(&networked("hn-fwd", "10.77.3.0/24", "sleep 1000"));

    let via_host = format!("http://{HOST_ADDR}:18080/");
    let via_loopback = "http://127.0.0.1:18080/";
    let checks: [(&str, &dyn Fn() -> Output); 5] = [
        ("upstream -> 198.51.100.1:18080", &|| {
            world.in_upstream(&host_wget(&via_host))
        }),
        ("host -> its own 198.51.100.1:18080", &|| {
            world.in_host(&host_wget(&via_host))
        }),
        ("host -> 127.0.0.1:18080", &|| {
            world.in_host(&host_wget(via_loopback))
        }),
        ("another container -> 198.51.100.1:18080 (hairpin)", &|| {
            world.exec(&neighbour, &wget(&via_host))
        }),
        (
            "the container itself -> 198.51.100.1:18080 (hairpin)",
            &|| world.exec(&web, &wget(&via_host)),
        ),
    ];
    for (what, fetch) in checks {
        let out = eventually(what, fetch);
        assert_eq!(out.stdout.trim(), page, "{what}: wrong page:\n{out}");
    }
}

#[test]
fn udp_port_forward_answers_upstream() {
    if !husk_only("udp_port_forward_answers_upstream") {
        return;
    }
    let world = NetWorld::new("udp");
    let base =
        networked("hn-udp", "10.77.4.0/24", "true").annotation("io.husk.net.ports", "15353:53/udp");
    let bundle = world.bundle(&base);
    // busybox has no UDP server: the container runs a small echo program of this suite.
    let (config, echo) =
        with_host_program(base, &bundle, Path::new(env!("CARGO_BIN_EXE_hc-udp-echo")));
    write_config_to(&bundle, &config.sh(&format!("exec {echo} 53")));
    world.start_container_in(&bundle);

    let client = in_netns(&world.upstream_netns(), || {
        UdpSocket::bind((UPSTREAM_ADDR, 0))
    })
    .expect("bind a UDP socket in the upstream namespace");
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set read timeout");
    let target = SocketAddr::from((HOST_ADDR, 15353));
    let deadline = Instant::now() + HANG_GUARD;
    let mut buf = [0u8; 512];
    for n in 0.. {
        assert!(
            Instant::now() < deadline,
            "no echo from {target} through the udp forward after {HANG_GUARD:?}"
        );
        let payload = format!("hc-udp-{n}");
        client.send_to(payload.as_bytes(), target).expect("send");
        match client.recv_from(&mut buf) {
            Ok((len, from)) => {
                // Late echoes of earlier attempts are fine; any other payload is not.
                let got = String::from_utf8_lossy(&buf[..len]).into_owned();
                assert!(
                    got.starts_with("hc-udp-"),
                    "unexpected datagram {got:?} from {from}"
                );
                assert_eq!(
                    from, target,
                    "the echo must come back from the forwarded address"
                );
                break;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("receive from {target}: {e}"),
        }
    }
}

#[test]
fn dns_annotation_gives_a_read_only_resolv_conf_that_resolves_upstream() {
    if !husk_only("dns_annotation_gives_a_read_only_resolv_conf_that_resolves_upstream") {
        return;
    }
    let world = NetWorld::new("dns");
    let answer = Ipv4Addr::new(198, 51, 100, 77);
    let dns = DnsResponder::start(&world.upstream_netns(), answer);
    let id = world.start_container(
        &networked("hn-dns", "10.77.5.0/24", "sleep 1000")
            .annotation("io.husk.net.dns", &UPSTREAM_ADDR.to_string()),
    );

    let conf = world.exec(&id, "cat /etc/resolv.conf");
    conf.assert_success();
    let nameservers: Vec<&str> = conf
        .stdout_lines()
        .into_iter()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .map(str::trim)
        .collect();
    assert_eq!(nameservers, vec!["198.51.100.2"], "{conf}");

    let write = world.exec(&id, "echo nameserver 10.77.5.1 > /etc/resolv.conf");
    write.assert_failure();
    let mount = world.exec(&id, "grep ' /etc/resolv.conf ' /proc/mounts");
    mount.assert_success();
    let options: Vec<&str> = mount
        .stdout
        .split_whitespace()
        .nth(3)
        .unwrap_or_default()
        .split(',')
        .collect();
    assert!(
        options.contains(&"ro"),
        "resolv.conf is not mounted read-only:\n{mount}"
    );

    let looked_up = eventually("nslookup through upstream's DNS server", || {
        world.exec(&id, "nslookup hc-probe.example")
    });
    assert!(
        looked_up.stdout.contains(&answer.to_string()),
        "nslookup did not print the answer {answer}:\n{looked_up}"
    );
    let queries = dns.queries();
    assert!(
        queries.contains(&("hc-probe.example".to_string(), 1)),
        "the upstream server got no A query for hc-probe.example: {queries:?}"
    );
}

#[test]
fn fifty_concurrent_creates_get_distinct_addresses_and_deletes_leave_nothing() {
    if !husk_only("fifty_concurrent_creates_get_distinct_addresses_and_deletes_leave_nothing") {
        return;
    }
    const N: usize = 50;
    let world = NetWorld::new("many");
    let bundle = world.bundle(&networked("hn-many", "10.77.6.0/24", "sleep 1000"));
    let ids: Vec<String> = (0..N).map(|_| world.new_id()).collect();
    let created: Vec<Output> = thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .map(|id| s.spawn(|| world.create(id, &bundle)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("create thread panicked"))
            .collect()
    });
    for out in &created {
        out.assert_success();
    }

    let addrs: BTreeSet<Ipv4Addr> = ids.iter().map(|id| world.address(id)).collect();
    assert_eq!(
        addrs.len(),
        N,
        "{N} containers got only {} distinct addresses: {addrs:?}",
        addrs.len()
    );
    for a in &addrs {
        assert!(
            a.octets()[..3] == [10, 77, 6] && a.octets()[3] > 1 && a.octets()[3] < 255,
            "address {a} is not a host address of 10.77.6.0/24 other than the gateway"
        );
    }
    let leased: BTreeSet<Ipv4Addr> = world.leases().into_iter().map(|(_, a)| a).collect();
    assert_eq!(
        leased, addrs,
        "the lease files do not match the addresses in the containers"
    );
    let ports = world
        .host_links()
        .into_iter()
        .filter(|l| l.kind.as_deref() == Some("veth") && l.master.as_deref() == Some("hn-many"))
        .count();
    assert_eq!(ports, N, "expected {N} veths on the bridge");
    let members = world
        .nft_elements()
        .into_iter()
        .filter(|e| e.starts_with("set members:"))
        .count();
    assert_eq!(members, N, "expected {N} elements in the nft set members");

    let deleted: Vec<Output> = thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .map(|id| s.spawn(|| world.husk(&["delete", "--force", id])))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("delete thread panicked"))
            .collect()
    });
    for out in &deleted {
        out.assert_success();
    }
    world.assert_nothing_left();
}

#[test]
fn create_killed_after_the_network_was_built_leaves_nothing_after_delete_force() {
    if !husk_only("create_killed_after_the_network_was_built_leaves_nothing_after_delete_force") {
        return;
    }
    let world = NetWorld::new("crash");
    let hook_dir = world.sandbox().host_dir("hook");
    let pid_file = hook_dir.join("hook.pid");
    // husk runs createRuntime hooks right after it built the network: this one parks there,
    // so husk is killed at a known point with everything built.
    let park = format!(
        "echo $$ > {p}.tmp && mv {p}.tmp {p} && exec sleep 1000",
        p = pid_file.display()
    );
    let config = networked("hn-crash", "10.77.7.0/24", "sleep 1000")
        .annotation("io.husk.net.ports", "18081:80")
        .hook("createRuntime", "/bin/sh", &["sh", "-c", &park], &[], None);
    let bundle = world.bundle(&config);
    let id = world.new_id();
    let bundle_arg = bundle.to_string_lossy().into_owned();
    let mut cmd = world.husk_command(&["create", "--bundle", &bundle_arg, &id]);
    cmd.stdin(Stdio::null())
        .stdout(File::create(hook_dir.join("create.out")).expect("create.out"))
        .stderr(File::create(hook_dir.join("create.err")).expect("create.err"));
    let mut create = reaper::spawn_owned(&mut cmd).expect("spawn husk create");
    wait_until("the createRuntime hook runs (or create ends)", || {
        pid_file.exists() || create.try_wait().ok().flatten().is_some()
    });
    let hook_pid: Option<i32> = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse().ok());
    // What husk built, seen from outside, while it waits for the hook.
    let built = (
        world.leases(),
        world.nft_elements(),
        world
            .host_links()
            .into_iter()
            .filter(|l| l.kind.as_deref() == Some("veth") && l.master.is_some())
            .count(),
    );
    let still_running = matches!(create.try_wait(), Ok(None));
    if still_running {
        // Child::kill is SIGKILL: husk gets no chance to roll anything back.
        let _ = create.kill();
    }
    let status = create.wait().expect("wait for husk create");
    reaper::release(&create);
    if let Some(pid) = hook_pid {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert!(
        hook_pid.is_some() && still_running,
        "husk create ended ({status}) before it could be killed in its createRuntime hook: {}",
        fs::read_to_string(hook_dir.join("create.err")).unwrap_or_default()
    );
    // The point of the test: the kill came after husk built the network.
    assert_eq!(
        built.0.len(),
        1,
        "expected one lease while the hook ran: {built:?}"
    );
    assert!(
        !built.1.is_empty(),
        "expected nft elements while the hook ran: {built:?}"
    );
    assert_eq!(
        built.2, 1,
        "expected the container's veth on the bridge while the hook ran"
    );

    world.husk(&["delete", "--force", &id]).assert_success();
    world.assert_nothing_left();
}

#[test]
fn killed_container_then_delete_force_leaves_nothing() {
    if !husk_only("killed_container_then_delete_force_leaves_nothing") {
        return;
    }
    let world = NetWorld::new("killinit");
    let id = world.start_container(
        &networked("hn-kill", "10.77.8.0/24", "sleep 1000")
            .annotation("io.husk.net.ports", "18082:80"),
    );
    assert_eq!(
        world.leases().len(),
        1,
        "no lease: the network was not built"
    );
    let pid = world.pid(&id);
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill the container's init");
    wait_until("the container is stopped", || {
        world.state(&id)["status"] == "stopped"
    });
    world.husk(&["delete", "--force", &id]).assert_success();
    world.assert_nothing_left();
}

#[test]
fn bad_annotations_fail_create_naming_key_and_value_and_leave_nothing() {
    if !husk_only("bad_annotations_fail_create_naming_key_and_value_and_leave_nothing") {
        return;
    }
    let world = NetWorld::new("bad");
    let cases = [
        ("io.husk.net.subnet", "10.77.9.0/33"),
        ("io.husk.net.subnet", "10.77.9.300/24"),
        ("io.husk.net.subnet", "10.77.9.0"),
        ("io.husk.net.ports", "0:80"),
        ("io.husk.net.ports", "18080:0"),
        ("io.husk.net.ports", "70000:80"),
        ("io.husk.net.ports", "18080:80,18080:81"),
        ("io.husk.net.ports", "18080:80/sctp"),
        ("io.husk.net.ip", "10.77.10.5"),
        ("io.husk.net.nat", "yes"),
        ("io.husk.net.bogus", "1"),
    ];
    for (key, value) in cases {
        let config = networked("hn-bad", "10.77.9.0/24", "true").annotation(key, value);
        let id = world.new_id();
        let out = world.create(&id, &world.bundle(&config));
        out.assert_failure()
            .assert_stderr_contains(key)
            .assert_stderr_contains(value);
        world.sandbox().assert_nothing_left(&id);
        let left = world.network_leftovers();
        assert!(left.is_empty(), "{key}={value:?} left {left:#?}");
    }
}

#[test]
fn host_port_forwarded_by_another_container_fails_create_and_leaves_nothing_of_it() {
    if !husk_only("host_port_forwarded_by_another_container_fails_create_and_leaves_nothing_of_it")
    {
        return;
    }
    let world = NetWorld::new("taken");
    let config = networked("hn-taken", "10.77.10.0/24", "sleep 1000")
        .annotation("io.husk.net.ports", "18083:80");
    world.start_container(&config);
    let before = (
        world.host_links(),
        world.leases(),
        world.nft_elements(),
        world.net_state_files(),
    );

    let second = world.new_id();
    let out = world.create(&second, &world.bundle(&config));
    out.assert_failure().assert_stderr_contains("18083");
    world.sandbox().assert_nothing_left(&second);
    let after = (
        world.host_links(),
        world.leases(),
        world.nft_elements(),
        world.net_state_files(),
    );
    assert_eq!(
        after, before,
        "the failed create changed the host's network"
    );
}

#[test]
fn joined_network_namespace_is_left_alone() {
    if !husk_only("joined_network_namespace_is_left_alone") {
        return;
    }
    let world = NetWorld::new("join");
    let joined = NamedNetns::create();
    let config = networked(
        "hn-join",
        "10.77.11.0/24",
        "ip -o link show; echo resolv-mounts=$(grep -c ' /etc/resolv.conf ' /proc/mounts)",
    )
    .namespace_path("network", &joined.path().to_string_lossy());
    let id = world.new_id();
    let bundle = world.bundle(&config).to_string_lossy().into_owned();
    let out = world.husk(&["run", "--bundle", &bundle, &id]);
    out.assert_success();
    let links: Vec<&str> = out
        .stdout_lines()
        .into_iter()
        .filter_map(|l| l.split(':').nth(1).map(str::trim))
        .filter(|name| !name.starts_with("resolv-mounts"))
        .collect();
    assert_eq!(
        links,
        vec!["lo"],
        "the joined namespace got interfaces:\n{out}"
    );
    assert!(
        out.stdout.contains("resolv-mounts=0"),
        "resolv.conf was mounted:\n{out}"
    );
    let joined_links = joined.ip(&["-o", "link", "show"]);
    assert_eq!(joined_links.lines().count(), 1, "{joined_links}");
    world.assert_network_clean();
}

#[test]
fn container_sharing_the_host_network_namespace_is_left_alone() {
    if !husk_only("container_sharing_the_host_network_namespace_is_left_alone") {
        return;
    }
    let world = NetWorld::new("hostnet");
    let config = networked(
        "hn-hostnet",
        "10.77.12.0/24",
        "ip -o link show; echo resolv-mounts=$(grep -c ' /etc/resolv.conf ' /proc/mounts)",
    )
    .remove_namespace("network");
    let id = world.new_id();
    let bundle = world.bundle(&config).to_string_lossy().into_owned();
    let out = world.husk(&["run", "--bundle", &bundle, &id]);
    out.assert_success();
    assert!(
        out.stdout.contains(&format!(" {UPLINK}@")),
        "the container should see the host namespace's {UPLINK}:\n{out}"
    );
    assert!(
        out.stdout.contains("resolv-mounts=0"),
        "resolv.conf was mounted:\n{out}"
    );
    world.assert_network_clean();
}

#[test]
fn dns_responder_answers_a_queries_only() {
    // The test's own DNS server (pure): an A query gets the fixed address, AAAA gets no answer.
    let answer = Ipv4Addr::new(198, 51, 100, 77);
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["hc-probe", "example"] {
        query.push(u8::try_from(label.len()).unwrap());
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let (resp, name, qtype) = dns_answer(&query, answer).unwrap();
    assert_eq!((name.as_str(), qtype), ("hc-probe.example", 1));
    assert_eq!(&resp[..2], &[0x12, 0x34]);
    assert_eq!(resp[2] & 0x80, 0x80, "QR must be set");
    assert_eq!(&resp[4..8], &[0, 1, 0, 1], "one question, one answer");
    assert_eq!(&resp[resp.len() - 4..], &answer.octets());
    let mut aaaa = query.clone();
    let n = aaaa.len();
    aaaa[n - 3] = 28;
    let (resp, _, qtype) = dns_answer(&aaaa, answer).unwrap();
    assert_eq!(qtype, 28);
    assert_eq!(&resp[6..8], &[0, 0], "no answer for AAAA");
    assert_eq!(resp.len(), aaaa.len());
    assert!(dns_answer(&query[..10], answer).is_none());
}

/// An HTTP server in the upstream namespace that answers every request with the client's
/// address as it sees it, and remembers the addresses.
struct PeerServer {
    stop: Arc<AtomicBool>,
    peers: Arc<Mutex<Vec<IpAddr>>>,
    thread: Option<JoinHandle<()>>,
}

impl PeerServer {
    fn start(netns: &Path, port: u16) -> PeerServer {
        let listener = in_netns(netns, || TcpListener::bind((UPSTREAM_ADDR, port)))
            .unwrap_or_else(|e| panic!("listen in the upstream namespace: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("nonblocking listener: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (stop2, peers2) = (stop.clone(), peers.clone());
        let thread = thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        peers2
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(peer.ip());
                        let _ = answer_with_peer(stream, peer.ip());
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        PeerServer {
            stop,
            peers,
            thread: Some(thread),
        }
    }

    fn peers(&self) -> Vec<IpAddr> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer_with_peer(mut stream: std::net::TcpStream, peer: IpAddr) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let body = format!("{peer}\n");
    write!(
        stream,
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A DNS server on upstream's port 53 that answers every A query with one fixed address (and
/// every other query with no answer), and remembers the questions.
struct DnsResponder {
    stop: Arc<AtomicBool>,
    queries: Arc<Mutex<Vec<(String, u16)>>>,
    thread: Option<JoinHandle<()>>,
}

impl DnsResponder {
    fn start(netns: &Path, answer: Ipv4Addr) -> DnsResponder {
        let socket = in_netns(netns, || UdpSocket::bind((UPSTREAM_ADDR, 53)))
            .unwrap_or_else(|e| panic!("bind udp 53 in the upstream namespace: {e}"));
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap_or_else(|e| panic!("read timeout: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let (stop2, queries2) = (stop.clone(), queries.clone());
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some((response, name, qtype)) = dns_answer(&buf[..n], answer) {
                    queries2
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((name, qtype));
                    let _ = socket.send_to(&response, peer);
                }
            }
        });
        DnsResponder {
            stop,
            queries,
            thread: Some(thread),
        }
    }

    fn queries(&self) -> Vec<(String, u16)> {
        self.queries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for DnsResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The response to a one-question DNS query: type A (1) gets `answer`, anything else no
/// answer. Returns it with the queried name and type; None for what is not such a query.
fn dns_answer(query: &[u8], answer: Ipv4Addr) -> Option<(Vec<u8>, String, u16)> {
    const HEADER: usize = 12;
    const TYPE_A: u16 = 1;
    if query.len() < HEADER || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return None;
    }
    let mut labels = Vec::new();
    let mut pos = HEADER;
    loop {
        let len = usize::from(*query.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(pos..pos + len)?).into_owned());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*query.get(pos)?, *query.get(pos + 1)?]);
    let question_end = pos + 4;
    let question = query.get(HEADER..question_end)?;
    let answers: u8 = u8::from(qtype == TYPE_A);
    let mut response = Vec::with_capacity(question_end + 16);
    response.extend_from_slice(&query[..2]); // the id
    response.push(0x84 | (query[2] & 0x01)); // QR, AA, RD as asked
    response.push(0x80); // RA, NOERROR
    response.extend_from_slice(&[0, 1, 0, answers, 0, 0, 0, 0]);
    response.extend_from_slice(question);
    if qtype == TYPE_A {
        // name (pointer to the question), type A, class IN, TTL 60, 4 bytes of address
        response.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        response.extend_from_slice(&answer.octets());
    }
    Some((response, labels.join("."), qtype))
}

#[test]
fn runc_gets_the_same_network_through_the_standalone_hook() {
    if !husk_only("runc_gets_the_same_network_through_the_standalone_hook") {
        return;
    }
    let Ok(runc) = which("runc") else {
        panic!("runc is not installed (apt-get install runc)");
    };
    let world = NetWorld::new("standalone");
    let husk = husk_conformance::runtime::runtime_path()
        .to_string_lossy()
        .into_owned();
    let state_dir = world.net_state_dir().to_string_lossy().into_owned();
    let hook = |stage: &str| serde_json::json!({"path": husk, "args": ["husk", "hook", "network", stage, "--state-dir", state_dir]});
    let config = networked(
        "hn-runc",
        "10.77.15.0/24",
        "ip -4 -o addr show eth0 | tr -s ' ' | cut -d' ' -f4; ip route | grep default; cat /etc/resolv.conf | grep nameserver",
    )
    .push("/hooks/createRuntime", hook("createRuntime"))
    .push("/hooks/poststop", hook("poststop"));
    let bundle = world.bundle(&config).to_string_lossy().into_owned();
    let runc_root = world
        .sandbox()
        .dir()
        .join("runc-root")
        .to_string_lossy()
        .into_owned();
    let out = world.in_host(&[
        &runc,
        "--root",
        &runc_root,
        "run",
        "--bundle",
        &bundle,
        "hc-standalone",
    ]);
    out.assert_success();
    let lines = out.stdout_lines();
    assert_eq!(lines.first().copied(), Some("10.77.15.2/24"), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("default via 10.77.15.1")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| *l == format!("nameserver {UPSTREAM_ADDR}")),
        "{out}"
    );
    // `runc run` deleted the container, so poststop tore the network down.
    world.assert_network_clean();
}

fn which(name: &str) -> Result<String, ()> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .ok_or(())
}

#[test]
fn a_bridge_husk_did_not_create_is_kept_and_route_localnet_restored() {
    if !husk_only("a_bridge_husk_did_not_create_is_kept_and_route_localnet_restored") {
        return;
    }
    let world = NetWorld::new("prebridge");
    world
        .in_host(&["ip", "link", "add", "hn-pre", "type", "bridge"])
        .assert_success();
    let sysctl = ["cat", "/proc/sys/net/ipv4/conf/hn-pre/route_localnet"];
    assert_eq!(world.in_host(&sysctl).stdout.trim(), "0");
    let id = world.start_container(&networked("hn-pre", "10.77.16.0/24", "sleep 1000"));
    assert_eq!(
        world.in_host(&sysctl).stdout.trim(),
        "1",
        "forwards to 127.0.0.1 need it"
    );
    world.husk(&["delete", "--force", &id]).assert_success();
    // The bridge is the user's: it stays, and so does nothing of husk's on it.
    assert_eq!(
        world.in_host(&sysctl).stdout.trim(),
        "0",
        "route_localnet left on a bridge husk does not guard"
    );
    world
        .in_host(&["ip", "link", "del", "hn-pre"])
        .assert_success();
    world.assert_network_clean();
}
