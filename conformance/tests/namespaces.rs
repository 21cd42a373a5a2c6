//! Namespaces: created as requested, shared when not, joined by path.

use std::fs;

use husk_conformance::{Config, NamedNetns, Output, Sandbox, wait_for_file};

/// `/proc/self/ns/<kind>` of the test process, e.g. `net:[4026531840]`.
fn host_ns(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| panic!("readlink /proc/self/ns/{kind}: {e}"))
}

/// Runs a container printing `<kind>=<ns link>` for each kind; returns the pairs.
fn container_ns(sb: &Sandbox, config: Config, kinds: &[&str]) -> Vec<(String, String)> {
    let script: String = kinds
        .iter()
        .map(|k| format!("echo {k}=$(readlink /proc/self/ns/{k}); "))
        .collect();
    let out = sb.run(&config.sh(&script));
    out.assert_success();
    kinds
        .iter()
        .map(|k| {
            let prefix = format!("{k}=");
            let line = out
                .stdout_lines()
                .into_iter()
                .find(|l| l.starts_with(&prefix));
            let value = line.unwrap_or_else(|| panic!("no {k} line:\n{out}"));
            (k.to_string(), value[prefix.len()..].to_string())
        })
        .collect()
}

fn assert_new_namespace(kind: &str, config: Config, sb: &Sandbox) {
    let inside = container_ns(sb, config, &[kind]);
    assert!(inside[0].1.starts_with(&format!("{kind}:[")), "{inside:?}");
    assert_ne!(
        inside[0].1,
        host_ns(kind),
        "the container must have its own {kind} namespace"
    );
}

#[test]
fn pid_namespace_makes_the_process_pid_1() {
    let sb = Sandbox::new("ns-pid");
    let out = sb.run(&Config::runc_spec().sh("echo pid=$$; ls -d /proc/[0-9]* | wc -l"));
    out.assert_success();
    let lines = out.stdout_lines();
    assert_eq!(lines.first(), Some(&"pid=1"), "{out}");
    let count: usize = lines
        .get(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    // sh, the ls of the pipeline, maybe wc: never the host's processes.
    assert!(
        count <= 3,
        "/proc shows {count} processes: the pid namespace leaks\n{out}"
    );
    assert_new_namespace("pid", Config::runc_spec(), &sb);
}

#[test]
fn uts_namespace_sets_hostname() {
    let sb = Sandbox::new("ns-uts");
    let host_before = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let out = sb.run(
        &Config::runc_spec()
            .hostname("hc-box")
            .sh("hostname; cat /etc/hostname"),
    );
    out.assert_success();
    // /etc/hostname is the rootfs file: the runtime sets the kernel's name only.
    assert_eq!(out.stdout_lines(), vec!["hc-box", "husk"], "{out}");
    let host_after = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    assert_eq!(
        host_before, host_after,
        "the host's hostname must not change"
    );
    assert_new_namespace("uts", Config::runc_spec(), &sb);
}

#[test]
fn ipc_namespace_is_private() {
    let sb = Sandbox::new("ns-ipc");
    assert_new_namespace("ipc", Config::runc_spec(), &sb);
}

#[test]
fn mount_namespace_is_private() {
    let sb = Sandbox::new("ns-mnt");
    assert_new_namespace("mnt", Config::runc_spec(), &sb);
}

#[test]
fn network_namespace_has_only_loopback() {
    let sb = Sandbox::new("ns-net");
    let out = sb.run(&Config::runc_spec().sh("tail -n +3 /proc/net/dev | cut -d: -f1"));
    out.assert_success();
    assert_eq!(out.stdout_lines(), vec!["lo"], "{out}");
    assert_new_namespace("net", Config::runc_spec(), &sb);
}

#[test]
fn network_namespace_loopback_is_up() {
    let sb = Sandbox::new("ns-net-lo-up");
    // IFF_UP is bit 0 of the interface flags.
    let out = sb.run(&Config::runc_spec().sh("cat /sys/class/net/lo/flags"));
    out.assert_success();
    let flags = u32::from_str_radix(out.stdout.trim().trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("flags not hex ({e}):\n{out}"));
    assert_eq!(
        flags & 1,
        1,
        "lo is down in the new network namespace:\n{out}"
    );
}

#[test]
fn cgroup_namespace_roots_the_cgroup_view() {
    let sb = Sandbox::new("ns-cgroup");
    let out = sb.run(
        &Config::runc_spec()
            .namespace("cgroup")
            .sh("cat /proc/self/cgroup"),
    );
    out.assert_success();
    let lines = out.stdout_lines();
    assert!(!lines.is_empty(), "{out}");
    for line in lines {
        assert!(
            line.ends_with(":/"),
            "cgroup path not rooted by the namespace: {line}\n{out}"
        );
    }
    assert_new_namespace("cgroup", Config::runc_spec().namespace("cgroup"), &sb);
}

#[test]
fn namespaces_not_requested_are_shared_with_the_host() {
    let sb = Sandbox::new("ns-shared");
    let config = Config::runc_spec()
        .remove_namespace("pid")
        .remove_namespace("network")
        .remove_namespace("ipc")
        .remove_namespace("uts")
        .remove_namespace("cgroup")
        // The host's hostname cannot be set from a shared uts namespace.
        .remove("/hostname");
    let kinds = ["pid", "net", "ipc", "uts", "cgroup"];
    for (kind, inside) in container_ns(&sb, config, &kinds) {
        assert_eq!(inside, host_ns(&kind), "{kind} should be the host's");
    }
}

fn user_ns_config() -> Config {
    Config::runc_spec()
        .user_namespace(100000, 65536)
        // A cgroup mount needs cgroup delegation that a mapped root lacks here.
        .remove_mount("/sys/fs/cgroup")
}

#[test]
fn user_namespace_maps_container_root_to_host_id() {
    let sb = Sandbox::new("ns-user");
    let out: Output = sb
        .run(&user_ns_config().sh("cat /proc/self/uid_map; cat /proc/self/gid_map; id -u; id -g"));
    out.assert_success();
    let lines: Vec<Vec<&str>> = out
        .stdout_lines()
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        vec![
            vec!["0", "100000", "65536"],
            vec!["0", "100000", "65536"],
            vec!["0"],
            vec!["0"]
        ],
        "{out}"
    );
    assert_new_namespace("user", user_ns_config(), &sb);
}

