//! The container lifecycle as an engine drives it: create, start, state,
//! kill, delete, run, list, and the runc error wording engines depend on.

use std::fs;
use std::path::Path;

use husk_conformance::{Config, Sandbox, wait_for_file};
use serde_json::Value;

/// A container that signals readiness with `/host/ready`, exits 0 on SIGTERM
/// and otherwise runs until killed.
fn sleeper(host: &Path) -> Config {
    Config::runc_spec()
        .bind(host, "/host", &[])
        .sh("trap 'exit 0' TERM; touch /host/ready; sleep 1000 & wait")
}

/// Pid of the container as the state reports it.
fn state_pid(state: &Value) -> i64 {
    state["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("state has no numeric pid: {state}"))
}

#[test]
fn create_does_not_run_user_code_until_start() {
    let sb = Sandbox::new("create-then-start");
    let host = sb.host_dir("shared");
    let pid_file = sb.dir().join("container.pid");
    let config = Config::runc_spec()
        .bind(&host, "/host", &[])
        .sh("touch /host/started; exec sleep 1000 # hc-user-code-marker");
    let id = sb.new_id();
    sb.create(&id, &config, &["--pid-file", &pid_file.to_string_lossy()])
        .assert_success();

    let state = sb.state(&id);
    assert_eq!(state["status"], "created", "{state}");
    assert_eq!(state["id"], id.as_str(), "{state}");
    let pid = state_pid(&state);
    assert!(pid > 0, "{state}");
    let written = fs::read_to_string(&pid_file).expect("pid file written by create");
    assert_eq!(written.trim(), pid.to_string(), "pid file content");
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "init process {pid} is alive"
    );
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("hc-user-code-marker"),
        "the user process must not be exec'd before start"
    );
    assert!(!host.join("started").exists(), "user code ran before start");

    sb.start(&id).assert_success();
    wait_for_file(&host.join("started"));
    let state = sb.state(&id);
    assert_eq!(state["status"], "running", "{state}");
    assert_eq!(state_pid(&state), pid, "start must not change the pid");
}

#[test]
fn kill_term_stops_and_delete_removes() {
    let sb = Sandbox::new("kill-term-delete");
    let host = sb.host_dir("shared");
    let id = sb.new_id();
    sb.create_ok(&id, &sleeper(&host));
    sb.start(&id).assert_success();
    wait_for_file(&host.join("ready"));
    assert_eq!(sb.status(&id).as_deref(), Some("running"));

    sb.kill(&id, "TERM").assert_success();
    sb.wait_status(&id, "stopped");

    sb.delete(&id).assert_success();
    sb.runtime(&["state", &id])
        .assert_failure()
        .assert_stderr_contains("does not exist");
    sb.assert_nothing_left(&id);
}

#[test]
fn missing_container_does_not_exist_for_state_kill_delete_start() {
    let sb = Sandbox::new("missing-id");
    let id = sb.new_id();
    for verb in [vec!["state"], vec!["kill"], vec!["delete"], vec!["start"]] {
        let mut args = verb.clone();
        args.push(&id);
        sb.runtime(&args)
            .assert_failure()
            .assert_stderr_contains("does not exist");
    }
}

#[test]
fn force_delete_of_missing_container_succeeds() {
    let sb = Sandbox::new("force-delete-missing");
    let id = sb.new_id();
    sb.delete_force(&id).assert_success();
}

#[test]
fn run_returns_the_exit_code() {
    let sb = Sandbox::new("run-exit-code");
    let out = sb.run(&Config::runc_spec().sh("echo before-exit; exit 42"));
    assert_eq!(out.code, 42, "{out}");
    assert!(out.stdout.contains("before-exit"), "{out}");
}

#[test]
fn run_returns_128_plus_signal_when_killed() {
    let sb = Sandbox::new("run-signal-code");
    // Without a pid namespace the shell is not an init process, so it can
    // kill itself with SIGKILL.
    let config = Config::runc_spec()
        .remove_namespace("pid")
        .sh("kill -KILL $$; exit 3");
    let out = sb.run(&config);
    assert_eq!(out.code, 128 + 9, "{out}");
}

