//! The root filesystem and mounts: read-only root, tmpfs and bind options,
//! /proc, /sys and /dev, devices, masked and read-only paths, and mount
//! destinations that try to leave the rootfs.

use std::fs;
use std::os::unix::fs::symlink;

use husk_conformance::mountinfo::is_mount_point;
use husk_conformance::{Config, Sandbox};
use serde_json::json;

/// The `/proc/mounts` line for mount point `dest`, from inside a container.
fn mount_line<'a>(mounts: &'a str, dest: &str) -> Option<&'a str> {
    mounts
        .lines()
        .rev()
        .find(|l| l.split_whitespace().nth(1) == Some(dest))
}

/// The comma-separated options of a `/proc/mounts` line.
fn options(line: &str) -> Vec<&str> {
    line.split_whitespace()
        .nth(3)
        .map(|o| o.split(',').collect())
        .unwrap_or_default()
}

#[test]
fn readonly_root_rejects_writes() {
    let sb = Sandbox::new("ro-root");
    let out = sb.run(
        &Config::runc_spec()
            .readonly_root(true)
            .sh("touch /hc-probe; echo rc=$?"),
    );
    out.assert_success();
    assert_eq!(out.stdout.trim(), "rc=1", "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!sb.rootfs().join("hc-probe").exists());
}

#[test]
fn writable_root_accepts_writes() {
    let sb = Sandbox::new("rw-root");
    sb.run(&Config::runc_spec().sh("echo data > /hc-probe"))
        .assert_success();
    assert_eq!(
        fs::read_to_string(sb.rootfs().join("hc-probe")).unwrap_or_default(),
        "data\n"
    );
}

#[test]
fn tmpfs_mount_honours_size_and_mode() {
    let sb = Sandbox::new("tmpfs-options");
    let config = Config::runc_spec()
        .mount(
            "/data",
            "tmpfs",
            "tmpfs",
            &["nosuid", "nodev", "size=1m", "mode=1770"],
        )
        .sh("stat -c %a /data; cat /proc/mounts");
    let out = sb.run(&config);
    out.assert_success();
    assert_eq!(out.stdout_lines().first(), Some(&"1770"), "{out}");
    let line = mount_line(&out.stdout, "/data").unwrap_or_else(|| panic!("no /data mount:\n{out}"));
    assert!(line.starts_with("tmpfs "), "{line}");
    let opts = options(line);
    for expected in ["size=1024k", "mode=1770", "nosuid", "nodev"] {
        assert!(opts.contains(&expected), "{expected} missing from {line}");
    }
}

#[test]
fn readonly_bind_mount_is_readable_not_writable() {
    let sb = Sandbox::new("bind-ro");
    let host = sb.host_dir("data");
    fs::write(host.join("greeting"), "hello from the host\n").expect("write host file");
    let config = Config::runc_spec()
        .bind(&host, "/data", &["ro"])
        .sh("cat /data/greeting; touch /data/new; echo rc=$?");
    let out = sb.run(&config);
    out.assert_success();
    assert_eq!(
        out.stdout_lines(),
        vec!["hello from the host", "rc=1"],
        "{out}"
    );
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!host.join("new").exists());
}

#[test]
fn writable_bind_mount_shares_files_with_the_host() {
    let sb = Sandbox::new("bind-rw");
    let host = sb.host_dir("data");
    sb.run(
        &Config::runc_spec()
            .bind(&host, "/data", &[])
            .sh("echo from-container > /data/out"),
    )
    .assert_success();
    assert_eq!(
        fs::read_to_string(host.join("out")).unwrap_or_default(),
        "from-container\n"
    );
}

#[test]
fn bind_mount_of_a_single_file() {
    let sb = Sandbox::new("bind-file");
    let host = sb.host_dir("files");
    fs::write(host.join("resolv.conf"), "nameserver 198.51.100.53\n").expect("write");
    let config = Config::runc_spec()
        .bind(&host.join("resolv.conf"), "/etc/resolv.conf", &["ro"])
        .sh("cat /etc/resolv.conf");
    sb.run(&config)
        .assert_success()
        .assert_stdout_eq("nameserver 198.51.100.53");
}