#[test]
fn user_namespace_process_runs_as_mapped_host_uid() {
    let sb = Sandbox::new("ns-user-host-view");
    let host = sb.host_dir("shared");
    // The mapped root must be able to write the readiness file.
    std::os::unix::fs::chown(&host, Some(100000), Some(100000)).expect("chown host dir");
    // Mapped root cannot create the mount point in a rootfs owned by host root.
    fs::create_dir(sb.rootfs().join("host")).expect("mount point");
    let id = sb.new_id();
    sb.create_ok(
        &id,
        &user_ns_config()
            .bind(&host, "/host", &[])
            .sh("touch /host/ready; sleep 1000"),
    );
    sb.start(&id).assert_success();
    wait_for_file(&host.join("ready"));
    let pid = sb.state(&id)["pid"].as_i64().expect("pid");
    let status =
        fs::read_to_string(format!("/proc/{pid}/status")).expect("status of container init");
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or_default();
    let gid_line = status
        .lines()
        .find(|l| l.starts_with("Gid:"))
        .unwrap_or_default();
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some("100000"),
        "{uid_line}"
    );
    assert_eq!(
        gid_line.split_whitespace().nth(1),
        Some("100000"),
        "{gid_line}"
    );
    let ready = fs::metadata(host.join("ready")).expect("ready file");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&ready),
        100000,
        "files created as container root belong to the mapped id"
    );
}

#[test]
fn joins_an_existing_network_namespace_by_path() {
    let netns = NamedNetns::create();
    netns.ip(&["link", "set", "lo", "mtu", "1234"]);
    netns.ip(&[
        "link", "add", "hcjoin0", "type", "veth", "peer", "name", "hcjoin1",
    ]);
    let sb = Sandbox::new("ns-join-net");
    let path = netns.path().to_string_lossy().into_owned();
    let config = Config::runc_spec()
        .namespace_path("network", &path)
        .sh("readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort; cat /sys/class/net/lo/mtu");
    let out = sb.run(&config);
    out.assert_success();
    let lines = out.stdout_lines();
    let expected_ns = {
        use std::os::unix::fs::MetadataExt;
        let inode = fs::metadata(netns.path()).expect("stat netns").ino();
        format!("net:[{inode}]")
    };
    assert_eq!(lines.first().copied(), Some(expected_ns.as_str()), "{out}");
    assert_eq!(
        lines.get(1..4),
        Some(&["hcjoin0", "hcjoin1", "lo"][..]),
        "{out}"
    );
    assert_eq!(lines.get(4).copied(), Some("1234"), "{out}");
    // Joining must not reconfigure the namespace (lo stays as the owner left it).
    let links = netns.ip(&["link", "show", "lo"]);
    assert!(links.contains("mtu 1234"), "{links}");
}
