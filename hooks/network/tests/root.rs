#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
//! Root tests against the real kernel. Each runs in its own throwaway "host" network + mount
//! namespace (see common::isolated); containers and "the internet" (198.51.100.0/24) are
//! processes in further namespaces. Nothing outlives the test process.

mod common;

use std::net::Ipv4Addr;

use common::*;
use husk_net::{HookStage, NetError, run_hook, teardown};

fn lo_up() {
    sh(&["ip", "link", "set", "lo", "up"]);
}

#[test]
fn two_containers_reach_each_other_and_the_gateway() {
    isolated("two_containers_reach_each_other_and_the_gateway", || {
        lo_up();
        let dir = TempDir::new("two");
        let state = dir.path().join("state");
        let a = Container::start(dir.path(), "a");
        let b = Container::start(dir.path(), "b");
        let req = annotations(&[
            ("io.husk.net.mtu", "1400"),
            ("io.husk.net.mac", "02:00:00:00:aa:01"),
        ]);
        let ra = setup_ok(&req, &a, &state);
        let rb = setup_ok(&annotations(&[("io.husk.net.bridge", "husk0")]), &b, &state);
        assert_eq!(ra.address, Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(rb.address, Some(Ipv4Addr::new(10, 0, 0, 3)));
        assert!(ra.bridge_created && !rb.bridge_created);
        assert!(ping(a.pid(), Ipv4Addr::new(10, 0, 0, 3)), "a -> b");
        assert!(ping(b.pid(), Ipv4Addr::new(10, 0, 0, 2)), "b -> a");
        assert!(ping(a.pid(), Ipv4Addr::new(10, 0, 0, 1)), "a -> gateway");
        // eth0 was made with the requested MTU and MAC; the host end is a hairpin bridge port.
        let link = nsenter(a.pid(), &["ip", "-o", "link", "show", "eth0"]);
        assert!(
            link.contains("mtu 1400") && link.contains("02:00:00:00:aa:01"),
            "{link}"
        );
        let host_veth = ra.host_veth.clone().unwrap();
        let details = sh(&["ip", "-d", "link", "show", &host_veth]);
        assert!(
            details.contains("master husk0") && details.contains("hairpin on"),
            "{details}"
        );
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .unwrap()
                .trim(),
            "1"
        );
        // The record round-trips through JSON (husk stores it).
        let json = serde_json::to_string(&ra).unwrap();
        assert_eq!(
            serde_json::from_str::<husk_net::NetworkRecord>(&json).unwrap(),
            ra
        );

        teardown(&ra, &state).unwrap();
        // b is still there: the bridge stays.
        assert!(our_links().contains(&"husk0".to_string()));
        assert!(ping(b.pid(), Ipv4Addr::new(10, 0, 0, 1)));
        teardown(&rb, &state).unwrap();
        assert_clean(&state);
        // Idempotent.
        teardown(&ra, &state).unwrap();
        teardown(&rb, &state).unwrap();
    });
}

