#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
use super::*;
use oci_spec::runtime::HookBuilder;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A temporary directory removed on drop, even when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("husk-hooks-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills a process recorded by a test hook, if it is still around.
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
    }
}

fn sh(script: &str) -> Hook {
    HookBuilder::default()
        .path("/bin/sh")
        .args(vec!["sh".to_string(), "-c".to_string(), script.to_string()])
        .build()
        .unwrap()
}

fn with_timeout(mut hook: Hook, secs: i64) -> Hook {
    hook.set_timeout(Some(secs));
    hook
}

const STATE: &[u8] =
    br#"{"ociVersion":"1.2.0","id":"c1","status":"creating","pid":42,"bundle":"/b"}"#;

#[test]
fn passes_argv0_args_and_exactly_the_given_environment() {
    let dir = TempDir::new();
    let script = format!(
        "cat /proc/$$/cmdline > {d}/cmdline; cat /proc/$$/environ > {d}/environ",
        d = dir.0.display()
    );
    let args = vec![
        "custom-argv0".to_string(),
        "-c".to_string(),
        script.clone(),
        "x".into(),
        "y z".into(),
    ];
    let hook = HookBuilder::default()
        .path("/bin/sh")
        .args(args)
        .env(vec![
            "FOO=bar baz".to_string(),
            "EMPTY=".to_string(),
            "EQ=a=b".to_string(),
        ])
        .build()
        .unwrap();
    run_hook(&hook, STATE).unwrap();
    let cmdline = std::fs::read(dir.file("cmdline")).unwrap();
    assert_eq!(
        cmdline,
        format!("custom-argv0\0-c\0{script}\0x\0y z\0").into_bytes()
    );
    // std::process::Command passes the variables sorted by name.
    let environ = std::fs::read(dir.file("environ")).unwrap();
    assert_eq!(environ, b"EMPTY=\0EQ=a=b\0FOO=bar baz\0");
}

#[test]
fn an_empty_env_list_gives_an_empty_environment() {
    let dir = TempDir::new();
    let mut hook = sh(&format!(
        "cat /proc/$$/environ > {}",
        dir.file("environ").display()
    ));
    hook.set_env(Some(Vec::new()));
    run_hook(&hook, STATE).unwrap();
    assert_eq!(std::fs::read(dir.file("environ")).unwrap(), b"");
}

#[test]
fn without_env_the_hook_inherits_the_environment() {
    let dir = TempDir::new();
    let hook = sh(&format!(
        "cat /proc/$$/environ > {}",
        dir.file("environ").display()
    ));
    run_hook(&hook, STATE).unwrap();
    let environ = std::fs::read(dir.file("environ")).unwrap();
    let got: std::collections::BTreeSet<&[u8]> = environ
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .collect();
    let want: Vec<Vec<u8>> = std::env::vars_os()
        .map(|(k, v)| {
            let mut e = k.into_encoded_bytes();
            e.push(b'=');
            e.extend(v.into_encoded_bytes());
            e
        })
        .collect();
    assert_eq!(got, want.iter().map(Vec::as_slice).collect());
}

#[test]
fn without_args_argv0_is_the_path() {
    let dir = TempDir::new();
    let script = dir.file("hook.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$0\" > {}\n", dir.file("argv0").display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let hook = HookBuilder::default().path(&script).build().unwrap();
    run_hook(&hook, STATE).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.file("argv0")).unwrap(),
        format!("{}\n", script.display())
    );
}

#[test]
fn the_state_arrives_on_stdin() {
    let dir = TempDir::new();
    run_hook(
        &sh(&format!("cat > {}", dir.file("state").display())),
        STATE,
    )
    .unwrap();
    assert_eq!(std::fs::read(dir.file("state")).unwrap(), STATE);
}

