//! `exec`: a second process in a running container, as engines start `podman exec` and
//! `ctr task exec`. Runs on runc as well as husk.

use std::fs;

use husk_conformance::console::ConsoleSocket;
use husk_conformance::{Config, Sandbox};
use serde_json::json;

fn sleeper() -> Config {
    Config::runc_spec()
        .hostname("hc-exec")
        .sh("echo $$ > /tmp/init.pid; sleep 300")
}

fn running(sb: &Sandbox) -> String {
    let id = sb.new_id();
    sb.create_ok(&id, &sleeper());
    sb.start(&id).assert_success();
    sb.wait_status(&id, "running");
    id
}

#[test]
fn exec_runs_in_the_container_namespaces_and_returns_the_exit_code() {
    let sb = Sandbox::new("exec-ns");
    let id = running(&sb);
    let out = sb.runtime(&[
        "exec",
        &id,
        "sh",
        "-c",
        "hostname; cat /tmp/init.pid; ls /proc | grep -c '^[0-9]'; exit 7",
    ]);
    assert_eq!(out.code, 7, "{out}");
    let lines = out.stdout_lines();
    assert_eq!(lines[0], "hc-exec", "{out}");
    // It sees the container's pid 1 (the sleeper's shell) in the container's pid namespace.
    assert_eq!(lines[1], "1", "{out}");
    let procs: u32 = lines[2].parse().expect("count");
    assert!(procs <= 4, "exec sees host processes: {out}");
}

#[test]
fn exec_applies_user_env_and_cwd() {
    let sb = Sandbox::new("exec-user");
    let id = running(&sb);
    let out = sb.runtime(&[
        "exec",
        "--user",
        "1000:1000",
        "--env",
        "HC_X=42",
        "--cwd",
        "/tmp",
        &id,
        "sh",
        "-c",
        "id -u; id -g; echo $HC_X; pwd",
    ]);
    out.assert_success();
    assert_eq!(
        out.stdout_lines(),
        vec!["1000", "1000", "42", "/tmp"],
        "{out}"
    );
}

#[test]
fn exec_with_a_process_json() {
    let sb = Sandbox::new("exec-process");
    let id = running(&sb);
    let process = json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "echo from-process-json; echo $HC_P"],
        "env": ["PATH=/bin:/usr/bin", "HC_P=p"],
        "cwd": "/"
    });
    let path = sb.dir().join("process.json");
    fs::write(&path, process.to_string()).expect("write process.json");
    let out = sb.runtime(&["exec", "--process", &path.to_string_lossy(), &id]);
    out.assert_success();
    assert_eq!(out.stdout_lines(), vec!["from-process-json", "p"], "{out}");
}

#[test]
fn exec_detached_writes_its_pid_file() {
    let sb = Sandbox::new("exec-detach");
    let id = running(&sb);
    let pid_file = sb.dir().join("exec.pid");
    sb.runtime(&[
        "exec",
        "--detach",
        "--pid-file",
        &pid_file.to_string_lossy(),
        &id,
        "sleep",
        "300",
    ])
    .assert_success();
    let pid: i32 = fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    let cmdline =
        fs::read_to_string(format!("/proc/{pid}/cmdline")).expect("exec'd process is alive");
    assert!(cmdline.starts_with("sleep"), "{cmdline:?}");
    // It belongs to the container: `ps --format json` lists it (husk and runc both have ps).
    let ps = sb.runtime(&["ps", "--format", "json", &id]);
    ps.assert_success();
    let pids: Vec<i32> = serde_json::from_str(ps.stdout.trim()).expect("json pids");
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");
}

#[test]
fn exec_with_a_tty_sends_the_pty_to_the_console_socket() {
    let sb = Sandbox::new("exec-tty");
    let id = running(&sb);
    let socket_path = sb.dir().join("exec-console.sock");
    let console = ConsoleSocket::listen(&socket_path);
    let socket = socket_path.to_string_lossy().into_owned();
    sb.runtime(&[
        "exec",
        "--tty",
        "--detach",
        "--console-socket",
        &socket,
        &id,
        "sh",
        "-c",
        "tty; read l; echo got:$l; sleep 1",
    ])
    .assert_success();
    let mut pty = console.receive();
    let first = pty.read_until("/dev/pts/");
    assert!(first.contains("/dev/pts/"), "{first:?}");
    pty.write("hello\n");
    let rest = pty.read_until("got:hello");
    assert!(rest.contains("got:hello"), "{rest:?}");
}

#[test]
fn exec_into_a_stopped_container_fails() {
    let sb = Sandbox::new("exec-stopped");
    let id = sb.new_id();
    sb.create_start_wait(&id, &Config::runc_spec().sh("true"));
    sb.runtime(&["exec", &id, "true"]).assert_failure();
}

#[test]
fn exec_of_a_missing_program_fails_clearly() {
    let sb = Sandbox::new("exec-missing");
    let id = running(&sb);
    sb.runtime(&["exec", &id, "hc-no-such-program"])
        .assert_failure()
        .assert_stderr_contains("hc-no-such-program");
    // The container is unharmed.
    assert_eq!(sb.status(&id).as_deref(), Some("running"));
}

#[test]
fn exec_cap_adds_a_capability_in_runc_spelling() {
    let sb = Sandbox::new("exec-cap");
    let id = running(&sb);
    let out = sb.runtime(&[
        "exec",
        "--cap",
        "CAP_SYS_ADMIN",
        &id,
        "sh",
        "-c",
        "grep CapEff /proc/self/status",
    ]);
    out.assert_success();
    let hex = out
        .stdout
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_owned();
    let eff = u64::from_str_radix(&hex, 16).expect("CapEff hex");
    assert_ne!(eff & (1 << 21), 0, "CAP_SYS_ADMIN missing: {out}");
}

#[test]
fn exec_joins_the_user_namespace_of_the_container() {
    let sb = Sandbox::new("exec-userns");
    let id = sb.new_id();
    let config = sleeper()
        .namespace("user")
        .set(
            "/linux/uidMappings",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
        )
        .set(
            "/linux/gidMappings",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
        )
        .remove_mount("/sys/fs/cgroup");
    sb.create_ok(&id, &config);
    sb.start(&id).assert_success();
    sb.wait_status(&id, "running");
    let out = sb.runtime(&[
        "exec",
        &id,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //'",
    ]);
    out.assert_success();
    assert_eq!(out.stdout_lines(), vec!["0", "0 100000 65536"], "{out}");
}
