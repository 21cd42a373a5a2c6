//! Bad input: each case must fail with a non-zero exit, say what is wrong on
//! stderr, and leave nothing behind (no state, process, mount or cgroup).

use std::fs;

use husk_conformance::{Config, Output, Sandbox};
use serde_json::json;

/// Entries left in the state root, ignoring dotfiles (a runtime may keep a
/// global lock file there).
fn root_entries(sb: &Sandbox) -> Vec<String> {
    fs::read_dir(sb.root())
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `create` with `config` and checks the failure is clean.
#[track_caller]
fn create_fails(name: &str, config: &Config, mentions: &[&str]) -> Output {
    let sb = Sandbox::new(name);
    let id = sb.new_id();
    let out = sb.create(&id, config, &[]);
    assert_clean_failure(&sb, &id, &out, mentions);
    out
}

#[track_caller]
fn assert_clean_failure(sb: &Sandbox, id: &str, out: &Output, mentions: &[&str]) {
    out.assert_failure().assert_stderr_contains_any(mentions);
    sb.runtime(&["state", id]).assert_failure();
    sb.assert_nothing_left(id);
    assert_eq!(
        root_entries(sb),
        Vec::<String>::new(),
        "state root not empty after:\n{out}"
    );
}

#[test]
fn invalid_json_is_rejected() {
    let sb = Sandbox::new("bad-json");
    let id = sb.new_id();
    let bundle = sb.bundle().to_string_lossy().into_owned();
    fs::write(sb.bundle().join("config.json"), "{not json").expect("write");
    let out = sb.runtime(&["create", "--bundle", &bundle, &id]);
    assert_clean_failure(
        &sb,
        &id,
        &out,
        &["json", "invalid character", "parse", "line 1"],
    );
}

#[test]
fn missing_config_json_is_rejected() {
    let sb = Sandbox::new("no-config");
    let id = sb.new_id();
    let bundle = sb.bundle().to_string_lossy().into_owned();
    let out = sb.runtime(&["create", "--bundle", &bundle, &id]);
    assert_clean_failure(&sb, &id, &out, &["config.json"]);
}

#[test]
fn missing_process_args_is_rejected() {
    create_fails(
        "no-args",
        &Config::runc_spec().remove("/process/args"),
        &["args"],
    );
}

#[test]
fn empty_process_args_is_rejected() {
    create_fails(
        "empty-args",
        &Config::runc_spec().set("/process/args", json!([])),
        &["args"],
    );
}

#[test]
fn missing_rootfs_is_rejected() {
    create_fails(
        "no-rootfs",
        &Config::runc_spec().set("/root/path", json!("hc-no-such-rootfs")),
        &["hc-no-such-rootfs"],
    );
}

#[test]
fn ids_with_slash_or_dotdot_are_rejected() {
    let sb = Sandbox::new("bad-ids");
    sb.write_config(&Config::runc_spec().sh("true"));
    let bundle = sb.bundle().to_string_lossy().into_owned();
    let escape_name = format!("hc-escape-{}", std::process::id());
    let escaping = format!("../{escape_name}");
    for id in ["hc/slash", "..", ".", escaping.as_str()] {
        sb.register(id);
        let out = sb.runtime(&["create", "--bundle", &bundle, id]);
        out.assert_failure();
        let stderr = out.stderr.to_ascii_lowercase();
        assert!(
            stderr.contains("id") && (stderr.contains("invalid") || stderr.contains("format")),
            "{out}"
        );
        assert_eq!(root_entries(&sb), Vec::<String>::new(), "after id {id:?}");
    }
    let parent = sb.root().parent().expect("root has a parent");
    assert!(
        !parent.join(&escape_name).exists(),
        "an id escaped the state root"
    );
    assert!(!parent.join("slash").exists() && !sb.root().join("hc").exists());
}

#[test]
fn unknown_namespace_type_is_rejected() {
    create_fails(
        "bad-ns-type",
        &Config::runc_spec().push("/linux/namespaces", json!({ "type": "hcbogus" })),
        &["hcbogus"],
    );
}

#[test]
fn duplicate_namespace_type_is_rejected() {
    create_fails(
        "dup-ns-type",
        &Config::runc_spec().push("/linux/namespaces", json!({ "type": "pid" })),
        &["duplicate", "pid"],
    );
}

#[test]
fn joining_a_missing_namespace_path_fails() {
    create_fails(
        "bad-ns-path",
        &Config::runc_spec().namespace_path("network", "/run/netns/hc-no-such-ns"),
        &["hc-no-such-ns"],
    );
}

#[test]
fn unknown_rlimit_type_is_rejected() {
    create_fails(
        "bad-rlimit",
        &Config::runc_spec().rlimit("RLIMIT_HCBOGUS", 1, 1),
        &["RLIMIT_HCBOGUS"],
    );
}

#[test]
fn relative_cwd_is_rejected() {
    create_fails(
        "relative-cwd",
        &Config::runc_spec().cwd("relative/dir"),
        &["cwd"],
    );
}

#[test]
fn missing_executable_fails_create() {
    create_fails(
        "no-exec",
        &Config::runc_spec().args(&["/hc/no/such/binary"]),
        &["/hc/no/such/binary"],
    );
}

#[test]
fn executable_not_in_path_fails_create() {
    create_fails(
        "no-exec-path",
        &Config::runc_spec().args(&["hc-no-such-command"]),
        &["hc-no-such-command"],
    );
}

#[test]
fn unknown_filesystem_type_fails_naming_the_destination() {
    create_fails(
        "bad-fstype",
        &Config::runc_spec().mount("/hc-dest", "hcfs-bogus", "none", &[]),
        &["/hc-dest"],
    );
}

#[test]
fn invalid_device_type_is_rejected() {
    let config = Config::runc_spec().push(
        "/linux/devices",
        json!({ "path": "/dev/hcx", "type": "q", "major": 1, "minor": 3 }),
    );
    create_fails("bad-device", &config, &["device"]);
}

#[test]
fn sysctl_outside_a_namespaced_subsystem_is_rejected() {
    create_fails(
        "bad-sysctl",
        &Config::runc_spec().sysctl("kernel.hc_bogus", "1"),
        &["kernel.hc_bogus"],
    );
}

#[test]
fn missing_hook_binary_fails_create() {
    let config =
        Config::runc_spec()
            .sh("true")
            .hook("createRuntime", "/hc/no/such/hook", &[], &[], None);
    create_fails("no-hook", &config, &["hook"]);
}

#[test]
fn terminal_without_console_socket_is_rejected() {
    create_fails(
        "tty-no-socket",
        &Config::runc_spec().terminal(true),
        &["console"],
    );
}

#[test]
fn console_socket_without_terminal_is_rejected() {
    let sb = Sandbox::new("socket-no-tty");
    let id = sb.new_id();
    let socket = sb.dir().join("unused.sock");
    let out = sb.create(
        &id,
        &Config::runc_spec().sh("true"),
        &["--console-socket", &socket.to_string_lossy()],
    );
    assert_clean_failure(&sb, &id, &out, &["console"]);
}

#[test]
fn other_1x_oci_versions_are_accepted() {
    let sb = Sandbox::new("oci-versions");
    for version in ["1.0.0", "1.1.0", "1.2.0"] {
        let out = sb.run(
            &Config::runc_spec()
                .set("/ociVersion", json!(version))
                .sh("echo ok"),
        );
        out.assert_success().assert_stdout_eq("ok");
    }
}