#[test]
fn a_state_larger_than_the_pipe_arrives_whole() {
    let dir = TempDir::new();
    let big: Vec<u8> = (0..1_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    run_hook(&sh(&format!("cat > {}", dir.file("state").display())), &big).unwrap();
    assert_eq!(std::fs::read(dir.file("state")).unwrap(), big);
}

#[test]
fn a_hook_that_ignores_its_stdin_succeeds() {
    // Larger than a pipe buffer, so writing meets a closed pipe (EPIPE) while the hook runs.
    let big = vec![b'x'; 1 << 20];
    run_hook(&sh("exec 0<&-; sleep 0.2"), &big).unwrap();
    run_hook(&sh("exit 0"), &big).unwrap();
}

#[test]
fn a_non_zero_exit_names_the_hook_status_and_stderr() {
    let err = run_hook(&sh("echo out; echo 'it broke' >&2; exit 3"), STATE).unwrap_err();
    assert!(matches!(&err, HookError::Failed { status, .. } if status.code() == Some(3)));
    assert_eq!(
        err.to_string(),
        "hook /bin/sh failed: exit status: 3; stdout: out; stderr: it broke"
    );
}

#[test]
fn death_by_signal_is_a_failure() {
    let err = run_hook(&sh("kill -TERM $$"), STATE).unwrap_err();
    assert_eq!(err.to_string(), "hook /bin/sh failed: signal: 15 (SIGTERM)");
}

#[test]
fn captured_stderr_is_bounded_to_its_tail() {
    let err = run_hook(
        &sh("yes 0123456789 | head -c 200000 >&2; echo THE-END >&2; exit 1"),
        STATE,
    )
    .unwrap_err();
    let HookError::Failed { output, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(output.stderr.len(), OUTPUT_LIMIT);
    assert!(
        output.stderr.ends_with("THE-END\n"),
        "{:?}",
        &output.stderr[OUTPUT_LIMIT - 20..]
    );
}

#[test]
fn a_hook_past_its_timeout_is_killed() {
    let dir = TempDir::new();
    let pid_file = dir.file("pid");
    let hook = with_timeout(
        sh(&format!("echo $$ > {}; exec sleep 600", pid_file.display())),
        1,
    );
    let err = run_hook(&hook, STATE);
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _guard = KillOnDrop(Some(pid));
    let err = err.unwrap_err();
    assert!(
        matches!(err, HookError::TimedOut { timeout: 1, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "hook /bin/sh timed out after 1s and was killed"
    );
    // The hook was killed and reaped: its pid is gone.
    assert_eq!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    );
}

#[test]
fn a_hook_that_leaves_a_daemon_holding_its_output_is_done_when_it_exits() {
    let dir = TempDir::new();
    let pid_file = dir.file("daemon");
    // The background sleep inherits stdout and stderr and keeps them open; the runner must
    // not wait for their end of file. The timeout only turns a hang into a failure.
    let hook = with_timeout(
        sh(&format!(
            "sleep 600 & echo $! > {}; exit 0",
            pid_file.display()
        )),
        60,
    );
    let result = run_hook(&hook, STATE);
    let daemon: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _guard = KillOnDrop(Some(daemon));
    result.unwrap();
}

#[test]
fn invalid_hooks_are_rejected_before_running() {
    let relative = HookBuilder::default().path("bin/true").build().unwrap();
    assert_eq!(
        run_hook(&relative, STATE).unwrap_err().to_string(),
        "hook path bin/true is not absolute"
    );

    for bad in [0, -5] {
        let err = run_hook(&with_timeout(sh("exit 0"), bad), STATE).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("hook /bin/sh: timeout {bad} is not a positive number of seconds")
        );
    }

    let mut no_equals = sh("exit 0");
    no_equals.set_env(Some(vec!["A=1".to_string(), "JUSTNAME".to_string()]));
    assert_eq!(
        run_hook(&no_equals, STATE).unwrap_err().to_string(),
        "hook /bin/sh: environment entry \"JUSTNAME\" is not NAME=VALUE"
    );

    let missing = HookBuilder::default()
        .path("/nonexistent/hook")
        .build()
        .unwrap();
    let err = run_hook(&missing, STATE).unwrap_err();
    assert!(
        matches!(&err, HookError::Spawn { source, .. } if source.kind() == io::ErrorKind::NotFound)
    );
    assert_eq!(err.to_string(), "spawn hook /nonexistent/hook");
}

#[test]
fn run_hooks_stops_at_the_first_failure() {
    let dir = TempDir::new();
    let touch = |name: &str| sh(&format!("touch {}", dir.file(name).display()));
    let hooks = [touch("one"), sh("exit 7"), touch("three")];
    let err = run_hooks(&hooks, STATE).unwrap_err();
    assert!(matches!(&err, HookError::Failed { status, .. } if status.code() == Some(7)));
    assert!(dir.file("one").exists());
    assert!(!dir.file("three").exists());
}

#[test]
fn run_hooks_best_effort_runs_every_hook() {
    let dir = TempDir::new();
    let touch = |name: &str| sh(&format!("touch {}", dir.file(name).display()));
    let relative = HookBuilder::default().path("relative").build().unwrap();
    let hooks = [touch("one"), sh("exit 7"), relative, touch("four")];
    let errors = run_hooks_best_effort(&hooks, STATE);
    assert_eq!(errors.len(), 2);
    assert!(matches!(&errors[0], HookError::Failed { .. }));
    assert!(matches!(&errors[1], HookError::RelativePath { .. }));
    assert!(dir.file("one").exists() && dir.file("four").exists());
    assert!(run_hooks_best_effort(&[touch("five")], STATE).is_empty());
    assert!(Path::new(&dir.file("five")).exists());
}

#[test]
fn without_pidfd_the_runner_still_waits_and_times_out() {
    use crate::linux::seccomp::{compile, forked::in_child, install};
    // pidfd_open fails with ENOSYS in this child, as on a pre-5.3 kernel or under a profile
    // that denies it; the runner falls back to checking the hook periodically.
    let profile = serde_json::from_value(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["pidfd_open"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    }))
    .unwrap();
    let filter = compile(&profile).unwrap();
    let dir = TempDir::new();
    let state_file = dir.file("state");
    in_child(|| {
        nix::sys::prctl::set_no_new_privs().map_err(|e| e.to_string())?;
        install(&filter).map_err(|e| e.to_string())?;
        if pidfd_open(std::process::id()).is_some() {
            return Err("pidfd_open still works".into());
        }
        run_hook(&sh(&format!("cat > {}", state_file.display())), STATE)
            .map_err(|e| e.to_string())?;
        match run_hook(&with_timeout(sh("exec sleep 600"), 1), STATE) {
            Err(HookError::TimedOut { .. }) => Ok(()),
            other => Err(format!("sleep hook: {other:?}")),
        }
    })
    .unwrap();
    assert_eq!(std::fs::read(&state_file).unwrap(), STATE);
}