#[test]
fn nat_port_forwards_and_hairpin() {
    isolated("nat_port_forwards_and_hairpin", || {
        lo_up();
        let up = Upstream::start();
        let dir = TempDir::new("fwd");
        let state = dir.path().join("state");
        let a = Container::start(dir.path(), "a");
        let b = Container::start(dir.path(), "b");
        let c = Container::start(dir.path(), "c");
        let ra = setup_ok(
            &annotations(&[("io.husk.net.ports", "8080:80,5353:53/udp")]),
            &a,
            &state,
        );
        let rb = setup_ok(&annotations(&[("io.husk.net.nat", "true")]), &b, &state);
        let rc = setup_ok(&annotations(&[("io.husk.net.nat", "false")]), &c, &state);
        let _tcp = serve_in_netns(a.pid(), tcp_tag_server, 80, "tcp-a");
        let _udp = serve_in_netns(a.pid(), udp_tag_server, 53, "udp-a");
        let _up_tcp = serve_in_netns(up.pid(), tcp_tag_server, 9000, "up");

        // Outbound: upstream sees the host's address (masquerade).
        let seen = in_netns(a.pid(), || tcp_get(sa(UPSTREAM_ADDR, 9000)));
        assert_eq!(seen, "up 198.51.100.1");
        // nat=false: no masquerade; with a route back, upstream sees the container itself.
        let seen = in_netns(c.pid(), || tcp_get(sa(UPSTREAM_ADDR, 9000)));
        assert!(
            seen.starts_with("connect error"),
            "no route back yet, got {seen:?}"
        );
        nsenter(
            up.pid(),
            &["ip", "route", "add", "10.0.0.0/24", "via", "198.51.100.1"],
        );
        let seen = in_netns(c.pid(), || tcp_get(sa(UPSTREAM_ADDR, 9000)));
        assert_eq!(seen, format!("up {}", rc.address.unwrap()));

        // Inbound from another host: DNAT, the container sees the real peer.
        let got = in_netns(up.pid(), || tcp_get(sa(HOST_ADDR, 8080)));
        assert_eq!(got, "tcp-a 198.51.100.2");
        let got = in_netns(up.pid(), || udp_get(sa(HOST_ADDR, 5353)));
        assert_eq!(got, "udp-a 198.51.100.2");
        // From the host itself, on its own address and on localhost (masqueraded to the gateway).
        assert_eq!(tcp_get(sa(HOST_ADDR, 8080)), "tcp-a 198.51.100.1");
        assert_eq!(udp_get(sa(HOST_ADDR, 5353)), "udp-a 198.51.100.1");
        assert_eq!(tcp_get(sa(Ipv4Addr::LOCALHOST, 8080)), "tcp-a 10.0.0.1");
        assert_eq!(udp_get(sa(Ipv4Addr::LOCALHOST, 5353)), "udp-a 10.0.0.1");
        // Hairpin: another container, and the container itself, through the host's address.
        let got = in_netns(b.pid(), || tcp_get(sa(HOST_ADDR, 8080)));
        assert_eq!(got, "tcp-a 10.0.0.1");
        let got = in_netns(b.pid(), || udp_get(sa(Ipv4Addr::new(10, 0, 0, 1), 5353)));
        assert_eq!(got, "udp-a 10.0.0.1");
        let got = in_netns(a.pid(), || tcp_get(sa(HOST_ADDR, 8080)));
        assert_eq!(got, "tcp-a 10.0.0.1");

        // A port nobody forwards is not answered.
        assert!(tcp_get(sa(HOST_ADDR, 8081)).starts_with("connect error"));
        // route_localnet opens nothing else: a container sending to the host's 127.0.0.1
        // through the bridge is dropped by the guard chain (the host listens on 127.0.0.1:7777).
        let _local = serve_in_netns(
            std::process::id() as i32,
            tcp_tag_server,
            7777,
            "host-local",
        );
        assert_eq!(
            tcp_get(sa(Ipv4Addr::LOCALHOST, 7777)),
            "host-local 127.0.0.1"
        );
        // In b, route 127.0.0.9 out of eth0 to the gateway (the local table moved after our rule).
        nsenter(
            b.pid(),
            &[
                "ip",
                "rule",
                "add",
                "pref",
                "5",
                "to",
                "127.0.0.9",
                "lookup",
                "200",
            ],
        );
        nsenter(
            b.pid(),
            &["ip", "rule", "add", "pref", "100", "lookup", "local"],
        );
        nsenter(b.pid(), &["ip", "rule", "del", "pref", "0"]);
        nsenter(
            b.pid(),
            &[
                "ip",
                "route",
                "add",
                "127.0.0.9/32",
                "via",
                "10.0.0.1",
                "dev",
                "eth0",
                "table",
                "200",
            ],
        );
        let sneak = || {
            in_netns(b.pid(), || {
                let _ = std::fs::write("/proc/sys/net/ipv4/conf/eth0/route_localnet", "1");
                let _ = std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1");
                tcp_get(sa(Ipv4Addr::new(127, 0, 0, 9), 7777))
            })
        };
        let got = sneak();
        assert!(
            got.starts_with("connect error"),
            "127/8 from a container reached the host: {got:?}"
        );
        // The path is real: without the guard chain the same connection gets through.
        sh(&["nft", "flush", "chain", "ip", "husk", "guard"]);
        assert_eq!(sneak(), "host-local 10.0.0.3");

        for r in [&ra, &rb, &rc] {
            teardown(r, &state).unwrap();
        }
        assert!(tcp_get(sa(HOST_ADDR, 8080)).starts_with("connect error"));
        assert_clean(&state);
    });
}

