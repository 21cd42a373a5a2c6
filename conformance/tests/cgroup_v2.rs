//! The cgroup v2 driver on real containers. This machine is a v1 hybrid: its cgroup2 mount at
//! /sys/fs/cgroup/unified has no controllers, so husk is pointed at it as if it were a pure v2
//! host (HUSK_CGROUP2_MOUNT). What v2 has without controllers is exercised for real:
//! cgroup.procs (join, ps), cgroup.freeze (pause/resume), cgroup.kill (kill --all), cgroup
//! removal, and the eBPF device program; a limit that needs a controller fails cleanly.

use std::fs;
use std::path::{Path, PathBuf};

use husk_conformance::runtime::husk_only;
use husk_conformance::{Config, Output, Sandbox};
use serde_json::json;

fn cgroup2_mount() -> PathBuf {
    let unified = PathBuf::from("/sys/fs/cgroup/unified");
    if unified.join("cgroup.procs").exists() {
        unified
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

fn husk_v2(sb: &Sandbox, args: &[&str]) -> Output {
    let label = args.first().copied().unwrap_or("husk");
    sb.exec(
        sb.call(args).env("HUSK_CGROUP2_MOUNT", cgroup2_mount()),
        label,
    )
}

fn cgroup_dir(id: &str) -> PathBuf {
    cgroup2_mount().join("husk").join(id)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn v2_driver_joins_freezes_kills_and_removes() {
    if !husk_only("v2_driver_joins_freezes_kills_and_removes") {
        return;
    }
    let sb = Sandbox::new("v2-lifecycle");
    let id = sb.new_id();
    sb.register(&id);
    sb.write_config(&Config::runc_spec().sh("sleep 300 & sleep 300 & wait"));
    let bundle = sb.bundle().to_string_lossy().into_owned();
    husk_v2(&sb, &["run", "--detach", "--bundle", &bundle, &id]).assert_success();
    let dir = cgroup_dir(&id);
    husk_conformance::wait::wait_until("three processes in cgroup.procs", || {
        read(&dir.join("cgroup.procs")).lines().count() == 3
    });
    // ps reads cgroup.procs (the state recorded the driver: no env needed from here on).
    let ps = sb.runtime(&["ps", "--format", "json", &id]);
    ps.assert_success();
    let mut listed: Vec<i32> = serde_json::from_str(ps.stdout.trim()).expect("json");
    let mut procs: Vec<i32> = read(&dir.join("cgroup.procs"))
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    listed.sort_unstable();
    procs.sort_unstable();
    assert_eq!(listed, procs);

    sb.runtime(&["pause", &id]).assert_success();
    assert_eq!(sb.status(&id).as_deref(), Some("paused"));
    assert_eq!(read(&dir.join("cgroup.freeze")), "1");
    assert!(
        read(&dir.join("cgroup.events"))
            .lines()
            .any(|l| l == "frozen 1")
    );
    sb.runtime(&["resume", &id]).assert_success();
    assert_eq!(sb.status(&id).as_deref(), Some("running"));
    assert!(
        read(&dir.join("cgroup.events"))
            .lines()
            .any(|l| l == "frozen 0")
    );

    sb.runtime(&["kill", "--all", &id, "KILL"]).assert_success();
    sb.wait_status(&id, "stopped");
    husk_conformance::wait::wait_until("the cgroup to empty", || {
        read(&dir.join("cgroup.procs")).is_empty()
    });
    sb.delete(&id).assert_success();
    assert!(!dir.exists(), "{} left after delete", dir.display());
}

#[test]
fn v2_device_program_allows_reads_and_denies_writes_and_unlisted_devices() {
    if !husk_only("v2_device_program_allows_reads_and_denies_writes_and_unlisted_devices") {
        return;
    }
    for node in ["/dev/loop-control", "/dev/fuse"] {
        assert!(
            Path::new(node).exists(),
            "this test needs the host's {node}"
        );
    }
    let sb = Sandbox::new("v2-devices");
    let id = sb.new_id();
    sb.register(&id);
    let config = Config::runc_spec()
        .set(
            "/linux/resources/devices",
            json!([
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 10, "minor": 237, "access": "rwm"},
                {"allow": false, "type": "c", "major": 10, "minor": 237, "access": "w"}
            ]),
        )
        .bind(Path::new("/dev/loop-control"), "/dev/hc-loop", &[])
        .bind(Path::new("/dev/fuse"), "/dev/hc-fuse", &[])
        .sh(
            "try() { if ( eval \"$1\" ); then echo ok; else echo denied; fi; }; \
             try 'true < /dev/hc-loop'; try 'true > /dev/hc-loop'; try 'true < /dev/hc-fuse'; \
             try 'true > /dev/null'; head -c 4 /dev/zero | wc -c",
        );
    sb.write_config(&config);
    let bundle = sb.bundle().to_string_lossy().into_owned();
    let out = husk_v2(&sb, &["run", "--bundle", &bundle, &id]);
    out.assert_success();
    assert_eq!(
        out.stdout_lines(),
        vec!["ok", "denied", "denied", "ok", "4"],
        "{out}"
    );
    assert!(!cgroup_dir(&id).exists());
}

#[test]
fn v2_limit_without_its_controller_fails_cleanly() {
    if !husk_only("v2_limit_without_its_controller_fails_cleanly") {
        return;
    }
    let sb = Sandbox::new("v2-no-controller");
    let id = sb.new_id();
    sb.register(&id);
    sb.write_config(
        &Config::runc_spec()
            .set("/linux/resources/memory", json!({"limit": 67108864}))
            .sh("echo ran"),
    );
    let bundle = sb.bundle().to_string_lossy().into_owned();
    let out = husk_v2(&sb, &["create", "--bundle", &bundle, &id]);
    out.assert_failure().assert_stderr_contains("memory");
    assert!(!cgroup_dir(&id).exists(), "the cgroup was left behind");
    sb.assert_nothing_left(&id);
}