#[test]
fn proc_and_sys_are_mounted() {
    let sb = Sandbox::new("proc-sys");
    let out = sb.run(&Config::runc_spec().sh("cat /proc/mounts; echo self=$(readlink /proc/self)"));
    out.assert_success();
    let proc_line = mount_line(&out.stdout, "/proc").unwrap_or_else(|| panic!("no /proc:\n{out}"));
    assert_eq!(
        proc_line.split_whitespace().nth(2),
        Some("proc"),
        "{proc_line}"
    );
    let sys_line = mount_line(&out.stdout, "/sys").unwrap_or_else(|| panic!("no /sys:\n{out}"));
    assert_eq!(
        sys_line.split_whitespace().nth(2),
        Some("sysfs"),
        "{sys_line}"
    );
    assert!(
        options(sys_line).contains(&"ro"),
        "the default /sys is read-only: {sys_line}"
    );
    // /proc belongs to the container's pid namespace: `self` is a small pid.
    let self_line = out
        .stdout_lines()
        .into_iter()
        .find(|l| l.starts_with("self="));
    let pid: u32 = self_line
        .and_then(|l| l[5..].parse().ok())
        .unwrap_or(u32::MAX);
    assert!(
        pid < 10,
        "/proc/self is {pid}: /proc is not the container's\n{out}"
    );
}

#[test]
fn dev_has_the_standard_character_devices() {
    let sb = Sandbox::new("dev-nodes");
    // Expected major:minor in hex, as busybox `stat -c %t:%T` prints them.
    let expected = [
        ("null", "1:3"),
        ("zero", "1:5"),
        ("full", "1:7"),
        ("random", "1:8"),
        ("urandom", "1:9"),
        ("tty", "5:0"),
    ];
    let script: String = expected
        .iter()
        .map(|(name, _)| format!("stat -c '%n %F %t:%T' /dev/{name}; "))
        .collect();
    let out = sb.run(&Config::runc_spec().sh(&script));
    out.assert_success();
    let lines = out.stdout_lines();
    for ((name, numbers), line) in expected.iter().zip(&lines) {
        assert_eq!(
            *line,
            format!("/dev/{name} character special file {numbers}"),
            "{out}"
        );
    }
    assert_eq!(lines.len(), expected.len(), "{out}");
}

#[test]
fn dev_devices_work() {
    let sb = Sandbox::new("dev-work");
    let script = "echo x > /dev/null && echo null-ok; \
                  head -c 8 /dev/zero | wc -c; head -c 8 /dev/urandom | wc -c; \
                  echo x > /dev/full; echo full-rc=$?";
    let out = sb.run(&Config::runc_spec().sh(script));
    out.assert_success();
    assert_eq!(
        out.stdout_lines(),
        vec!["null-ok", "8", "8", "full-rc=1"],
        "{out}"
    );
    assert!(out.stderr.contains("No space left on device"), "{out}");
}

#[test]
fn dev_pts_ptmx_shm_and_mqueue() {
    let sb = Sandbox::new("dev-pts-shm");
    let script = "cat /proc/mounts; test -e /dev/ptmx && echo ptmx-ok; \
                  echo data > /dev/shm/probe && echo shm-ok";
    let out = sb.run(&Config::runc_spec().sh(script));
    out.assert_success();
    for (dest, fstype) in [
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/dev", "tmpfs"),
    ] {
        let line = mount_line(&out.stdout, dest).unwrap_or_else(|| panic!("no {dest}:\n{out}"));
        assert_eq!(line.split_whitespace().nth(2), Some(fstype), "{line}");
    }
    let lines = out.stdout_lines();
    assert!(
        lines.contains(&"ptmx-ok") && lines.contains(&"shm-ok"),
        "{out}"
    );
}

#[test]
fn dev_has_the_standard_symlinks() {
    let sb = Sandbox::new("dev-links");
    let out = sb.run(
        &Config::runc_spec()
            .sh("for l in fd stdin stdout stderr; do echo $l=$(readlink /dev/$l); done"),
    );
    out.assert_success();
    assert_eq!(
        out.stdout_lines(),
        vec![
            "fd=/proc/self/fd",
            "stdin=/proc/self/fd/0",
            "stdout=/proc/self/fd/1",
            "stderr=/proc/self/fd/2"
        ],
        "{out}"
    );
}

#[test]
fn linux_devices_creates_the_node() {
    let sb = Sandbox::new("linux-devices");
    let config = Config::runc_spec()
        .push(
            "/linux/devices",
            json!({ "path": "/dev/hcnull", "type": "c", "major": 1, "minor": 3,
                    "fileMode": 0o640, "uid": 1000, "gid": 100 }),
        )
        // The owner (uid 1000) may write; root without CAP_DAC_OVERRIDE could not.
        .user(1000, 1000)
        .sh("stat -c '%F %t:%T %a %u:%g' /dev/hcnull; echo x > /dev/hcnull && echo write-ok");
    let out = sb.run(&config);
    out.assert_success();
    assert_eq!(
        out.stdout_lines(),
        vec!["character special file 1:3 640 1000:100", "write-ok"],
        "{out}"
    );
}