#[test]
fn forward_policy_drop_gets_accept_rules_while_the_bridge_is_used() {
    isolated(
        "forward_policy_drop_gets_accept_rules_while_the_bridge_is_used",
        || {
            lo_up();
            let up = Upstream::start();
            sh(&["iptables", "-P", "FORWARD", "DROP"]);
            let dir = TempDir::new("drop");
            let state = dir.path().join("state");
            let a = Container::start(dir.path(), "a");
            let ra = setup_ok(
                &annotations(&[("io.husk.net.ports", "8080:80")]),
                &a,
                &state,
            );
            let rules = sh(&["iptables", "-S", "FORWARD"]);
            assert_eq!(rules.matches("husk bridge").count(), 2, "{rules}");
            let _tcp = serve_in_netns(a.pid(), tcp_tag_server, 80, "tcp-a");
            let _up_tcp = serve_in_netns(up.pid(), tcp_tag_server, 9000, "up");
            assert_eq!(
                in_netns(up.pid(), || tcp_get(sa(HOST_ADDR, 8080))),
                "tcp-a 198.51.100.2"
            );
            assert_eq!(
                in_netns(a.pid(), || tcp_get(sa(UPSTREAM_ADDR, 9000))),
                "up 198.51.100.1"
            );
            teardown(&ra, &state).unwrap();
            let rules = sh(&["iptables", "-S", "FORWARD"]);
            assert!(
                !rules.contains("husk bridge") && rules.contains("-P FORWARD DROP"),
                "{rules}"
            );
            assert_clean(&state);
        },
    );
}