#[test]
fn run_detach_returns_while_container_runs() {
    let sb = Sandbox::new("run-detach");
    let host = sb.host_dir("shared");
    let id = sb.new_id();
    sb.write_config(&sleeper(&host));
    let bundle = sb.bundle().to_string_lossy().into_owned();
    sb.runtime(&["run", "--detach", "--bundle", &bundle, &id])
        .assert_success();
    wait_for_file(&host.join("ready"));
    assert_eq!(sb.status(&id).as_deref(), Some("running"));
}

#[test]
fn run_keep_leaves_a_stopped_container() {
    let sb = Sandbox::new("run-keep");
    let id = sb.new_id();
    sb.write_config(&Config::runc_spec().sh("exit 7"));
    let bundle = sb.bundle().to_string_lossy().into_owned();
    let out = sb.runtime(&["run", "--keep", "--bundle", &bundle, &id]);
    assert_eq!(out.code, 7, "{out}");
    assert_eq!(sb.status(&id).as_deref(), Some("stopped"));
    sb.delete(&id).assert_success();
    sb.assert_nothing_left(&id);
}

#[test]
fn run_without_keep_removes_the_container() {
    let sb = Sandbox::new("run-removes");
    let id = sb.new_id();
    sb.run_id(&id, &Config::runc_spec().sh("true"))
        .assert_success();
    sb.runtime(&["state", &id])
        .assert_failure()
        .assert_stderr_contains("does not exist");
    sb.assert_nothing_left(&id);
}

#[test]
fn delete_of_running_container_needs_force() {
    let sb = Sandbox::new("delete-running");
    let host = sb.host_dir("shared");
    let id = sb.new_id();
    sb.create_ok(&id, &sleeper(&host));
    sb.start(&id).assert_success();
    wait_for_file(&host.join("ready"));
    let pid = state_pid(&sb.state(&id));

    sb.delete(&id).assert_failure();
    assert_eq!(
        sb.status(&id).as_deref(),
        Some("running"),
        "failed delete must not touch the container"
    );

    sb.delete_force(&id).assert_success();
    sb.runtime(&["state", &id])
        .assert_failure()
        .assert_stderr_contains("does not exist");
    husk_conformance::wait_until(&format!("process {pid} is gone"), || process_gone(pid));
    sb.assert_nothing_left(&id);
}

/// True when `pid` no longer exists or is a zombie awaiting the reaper.
fn process_gone(pid: i64) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn delete_of_created_container_removes_it() {
    let sb = Sandbox::new("delete-created");
    let id = sb.new_id();
    sb.create_ok(&id, &Config::runc_spec().sh("exit 0"));
    let pid = state_pid(&sb.state(&id));
    sb.delete(&id).assert_success();
    sb.runtime(&["state", &id]).assert_failure();
    husk_conformance::wait_until(&format!("init {pid} is gone"), || process_gone(pid));
    sb.assert_nothing_left(&id);
}

#[test]
fn kill_of_stopped_container_fails_with_not_running() {
    let sb = Sandbox::new("kill-stopped");
    let id = sb.new_id();
    sb.create_start_wait(&id, &Config::runc_spec().sh("true"));
    sb.kill(&id, "KILL")
        .assert_failure()
        .assert_stderr_contains("not running");
    assert_eq!(sb.status(&id).as_deref(), Some("stopped"));
}

#[test]
fn start_twice_fails() {
    let sb = Sandbox::new("start-twice");
    let host = sb.host_dir("shared");
    let id = sb.new_id();
    sb.create_ok(&id, &sleeper(&host));
    sb.start(&id).assert_success();
    wait_for_file(&host.join("ready"));
    let second = sb.start(&id);
    second.assert_failure();
    assert!(
        !second.stderr.trim().is_empty(),
        "a failed start explains itself:\n{second}"
    );
    assert_eq!(sb.status(&id).as_deref(), Some("running"));
}

#[test]
fn start_of_stopped_container_fails() {
    let sb = Sandbox::new("start-stopped");
    let id = sb.new_id();
    sb.create_start_wait(&id, &Config::runc_spec().sh("true"));
    sb.start(&id).assert_failure();
    assert_eq!(sb.status(&id).as_deref(), Some("stopped"));
}