#[test]
fn masked_file_reads_empty() {
    let sb = Sandbox::new("masked-file");
    fs::write(sb.rootfs().join("etc/hc-secret"), "top secret\n").expect("write secret");
    let script = "wc -c < /etc/hc-secret; wc -c < /proc/timer_list";
    let unmasked = sb.run(
        &Config::runc_spec()
            .set("/linux/maskedPaths", json!([]))
            .sh(script),
    );
    unmasked.assert_success();
    let sizes: Vec<u64> = unmasked
        .stdout_lines()
        .iter()
        .filter_map(|l| l.parse().ok())
        .collect();
    assert!(
        sizes.len() == 2 && sizes.iter().all(|&s| s > 0),
        "unmasked files have content:\n{unmasked}"
    );

    let masked = sb.run(&Config::runc_spec().masked_path("/etc/hc-secret").sh(script));
    masked.assert_success();
    assert_eq!(masked.stdout_lines(), vec!["0", "0"], "{masked}");
    assert_eq!(
        fs::read_to_string(sb.rootfs().join("etc/hc-secret")).unwrap_or_default(),
        "top secret\n"
    );
}

#[test]
fn masked_dir_is_empty_and_read_only() {
    let sb = Sandbox::new("masked-dir");
    let dir = sb.rootfs().join("hc-private");
    fs::create_dir(&dir).expect("mkdir");
    fs::write(dir.join("key"), "k").expect("write");
    let out = sb.run(
        &Config::runc_spec()
            .masked_path("/hc-private")
            .sh("ls -A /hc-private | wc -l; touch /hc-private/new; echo rc=$?"),
    );
    out.assert_success();
    assert_eq!(out.stdout_lines(), vec!["0", "rc=1"], "{out}");
    assert!(dir.join("key").exists() && !dir.join("new").exists());
}

#[test]
fn readonly_paths_reject_writes() {
    let sb = Sandbox::new("readonly-paths");
    let dir = sb.rootfs().join("hc-ro");
    fs::create_dir(&dir).expect("mkdir");
    fs::write(dir.join("file"), "content\n").expect("write");
    let out = sb.run(&Config::runc_spec().readonly_path("/hc-ro").sh(
        "cat /hc-ro/file; touch /hc-ro/new; echo rc=$?; touch /elsewhere && echo rw-elsewhere",
    ));
    out.assert_success();
    assert_eq!(
        out.stdout_lines(),
        vec!["content", "rc=1", "rw-elsewhere"],
        "{out}"
    );
    assert!(out.stderr.contains("Read-only file system"), "{out}");
}

#[test]
fn mount_through_a_symlink_stays_inside_the_rootfs() {
    let sb = Sandbox::new("symlink-escape");
    let victim = sb.host_dir("victim");
    fs::write(victim.join("precious"), "keep me\n").expect("write");
    // rootfs/evil points at a host path; it must resolve inside the rootfs.
    symlink(&victim, sb.rootfs().join("evil")).expect("symlink");
    let config = Config::runc_spec()
        .mount("/evil", "tmpfs", "tmpfs", &["size=1m"])
        .sh("ls -A /evil | wc -l; touch /evil/planted && echo planted");
    let out = sb.run(&config);
    out.assert_success();
    assert_eq!(out.stdout_lines(), vec!["0", "planted"], "{out}");
    assert!(
        !victim.join("planted").exists(),
        "the container wrote into the host dir"
    );
    assert_eq!(
        fs::read_to_string(victim.join("precious")).unwrap_or_default(),
        "keep me\n"
    );
    assert!(!is_mount_point(&victim), "a mount landed on the host path");
    assert!(
        sb.rootfs()
            .join(victim.strip_prefix("/").expect("absolute"))
            .is_dir(),
        "the mount point was created inside the rootfs"
    );
}

#[test]
fn mount_creates_missing_nested_destination_dirs() {
    let sb = Sandbox::new("nested-dest");
    let out = sb.run(
        &Config::runc_spec()
            .mount("/hc/a/b/c", "tmpfs", "tmpfs", &["size=1m"])
            .sh("cat /proc/mounts"),
    );
    out.assert_success();
    let line = mount_line(&out.stdout, "/hc/a/b/c").unwrap_or_else(|| panic!("no mount:\n{out}"));
    assert!(line.starts_with("tmpfs "), "{line}");
    assert!(sb.rootfs().join("hc/a/b/c").is_dir());
}
