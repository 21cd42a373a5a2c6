//! OCI hooks: the six kinds, their order, the state on stdin, args and env,
//! failures and timeouts.

use std::fs;
use std::path::{Path, PathBuf};

use husk_conformance::{Config, Sandbox, wait_for_file, wait_until};
use serde_json::Value;

const ALL_KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// Where a hook of `kind` can reach the log dir: hooks run in the runtime's
/// mount namespace, or (createContainer) in the container's before
/// pivot_root, see the host path; startContainer runs after pivot_root and
/// must use the container path.
fn log_dir_for(kind: &str, host: &Path) -> String {
    if kind == "startContainer" {
        "/hooklog".into()
    } else {
        host.display().to_string()
    }
}

/// A config whose hooks of every kind save their stdin to `<kind>.json` and
/// append their name to `order`.
fn logging_hooks(host: &Path, process: &str) -> Config {
    let mut config = Config::runc_spec().bind(host, "/hooklog", &[]).sh(process);
    for kind in ALL_KINDS {
        let dir = log_dir_for(kind, host);
        let script = format!("cat > {dir}/{kind}.json; echo {kind} >> {dir}/order");
        config = config.hook(kind, "/bin/sh", &["sh", "-c", &script], &[], None);
    }
    config
}

fn order(host: &Path) -> Vec<String> {
    fs::read_to_string(host.join("order"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn hook_state(host: &Path, kind: &str) -> Value {
    let path = host.join(format!("{kind}.json"));
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{kind} hook left no state ({e})"));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{kind} hook stdin is not JSON ({e}): {text}"))
}

fn same_path(a: &Value, b: &Path) -> bool {
    a.as_str()
        .map(PathBuf::from)
        .and_then(|p| p.canonicalize().ok())
        .is_some_and(|p| Some(p) == b.canonicalize().ok())
}

#[test]
fn all_six_hooks_run_in_order_with_the_state_on_stdin() {
    let sb = Sandbox::new("hooks-all");
    let host = sb.host_dir("hooklog");
    let id = sb.new_id();
    sb.create_ok(
        &id,
        &logging_hooks(&host, "echo user >> /hooklog/order; sleep 1000"),
    );
    // runc 1.1 also runs poststart here (a known runc bug); husk_only.rs checks
    // that poststart waits for `start`.
    let after_create = order(&host);
    assert_eq!(
        after_create.get(..3),
        Some(&["prestart", "createRuntime", "createContainer"].map(String::from)[..]),
        "after create: {after_create:?}"
    );
    assert!(
        !after_create
            .iter()
            .any(|k| k == "startContainer" || k == "user"),
        "after create: {after_create:?}"
    );
    let pid = sb.state(&id)["pid"].as_i64().expect("pid");

    for kind in ["prestart", "createRuntime"] {
        let state = hook_state(&host, kind);
        assert_eq!(state["id"], id.as_str(), "{kind}: {state}");
        assert_eq!(state["status"], "creating", "{kind}: {state}");
        assert_eq!(state["pid"].as_i64(), Some(pid), "{kind}: {state}");
        assert!(same_path(&state["bundle"], sb.bundle()), "{kind}: {state}");
        assert!(
            state["ociVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("1.")),
            "{kind}: {state}"
        );
    }
    let state = hook_state(&host, "createContainer");
    assert_eq!(state["id"], id.as_str(), "{state}");
    assert!(same_path(&state["bundle"], sb.bundle()), "{state}");

    sb.start(&id).assert_success();
    // poststart hooks finish before `start` returns.
    let state = hook_state(&host, "poststart");
    assert_eq!(state["id"], id.as_str(), "{state}");
    assert_eq!(state["pid"].as_i64(), Some(pid), "{state}");
    wait_until("the user process ran", || {
        order(&host).contains(&"user".to_string())
    });
    let after_start = order(&host);
    let position = |name: &str| after_start.iter().position(|k| k == name);
    assert!(
        position("startContainer") < position("user"),
        "startContainer before the process: {after_start:?}"
    );
    assert!(
        position("createContainer") < position("poststart"),
        "{after_start:?}"
    );
    assert_eq!(hook_state(&host, "startContainer")["id"], id.as_str());
    assert!(
        !host.join("poststop.json").exists(),
        "poststop ran before delete"
    );

    sb.kill(&id, "KILL").assert_success();
    sb.wait_status(&id, "stopped");
    assert!(
        !host.join("poststop.json").exists(),
        "poststop ran before delete"
    );
    sb.delete(&id).assert_success();
    let state = hook_state(&host, "poststop");
    assert_eq!(state["id"], id.as_str(), "{state}");
    assert_eq!(state["status"], "stopped", "{state}");
    assert_eq!(order(&host).last().map(String::as_str), Some("poststop"));
    let all = order(&host);
    for kind in ALL_KINDS {
        assert_eq!(
            all.iter().filter(|k| *k == kind).count(),
            1,
            "{kind} ran once: {all:?}"
        );
    }
}

#[test]
fn hooks_get_exactly_their_args_and_env() {
    let sb = Sandbox::new("hooks-args-env");
    let host = sb.host_dir("hooklog");
    let out = host.display();
    let script = format!(
        "echo \"$0|$1|$HC_HOOK_VAR\" > {out}/args; env > {out}/env; tr '\\0' '\\n' < /proc/$$/cmdline > {out}/argv"
    );
    let config = Config::runc_spec().sh("true").hook(
        "createRuntime",
        "/bin/sh",
        &["hc-argv0", "-c", &script, "first", "second"],
        &["HC_HOOK_VAR=hooked", "PATH=/usr/bin:/bin"],
        None,
    );
    let id = sb.new_id();
    sb.write_config(&config);
    let bundle = sb.bundle().to_string_lossy().into_owned();
    // A variable in the runtime's own environment must not reach the hook.
    let call = sb
        .call(&["create", "--bundle", &bundle, &id])
        .env("HC_RUNTIME_ONLY", "leak");
    sb.exec(call, "create").assert_success();

    assert_eq!(
        fs::read_to_string(host.join("args"))
            .unwrap_or_default()
            .trim(),
        "first|second|hooked"
    );
    let argv = fs::read_to_string(host.join("argv")).unwrap_or_default();
    assert_eq!(
        argv.lines().next(),
        Some("hc-argv0"),
        "args[0] is argv[0]: {argv:?}"
    );
    let env = fs::read_to_string(host.join("env")).unwrap_or_default();
    assert!(env.lines().any(|l| l == "HC_HOOK_VAR=hooked"), "{env}");
    assert!(
        !env.contains("HC_RUNTIME_ONLY"),
        "the runtime's env leaked into the hook:\n{env}"
    );
}

fn assert_failing_hook_leaves_nothing(kind: &str) {
    let sb = Sandbox::new(&format!("hooks-fail-{kind}"));
    let host = sb.host_dir("shared");
    let config = Config::runc_spec()
        .bind(&host, "/host", &[])
        .sh("touch /host/user-ran")
        .hook(
            kind,
            "/bin/sh",
            &["sh", "-c", "echo hook-complains >&2; exit 3"],
            &[],
            None,
        );
    let id = sb.new_id();
    sb.create(&id, &config, &[])
        .assert_failure()
        .assert_stderr_contains("hook");
    sb.runtime(&["state", &id])
        .assert_failure()
        .assert_stderr_contains("does not exist");
    sb.assert_nothing_left(&id);
    assert!(!host.join("user-ran").exists());
}

#[test]
fn failing_prestart_hook_fails_create_and_leaves_nothing() {
    assert_failing_hook_leaves_nothing("prestart");
}

#[test]
fn failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    assert_failing_hook_leaves_nothing("createRuntime");
}

#[test]
fn failing_create_container_hook_fails_create_and_leaves_nothing() {
    assert_failing_hook_leaves_nothing("createContainer");
}

#[test]
fn poststop_runs_at_delete_of_an_exited_container() {
    let sb = Sandbox::new("hooks-poststop");
    let host = sb.host_dir("hooklog");
    let script = format!("cat > {}/poststop.json", host.display());
    let config = Config::runc_spec().sh("exit 0").hook(
        "poststop",
        "/bin/sh",
        &["sh", "-c", &script],
        &[],
        None,
    );
    let id = sb.new_id();
    sb.create_start_wait(&id, &config);
    assert!(
        !host.join("poststop.json").exists(),
        "poststop ran before delete"
    );
    sb.delete(&id).assert_success();
    assert_eq!(hook_state(&host, "poststop")["id"], id.as_str());
}

#[test]
fn run_runs_poststop_when_the_process_exits() {
    let sb = Sandbox::new("hooks-run-poststop");
    let host = sb.host_dir("hooklog");
    let script = format!("cat > {}/poststop.json", host.display());
    let config = Config::runc_spec().sh("exit 5").hook(
        "poststop",
        "/bin/sh",
        &["sh", "-c", &script],
        &[],
        None,
    );
    let id = sb.new_id();
    let out = sb.run_id(&id, &config);
    assert_eq!(out.code, 5, "{out}");
    assert_eq!(hook_state(&host, "poststop")["status"], "stopped");
}

#[test]
fn hook_past_its_timeout_fails_create_and_is_killed() {
    let sb = Sandbox::new("hooks-timeout");
    let host = sb.host_dir("hooklog");
    let pid_file = host.join("hook.pid");
    let script = format!("echo $$ > {}; exec sleep 120", pid_file.display());
    let config = Config::runc_spec().sh("true").hook(
        "createRuntime",
        "/bin/sh",
        &["sh", "-c", &script],
        &[],
        Some(1),
    );
    let id = sb.new_id();
    sb.create(&id, &config, &[])
        .assert_failure()
        .assert_stderr_contains_any(&["timeout", "timed out"]);
    wait_for_file(&pid_file);
    let pid = fs::read_to_string(&pid_file)
        .unwrap_or_default()
        .trim()
        .to_string();
    wait_until(&format!("hook process {pid} is killed"), || {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
    });
    sb.assert_nothing_left(&id);
}
