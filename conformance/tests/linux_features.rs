//! More of what config.json can ask for on Linux: overlay mounts, several id-map ranges, the
//! container's own cgroup under /sys/fs/cgroup, personality and time namespaces.

use std::fs;

use husk_conformance::runtime::husk_only;
use husk_conformance::{Config, Sandbox};
use serde_json::json;

#[test]
fn overlay_mount_from_the_config() {
    let sb = Sandbox::new("overlay-mount");
    let lower = sb.host_dir("lower");
    let upper = sb.host_dir("upper");
    let work = sb.host_dir("work");
    fs::write(lower.join("from-lower"), "lower\n").expect("write");
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let out = sb.run(
        &Config::runc_spec()
            .mount("/data", "overlay", "overlay", &[&data])
            .sh("cat /data/from-lower; echo new > /data/from-container; grep ' /data ' /proc/mounts | cut -d' ' -f3"),
    );
    out.assert_success();
    assert_eq!(out.stdout_lines(), vec!["lower", "overlay"], "{out}");
    assert_eq!(
        fs::read_to_string(upper.join("from-container")).unwrap_or_default(),
        "new\n"
    );
    assert!(
        !lower.join("from-container").exists(),
        "the write reached the lower layer"
    );
}

#[test]
fn user_namespace_with_several_id_ranges() {
    let sb = Sandbox::new("userns-ranges");
    let maps = json!([
        {"containerID": 0, "hostID": 100000, "size": 1},
        {"containerID": 1, "hostID": 200001, "size": 65535}
    ]);
    let out = sb.run(
        &Config::runc_spec()
            .namespace("user")
            .set("/linux/uidMappings", maps.clone())
            .set("/linux/gidMappings", maps)
            .remove_mount("/sys/fs/cgroup")
            .sh("cat /proc/self/uid_map /proc/self/gid_map | tr -s ' ' | sed 's/^ //'"),
    );
    out.assert_success();
    assert_eq!(
        out.stdout_lines(),
        vec![
            "0 100000 1",
            "1 200001 65535",
            "0 100000 1",
            "1 200001 65535"
        ],
        "{out}"
    );
}

#[test]
fn cgroup_mount_shows_the_container_limits() {
    let sb = Sandbox::new("cgroup-mount");
    let out = sb.run(
        &Config::runc_spec()
            .set("/linux/resources/pids", json!({"limit": 77}))
            .sh("cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"),
    );
    out.assert_success();
    assert_eq!(out.stdout.trim(), "77", "{out}");
}

#[test]
fn personality_linux32() {
    if !husk_only("personality_linux32") {
        return;
    }
    let sb = Sandbox::new("personality");
    let out = sb.run(
        &Config::runc_spec()
            .set("/linux/personality", json!({"domain": "LINUX32"}))
            .sh("uname -m"),
    );
    out.assert_success();
    assert_eq!(out.stdout.trim(), "i686", "{out}");
}

#[test]
fn time_namespace_offsets_boottime() {
    if !husk_only("time_namespace_offsets_boottime") {
        return;
    }
    let sb = Sandbox::new("timens");
    let day = 86_400 * 1000;
    let out = sb.run(
        &Config::runc_spec()
            .namespace("time")
            .set(
                "/linux/timeOffsets",
                json!({"boottime": {"secs": day, "nanosecs": 0}}),
            )
            .sh("cut -d. -f1 /proc/uptime"),
    );
    out.assert_success();
    let uptime: i64 = out.stdout.trim().parse().expect("uptime");
    assert!(
        uptime >= day,
        "uptime {uptime} lacks the {day}s offset: {out}"
    );
}

fn mkdir_denied() -> serde_json::Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
        ]
    })
}

#[test]
fn seccomp_profile_denies_a_syscall() {
    let sb = Sandbox::new("seccomp");
    let out = sb.run(
        &Config::runc_spec()
            .set("/linux/seccomp", mkdir_denied())
            .sh("mkdir /tmp/hc-dir 2>&1; test -d /tmp/hc-dir && echo made || echo denied; touch /tmp/hc-file && echo touched"),
    );
    out.assert_success();
    let text = out.stdout.clone();
    assert!(text.contains("Operation not permitted"), "{out}");
    assert!(text.contains("denied") && text.contains("touched"), "{out}");
}

#[test]
fn seccomp_profile_applies_to_exec_processes() {
    let sb = Sandbox::new("seccomp-exec");
    let id = sb.new_id();
    sb.create_ok(
        &id,
        &Config::runc_spec()
            .set("/linux/seccomp", mkdir_denied())
            .sh("sleep 300"),
    );
    sb.start(&id).assert_success();
    sb.wait_status(&id, "running");
    let out = sb.runtime(&[
        "exec",
        &id,
        "sh",
        "-c",
        "mkdir /tmp/hc-exec-dir || echo denied",
    ]);
    assert!(out.stdout.contains("denied"), "{out}");
}