#[test]
fn duplicate_id_is_rejected_and_first_container_untouched() {
    let sb = Sandbox::new("duplicate-id");
    let host = sb.host_dir("shared");
    let id = sb.new_id();
    sb.create_ok(&id, &sleeper(&host));
    let pid = state_pid(&sb.state(&id));

    sb.create(&id, &sleeper(&host), &[])
        .assert_failure()
        .assert_stderr_contains_any(&["already exists", "container with id exists"]);
    let state = sb.state(&id);
    assert_eq!(state["status"], "created", "{state}");
    assert_eq!(state_pid(&state), pid);
}

#[test]
fn kill_accepts_sigkill_kill_and_9() {
    let sb = Sandbox::new("kill-signal-forms");
    for signal in ["SIGKILL", "KILL", "9"] {
        let host = sb.host_dir(signal);
        let id = sb.new_id();
        sb.create_ok(&id, &sleeper(&host));
        sb.start(&id).assert_success();
        wait_for_file(&host.join("ready"));
        sb.kill(&id, signal).assert_success();
        sb.wait_status(&id, "stopped");
    }
}

#[test]
fn kill_default_signal_is_term() {
    let sb = Sandbox::new("kill-default");
    let host = sb.host_dir("shared");
    let id = sb.new_id();
    // Exits 0 on TERM only: any other default signal would leave it running
    // (pid 1 ignores signals it has no handler for) or kill it.
    sb.create_ok(
        &id,
        &Config::runc_spec()
            .bind(&host, "/host", &[])
            .sh("trap 'echo term > /host/got; exit 0' TERM; touch /host/ready; sleep 1000 & wait"),
    );
    sb.start(&id).assert_success();
    wait_for_file(&host.join("ready"));
    sb.runtime(&["kill", &id]).assert_success();
    sb.wait_status(&id, "stopped");
    assert_eq!(
        fs::read_to_string(host.join("got"))
            .unwrap_or_default()
            .trim(),
        "term"
    );
}

#[test]
fn list_shows_containers_in_every_format() {
    let sb = Sandbox::new("list");
    let ids = [sb.new_id(), sb.new_id()];
    for id in &ids {
        sb.create_ok(id, &Config::runc_spec().sh("sleep 1000"));
    }

    let quiet = sb.runtime(&["list", "-q"]);
    quiet.assert_success();
    let mut listed: Vec<&str> = quiet.stdout_lines();
    listed.sort_unstable();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected, "{quiet}");

    let table = sb.runtime(&["list"]);
    table.assert_success();
    let lines = table.stdout_lines();
    let header: Vec<&str> = lines
        .first()
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(header.first(), Some(&"ID"), "{table}");
    assert!(
        header.contains(&"STATUS") && header.contains(&"PID"),
        "{table}"
    );
    for id in &ids {
        let row = lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(id.as_str()));
        let row = row.unwrap_or_else(|| panic!("no row for {id}:\n{table}"));
        assert!(row.split_whitespace().any(|f| f == "created"), "{row}");
    }

    let json = sb.runtime(&["list", "--format", "json"]);
    json.assert_success();
    let value: Value =
        serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}:\n{json}"));
    let entries = value
        .as_array()
        .unwrap_or_else(|| panic!("not an array:\n{json}"));
    assert_eq!(entries.len(), 2, "{json}");
    for id in &ids {
        let entry = entries.iter().find(|e| e["id"] == id.as_str());
        let entry = entry.unwrap_or_else(|| panic!("{id} missing:\n{json}"));
        assert_eq!(entry["status"], "created");
        assert!(entry["pid"].as_i64().is_some_and(|p| p > 0), "{entry}");
    }
}

