//! Tests runc 1.1.5 (the reference runtime on this machine) is known to fail.
//!
//! They check runtime-spec behaviour that runc 1.1 gets wrong or lacks, so
//! they run only when the runtime under test is husk (or when
//! `HUSK_CONFORMANCE_STRICT=1`); otherwise each prints a skip notice.
//!
//! - `domainname_is_set`: `domainname` is runtime-spec 1.1; runc 1.1.5
//!   ignores it (the container sees `(none)`).
//! - `poststart_hooks_wait_for_start`: runc 1.1 runs poststart hooks during
//!   `create`; the spec says after the user process started, before `start`
//!   returns.
//! - `relative_mount_destination_is_refused`, `mount_destination_escaping_root_is_refused`:
//!   husk refuses what runc silently reinterprets (a relative destination, one that climbs
//!   above `/` with `..`): a clear error naming the mount, and nothing left behind.

use std::fs;

use husk_conformance::runtime::husk_only;
use husk_conformance::{Config, Sandbox};

#[test]
fn domainname_is_set() {
    if !husk_only("domainname_is_set") {
        return;
    }
    let sb = Sandbox::new("domainname");
    let out = sb.run(
        &Config::runc_spec()
            .hostname("hc-box")
            .domainname("hc.example")
            .sh("cat /proc/sys/kernel/hostname /proc/sys/kernel/domainname"),
    );
    out.assert_success();
    assert_eq!(out.stdout_lines(), vec!["hc-box", "hc.example"], "{out}");
}

#[test]
fn poststart_hooks_wait_for_start() {
    if !husk_only("poststart_hooks_wait_for_start") {
        return;
    }
    let sb = Sandbox::new("poststart-timing");
    let host = sb.host_dir("hooklog");
    let script = format!("cat > {}/poststart.json", host.display());
    let config = Config::runc_spec().sh("sleep 1000").hook(
        "poststart",
        "/bin/sh",
        &["sh", "-c", &script],
        &[],
        None,
    );
    let id = sb.new_id();
    sb.create_ok(&id, &config);
    assert!(
        !host.join("poststart.json").exists(),
        "poststart ran during create"
    );
    sb.start(&id).assert_success();
    let text = fs::read_to_string(host.join("poststart.json"))
        .expect("poststart ran before start returned");
    let state: serde_json::Value = serde_json::from_str(&text).expect("state JSON");
    assert_eq!(state["id"], id.as_str());
}

#[test]
fn relative_mount_destination_is_refused() {
    if !husk_only("relative_mount_destination_is_refused") {
        return;
    }
    let sb = Sandbox::new("relative-dest");
    let id = sb.new_id();
    let out = sb.create(
        &id,
        &Config::runc_spec()
            .mount("hc-rel", "tmpfs", "tmpfs", &["size=1m"])
            .sh("true"),
        &[],
    );
    out.assert_failure()
        .assert_stderr_contains("hc-rel")
        .assert_stderr_contains("must be an absolute path");
    sb.assert_nothing_left(&id);
}

#[test]
fn mount_destination_escaping_root_is_refused() {
    if !husk_only("mount_destination_escaping_root_is_refused") {
        return;
    }
    let sb = Sandbox::new("dotdot-dest");
    let victim = sb.host_dir("victim");
    let destination = format!("/../../../../../..{}", victim.display());
    let id = sb.new_id();
    let out = sb.create(
        &id,
        &Config::runc_spec()
            .mount(&destination, "tmpfs", "tmpfs", &["size=1m"])
            .sh("true"),
        &[],
    );
    out.assert_failure()
        .assert_stderr_contains("escapes the container root");
    assert_eq!(
        fs::read_dir(&victim).map(|d| d.count()).unwrap_or(0),
        0,
        "nothing was written to the host dir"
    );
    sb.assert_nothing_left(&id);
}