#[test]
fn dns_resolv_conf_is_bound_read_only_and_resolves() {
    isolated("dns_resolv_conf_is_bound_read_only_and_resolves", || {
        lo_up();
        let up = Upstream::start();
        let dir = TempDir::new("dns");
        let state = dir.path().join("state");
        let a = Container::start(dir.path(), "a");
        std::fs::create_dir_all(a.rootfs.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", a.rootfs.join("bin/busybox")).unwrap();
        let _dns = serve_in_netns(up.pid(), dns_server, 53, "dns");
        let ra = setup_ok(
            &annotations(&[("io.husk.net.dns", "198.51.100.2")]),
            &a,
            &state,
        );
        assert_eq!(
            ra.nameservers,
            vec!["198.51.100.2".parse::<std::net::IpAddr>().unwrap()]
        );
        let t = a.pid().to_string();
        let root = a.rootfs.to_str().unwrap();
        let inside = |args: &[&str]| {
            let mut full = vec!["nsenter", "-t", &t, "-n", "-m", "--", "chroot", root];
            full.extend(args);
            try_sh(&full)
        };
        let conf = inside(&["/bin/busybox", "cat", "/etc/resolv.conf"]).unwrap();
        assert!(conf.contains("nameserver 198.51.100.2"), "{conf}");
        let answer = inside(&["/bin/busybox", "nslookup", "test.husk"]).unwrap();
        assert!(answer.contains("198.51.100.77"), "{answer}");
        assert!(
            inside(&["/bin/busybox", "sh", "-c", "echo x >> /etc/resolv.conf"]).is_err(),
            "resolv.conf is writable"
        );
        // The host's view of the rootfs is untouched (the mount lives in the container's namespace).
        assert!(
            !std::fs::read_to_string(a.rootfs.join("etc/resolv.conf"))
                .unwrap_or_default()
                .contains("198.51.100.2")
        );
        teardown(&ra, &state).unwrap();
        assert_clean(&state);
    });
}

#[test]
fn resolv_conf_symlink_cannot_escape_the_rootfs() {
    isolated("resolv_conf_symlink_cannot_escape_the_rootfs", || {
        lo_up();
        let dir = TempDir::new("symlink");
        let state = dir.path().join("state");
        let a = Container::start(dir.path(), "a");
        // etc/resolv.conf -> ../../../outside: resolved in the rootfs, that is <rootfs>/outside.
        let outside = dir.path().join("a").join("outside");
        std::fs::write(&outside, "host file\n").unwrap();
        std::os::unix::fs::symlink("../../../outside", a.rootfs.join("etc/resolv.conf")).unwrap();
        let ra = setup_ok(
            &annotations(&[("io.husk.net.dns", "198.51.100.53")]),
            &a,
            &state,
        );
        let mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", a.pid())).unwrap();
        let inside = a.rootfs.join("outside");
        assert!(
            mounts.contains(&format!(" {} ", inside.display())),
            "{mounts}"
        );
        assert!(
            !mounts.contains(&format!(" {} ", outside.display())),
            "{mounts}"
        );
        let t = a.pid().to_string();
        let seen = sh(&["nsenter", "-t", &t, "-m", "cat", outside.to_str().unwrap()]);
        assert_eq!(seen, "host file\n");
        teardown(&ra, &state).unwrap();
        assert_clean(&state);
    });
}

#[test]
fn fifty_concurrent_setups_get_distinct_addresses() {
    isolated("fifty_concurrent_setups_get_distinct_addresses", || {
        lo_up();
        let dir = TempDir::new("fifty");
        let state = dir.path().join("state");
        let containers: Vec<Container> = (0..50)
            .map(|i| Container::start(dir.path(), &format!("c{i}")))
            .collect();
        let req = annotations(&[("io.husk.net.subnet", "10.88.0.0/24")]);
        let records: Vec<husk_net::NetworkRecord> = std::thread::scope(|s| {
            let handles: Vec<_> = containers
                .iter()
                .map(|c| {
                    let (req, state) = (&req, &state);
                    s.spawn(move || setup_ok(req, c, state))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let addrs: std::collections::BTreeSet<Ipv4Addr> =
            records.iter().map(|r| r.address.unwrap()).collect();
        assert_eq!(addrs.len(), 50);
        assert!(
            !addrs.contains(&Ipv4Addr::new(10, 88, 0, 1))
                && !addrs.contains(&Ipv4Addr::new(10, 88, 0, 0))
        );
        assert_eq!(records.iter().filter(|r| r.bridge_created).count(), 1);
        assert!(ping(containers[0].pid(), records[49].address.unwrap()));
        std::thread::scope(|s| {
            for r in &records {
                let state = &state;
                s.spawn(move || teardown(r, state).unwrap());
            }
        });
        assert_clean(&state);
    });
}

#[test]
fn teardown_after_the_container_was_killed() {
    isolated("teardown_after_the_container_was_killed", || {
        lo_up();
        let dir = TempDir::new("killed");
        let state = dir.path().join("state");
        let mut a = Container::start(dir.path(), "a");
        let ra = setup_ok(
            &annotations(&[("io.husk.net.ports", "8080:80/udp")]),
            &a,
            &state,
        );
        a.proc.kill();
        teardown(&ra, &state).unwrap();
        assert_clean(&state);
    });
}

#[test]
fn failed_setups_leave_nothing() {
    isolated("failed_setups_leave_nothing", || {
        lo_up();
        let dir = TempDir::new("failed");
        let state = dir.path().join("state");
        let a = Container::start(dir.path(), "a");
        let b = Container::start(dir.path(), "b");
        // A "container" in our own network namespace is refused before anything is built.
        let mut shared = b.target();
        shared.pid = std::process::id() as i32;
        let e = husk_net::setup(
            &annotations(&[("io.husk.net.nat", "true")]),
            &shared,
            &state,
        )
        .unwrap_err();
        assert!(matches!(e, NetError::SharedNetns { .. }), "{e}");
        assert_clean(&state);
        // A lone failure on a fresh bridge: the bridge it created goes too.
        let bad_ns = annotations(&[("io.husk.net.dns", "198.51.100.53")]);
        let mut broken = b.target();
        broken.rootfs = dir.path().join("no-such-rootfs");
        let e = husk_net::setup(&bad_ns, &broken, &state).unwrap_err();
        assert!(
            matches!(e, NetError::ResolvMount(_)),
            "{}",
            husk_net::error_chain(&e)
        );
        assert_eq!(
            nsenter(b.pid(), &["ip", "-o", "link"]).lines().count(),
            1,
            "eth0 left in the container"
        );
        assert_clean(&state);

        let ra = setup_ok(
            &annotations(&[
                ("io.husk.net.ip", "10.0.0.5"),
                ("io.husk.net.ports", "8080:80"),
            ]),
            &a,
            &state,
        );
        let before = (our_links(), nft_elements(), files_under(&state));
        let e = husk_net::setup(
            &annotations(&[("io.husk.net.ip", "10.0.0.5")]),
            &b.target(),
            &state,
        )
        .unwrap_err();
        assert!(
            husk_net::error_chain(&e).contains("already leased to container \"a\""),
            "{e}"
        );
        assert_eq!(before, (our_links(), nft_elements(), files_under(&state)));
        let e = husk_net::setup(
            &annotations(&[("io.husk.net.ports", "9000:90,8080:81")]),
            &b.target(),
            &state,
        )
        .unwrap_err();
        assert!(
            husk_net::error_chain(&e).contains("8080:81/tcp is already forwarded"),
            "{}",
            husk_net::error_chain(&e)
        );
        assert_eq!(before, (our_links(), nft_elements(), files_under(&state)));
        let e = husk_net::setup(
            &annotations(&[("io.husk.net.subnet", "10.1.0.0/24")]),
            &b.target(),
            &state,
        )
        .unwrap_err();
        assert!(
            husk_net::error_chain(&e).contains("already serves subnet 10.0.0.0/24"),
            "{e}"
        );
        assert_eq!(before, (our_links(), nft_elements(), files_under(&state)));
        teardown(&ra, &state).unwrap();
        assert_clean(&state);
    });
}

#[test]
fn overlapping_subnet_is_refused() {
    isolated("overlapping_subnet_is_refused", || {
        lo_up();
        sh(&[
            "ip", "link", "add", "ov0", "type", "veth", "peer", "name", "ov1",
        ]);
        sh(&["ip", "addr", "add", "10.0.77.1/16", "dev", "ov0"]);
        sh(&["ip", "link", "set", "ov0", "up"]);
        sh(&["ip", "link", "set", "ov1", "up"]);
        let dir = TempDir::new("overlap");
        let state = dir.path().join("state");
        let a = Container::start(dir.path(), "a");
        let e = husk_net::setup(
            &annotations(&[("io.husk.net.nat", "true")]),
            &a.target(),
            &state,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "subnet 10.0.0.0/24 overlaps the host route 10.0.0.0/16 on ov0"
        );
        sh(&["ip", "link", "del", "ov0"]);
        assert_clean(&state);
        // Once the route is gone the same request works.
        let ra = setup_ok(&annotations(&[("io.husk.net.nat", "true")]), &a, &state);
        teardown(&ra, &state).unwrap();
        assert_clean(&state);
    });
}

#[test]
fn dead_owner_lease_is_reclaimed() {
    isolated("dead_owner_lease_is_reclaimed", || {
        lo_up();
        let dir = TempDir::new("reclaim");
        let state = dir.path().join("state");
        let mut a = Container::start(dir.path(), "a");
        let owner = dir.path().join("owner-a");
        std::fs::create_dir_all(&owner).unwrap();
        let mut ta = a.target();
        ta.owner_dir = Some(owner.clone());
        let req = annotations(&[
            ("io.husk.net.ip", "10.0.0.7"),
            ("io.husk.net.ports", "8080:80"),
        ]);
        let ra = husk_net::setup(&req, &ta, &state).unwrap();
        // a dies without a teardown, and husk forgets it.
        a.proc.kill();
        std::fs::remove_dir(&owner).unwrap();
        let b = Container::start(dir.path(), "b");
        let rb = setup_ok(&req, &b, &state);
        assert_eq!(rb.address, Some(Ipv4Addr::new(10, 0, 0, 7)));
        // A late teardown of a's record removes nothing of b's.
        teardown(&ra, &state).unwrap();
        assert!(nft_elements().contains("tcp . 8080 : 10.0.0.7 . 80"));
        assert_eq!(
            files_under(&state.join("ipam/husk0")).len(),
            3,
            "b's lease, network.json, marker"
        );
        teardown(&rb, &state).unwrap();
        assert_clean(&state);
    });
}

#[test]
fn standalone_hook_binary() {
    isolated("standalone_hook_binary", || {
        lo_up();
        let dir = TempDir::new("hook");
        let state = dir.path().join("state");
        let a = Container::start(dir.path(), "a");
        let bundle = dir.path().join("a");
        std::fs::write(
            bundle.join("config.json"),
            r#"{"ociVersion":"1.2.0","root":{"path":"rootfs"},"annotations":{"io.husk.net.ports":"8080:80"}}"#,
        )
        .unwrap();
        let stdin = format!(
            r#"{{"ociVersion":"1.2.0","id":"a","status":"creating","pid":{},"bundle":"{}"}}"#,
            a.pid(),
            bundle.display()
        );
        let hook = |stage: &str| {
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_husk-net-hook"))
                .args([stage, "--state-dir", state.to_str().unwrap()])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(stdin.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success(), "hook {stage} failed");
        };
        hook("createRuntime");
        assert!(state.join("hooks/a.json").exists());
        let addr = nsenter(a.pid(), &["ip", "-o", "-4", "addr", "show", "eth0"]);
        assert!(addr.contains("10.0.0.2/24"), "{addr}");
        hook("poststop");
        assert_clean(&state);
        // poststop with nothing recorded is fine; so is the in-process entry point.
        hook("poststop");
        run_hook(HookStage::Poststop, stdin.as_bytes(), &state).unwrap();
    });
}