#[test]
fn list_of_empty_root_is_empty() {
    let sb = Sandbox::new("list-empty");
    let out = sb.runtime(&["list", "-q"]);
    out.assert_success();
    assert!(out.stdout.trim().is_empty(), "{out}");
    let json = sb.runtime(&["list", "--format", "json"]);
    json.assert_success();
    let value: Value =
        serde_json::from_str(json.stdout.trim()).unwrap_or_else(|e| panic!("{e}:\n{json}"));
    // runc prints `null` for an empty list; an empty array is just as good.
    assert!(
        value.is_null() || value.as_array().is_some_and(Vec::is_empty),
        "{json}"
    );
}

#[test]
fn state_reports_oci_fields() {
    let sb = Sandbox::new("state-fields");
    let id = sb.new_id();
    let config = Config::runc_spec()
        .sh("sleep 1000")
        .annotation("org.example.purpose", "conformance")
        .annotation("org.example/with-slash", "yes");
    sb.create_ok(&id, &config);
    let state = sb.state(&id);
    let oci_version = state["ociVersion"].as_str().unwrap_or_default();
    assert!(oci_version.starts_with("1."), "{state}");
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["status"], "created");
    assert!(state_pid(&state) > 0);
    let bundle = Path::new(state["bundle"].as_str().unwrap_or_default());
    assert!(bundle.is_absolute(), "{state}");
    assert_eq!(
        bundle.canonicalize().ok(),
        sb.bundle().canonicalize().ok(),
        "{state}"
    );
    assert_eq!(
        state["annotations"]["org.example.purpose"], "conformance",
        "{state}"
    );
    assert_eq!(
        state["annotations"]["org.example/with-slash"], "yes",
        "{state}"
    );
    let created = state["created"].as_str().unwrap_or_default();
    assert!(looks_like_rfc3339(created), "created {created:?}");
    assert!(
        state.get("owner").is_some_and(Value::is_string),
        "owner field: {state}"
    );
}

/// `2026-12-02T00:39:15.12063418Z` or with an offset.
fn looks_like_rfc3339(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 20
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && (text.ends_with('Z') || text[19..].contains(['+', '-']))
}

#[test]
fn pid_file_of_run_detach_matches_state() {
    let sb = Sandbox::new("run-pid-file");
    let id = sb.new_id();
    let pid_file = sb.dir().join("run.pid");
    sb.write_config(&Config::runc_spec().sh("sleep 1000"));
    let bundle = sb.bundle().to_string_lossy().into_owned();
    sb.runtime(&[
        "run",
        "--detach",
        "--pid-file",
        &pid_file.to_string_lossy(),
        "--bundle",
        &bundle,
        &id,
    ])
    .assert_success();
    let pid = state_pid(&sb.state(&id));
    assert_eq!(
        fs::read_to_string(&pid_file).unwrap_or_default().trim(),
        pid.to_string()
    );
}

#[test]
fn log_format_json_writes_json_error_lines() {
    let sb = Sandbox::new("log-json");
    let id = sb.new_id();
    let log = sb.dir().join("runtime.log");
    let log_arg = log.to_string_lossy().into_owned();
    let out = sb.exec(
        sb.call_with_globals(
            &["--log", &log_arg, "--log-format", "json"],
            &["state", &id],
        ),
        "state",
    );
    out.assert_failure();
    let text = fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("log file {}: {e}\n{out}", log.display()));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the error must be logged to --log");
    let mut saw_error = false;
    for line in lines {
        let entry: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for field in ["level", "msg", "time"] {
            assert!(
                entry.get(field).is_some_and(Value::is_string),
                "{field} missing: {line}"
            );
        }
        if entry["level"] == "error"
            && entry["msg"]
                .as_str()
                .is_some_and(|m| m.contains("does not exist"))
        {
            saw_error = true;
        }
    }
    assert!(saw_error, "no error entry saying `does not exist`:\n{text}");
}

#[test]
fn log_format_text_is_default_and_not_json() {
    let sb = Sandbox::new("log-text");
    let id = sb.new_id();
    let log = sb.dir().join("runtime.log");
    let log_arg = log.to_string_lossy().into_owned();
    sb.exec(
        sb.call_with_globals(&["--log", &log_arg], &["state", &id]),
        "state",
    )
    .assert_failure();
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("does not exist"), "{text}");
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_err()),
        "text format must not be JSON:\n{text}"
    );
}
