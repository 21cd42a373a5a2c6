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
//! - husk features runc lacks or does differently: the overlay rootfs annotation, a pidfd over
//!   `--pidfd-socket`, and guarantees checked by killing a create half-way.

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

#[test]
fn overlay_rootfs_keeps_the_bundle_rootfs_untouched() {
    if !husk_only("overlay_rootfs_keeps_the_bundle_rootfs_untouched") {
        return;
    }
    let sb = Sandbox::new("overlay-rootfs");
    let config = Config::runc_spec()
        .annotation("io.husk.rootfs.overlay", "true")
        .sh("cat /hc-file 2>/dev/null || echo absent; echo mine > /hc-file; rm /bin/true; cat /hc-file");
    for _ in 0..2 {
        // Each container starts from the untouched lower layer and writes only its upper layer.
        let out = sb.run(&config);
        out.assert_success();
        assert_eq!(out.stdout_lines(), vec!["absent", "mine"], "{out}");
    }
    assert!(
        !sb.rootfs().join("hc-file").exists(),
        "a container wrote into the bundle rootfs"
    );
    assert!(
        sb.rootfs().join("bin/true").exists(),
        "a container deleted from the bundle rootfs"
    );
}

#[test]
fn concurrent_creates_of_one_id_have_exactly_one_winner() {
    if !husk_only("concurrent_creates_of_one_id_have_exactly_one_winner") {
        return;
    }
    let sb = Sandbox::new("create-race");
    let id = sb.new_id();
    sb.register(&id);
    sb.write_config(&Config::runc_spec().sh("sleep 300"));
    let bundle = sb.bundle().to_string_lossy().into_owned();
    let outs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| sb.runtime(&["create", "--bundle", &bundle, &id])))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let winners = outs.iter().filter(|o| o.success()).count();
    assert_eq!(winners, 1, "{outs:#?}");
    for o in outs.iter().filter(|o| !o.success()) {
        o.assert_stderr_contains("exists");
    }
    assert_eq!(sb.status(&id).as_deref(), Some("created"));
}

#[test]
fn a_create_killed_half_way_is_cleaned_by_delete_force() {
    if !husk_only("a_create_killed_half_way_is_cleaned_by_delete_force") {
        return;
    }
    let sb = Sandbox::new("create-killed");
    let id = sb.new_id();
    sb.register(&id);
    let marker = sb.dir().join("hook-ran");
    // The createRuntime hook holds create in the middle, with init alive in its namespaces.
    let script = format!("touch {}; exec sleep 30", marker.display());
    sb.write_config(&Config::runc_spec().sh("true").hook(
        "createRuntime",
        "/bin/sh",
        &["sh", "-c", &script],
        &[],
        None,
    ));
    let mut create = std::process::Command::new(husk_conformance::runtime::runtime_path())
        .arg("--root")
        .arg(sb.root())
        .args(["create", "--bundle"])
        .arg(sb.bundle())
        .arg(&id)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn create");
    husk_conformance::wait::wait_until("the createRuntime hook to run", || marker.exists());
    create.kill().expect("SIGKILL create");
    create.wait().expect("reap create");
    // init must not outlive its create: it sees the channel close and exits (soon, not at once).
    sb.wait_status(&id, "stopped");
    sb.delete_force(&id).assert_success();
    sb.runtime(&["state", &id])
        .assert_failure()
        .assert_stderr_contains("does not exist");
    sb.assert_nothing_left(&id);
}

#[test]
fn pidfd_socket_receives_a_pidfd_of_init() {
    if !husk_only("pidfd_socket_receives_a_pidfd_of_init") {
        return;
    }
    let sb = Sandbox::new("pidfd-socket");
    let id = sb.new_id();
    let path = sb.dir().join("pidfd.sock");
    let socket = husk_conformance::console::ConsoleSocket::listen(&path);
    sb.create(
        &id,
        &Config::runc_spec().sh("sleep 300"),
        &["--pidfd-socket", &path.to_string_lossy()],
    )
    .assert_success();
    let pidfd = socket.receive_fd();
    let fdinfo = fs::read_to_string(format!(
        "/proc/self/fdinfo/{}",
        std::os::fd::AsRawFd::as_raw_fd(&pidfd)
    ))
    .expect("fdinfo");
    let pid = sb.state(&id)["pid"].as_i64().expect("pid");
    assert!(
        fdinfo.lines().any(|l| l == format!("Pid:\t{pid}")),
        "{fdinfo}"
    );
}

#[test]
fn domainname_without_a_uts_namespace_is_refused() {
    if !husk_only("domainname_without_a_uts_namespace_is_refused") {
        return;
    }
    let sb = Sandbox::new("domainname-no-uts");
    let id = sb.new_id();
    let config = Config::runc_spec()
        .remove_namespace("uts")
        .remove("/hostname")
        .domainname("hc.example")
        .sh("true");
    sb.create(&id, &config, &[])
        .assert_failure()
        .assert_stderr_contains("domainname");
    sb.assert_nothing_left(&id);
}
