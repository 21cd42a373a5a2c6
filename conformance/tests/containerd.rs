//! containerd 1.6 (its runc shim v2, `ctr run --runc-binary`) driving the
//! runtime under test end to end.
//!
//! Each test starts a private containerd (its own root, state, sockets and
//! namespace) and checks on drop that nothing was left: runtime state,
//! container cgroups, mounts, shims or container processes, shim sockets.
//! The tests are serialized (see `engines::containerd`). Run them against
//! runc to tell a runtime bug from a test bug:
//! `HUSK_RUNTIME=runc cargo test -p husk-conformance --test containerd`.

use std::fs;
use std::path::{Path, PathBuf};

use husk_conformance::engines::Containerd;
use husk_conformance::engines::containerd::Mode;
use husk_conformance::engines::image::IMAGE;
use husk_conformance::wait_until;

fn cgroup_file(controller: &str, cgroup: &str, file: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(cgroup.trim_start_matches('/'))
        .join(file)
}

#[track_caller]
fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

#[test]
fn run_rm_echo_and_exit_codes() {
    let ctd = Containerd::start("echo");
    ctd.run(&[
        "run",
        "--rm",
        IMAGE,
        "echo",
        "echo",
        "hello from containerd",
    ])
    .assert_success()
    .assert_stdout_eq("hello from containerd");
    ctd.run(&["run", "--rm", IMAGE, "exit3", "sh", "-c", "exit 3"])
        .assert_code(3);
    ctd.run(&["run", "--rm", IMAGE, "false", "false"])
        .assert_code(1);
    ctd.run(&["containers", "ls", "-q"])
        .assert_success()
        .assert_stdout_eq("");
    ctd.assert_clean();
}

/// The shim starts `create` with an extra fd 3 and no `--preserve-fds`: the
/// container must get exactly stdin, stdout and stderr.
#[test]
fn shim_descriptors_do_not_reach_the_container() {
    let ctd = Containerd::start("fds");
    // Two commands, so sh stays pid 1 instead of exec'ing ls.
    ctd.run(&[
        "run",
        "--rm",
        IMAGE,
        "fds",
        "sh",
        "-c",
        "ls /proc/1/fd; exit 0",
    ])
    .assert_success()
    .assert_stdout_eq("0\n1\n2");
    ctd.assert_clean();
}

/// `ctr run -t`: the runtime sends the pty master to the shim over the
/// console socket; the shell sees a terminal of our size and our typing.
#[test]
fn run_tty_is_an_interactive_terminal() {
    let ctd = Containerd::start("tty");
    let mut term = ctd.pty(&["run", "--rm", "-t", IMAGE, "tty", "sh"], 33, 101);
    term.read_until("# ");
    term.write("tty; stty size; echo typed-$((6*7))\n");
    term.read_until("typed-42");
    term.write("exit 4\n");
    let (code, shown) = term.wait();
    assert_eq!(code, 4, "ctr run -t exit code; terminal showed {shown:?}");
    assert!(shown.contains("/dev/pts/0"), "no tty name in {shown:?}");
    assert!(
        shown.contains("33 101"),
        "window size not passed on: {shown:?}"
    );
    assert!(
        !shown.contains("level="),
        "runtime log lines reached the terminal: {shown:?}"
    );
    ctd.assert_clean();
}

/// A detached task through its whole life: exec (plain, stdin, -t, user and
/// cwd), ps, signals, pause/resume, kill, delete.
#[test]
fn detached_task_lifecycle() {
    let ctd = Containerd::start("task");
    let script = "trap 'echo got-usr1 > /tmp/usr1' USR1; echo started > /tmp/started; \
                  while :; do sleep 1; done";
    ctd.run(&["run", "-d", IMAGE, "t1", "sh", "-c", script])
        .assert_success();
    ctd.wait_task_status("t1", "RUNNING");
    let state = ctd.runtime_root().join("t1");
    assert!(state.exists(), "no runtime state at {}", state.display());
    let cgroup = ctd.container_cgroup("t1");
    assert!(
        cgroup_file("memory", &cgroup, "cgroup.procs").exists(),
        "no cgroup {cgroup}"
    );

    ctd.run(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "t1",
        "sh",
        "-c",
        "echo in-exec; exit 7",
    ])
    .assert_code(7)
    .assert_stdout_eq("in-exec");
    wait_until("the task wrote /tmp/started", || {
        ctd.run(&[
            "task",
            "exec",
            "--exec-id",
            "e2",
            "t1",
            "cat",
            "/tmp/started",
        ])
        .stdout
        .contains("started")
    });
    ctd.run_stdin(
        &["task", "exec", "--exec-id", "e3", "t1", "tr", "a-z", "A-Z"],
        "piped\n",
    )
    .assert_success()
    .assert_stdout_eq("PIPED");
    ctd.run(&[
        "task",
        "exec",
        "--exec-id",
        "e4",
        "--user",
        "1000",
        "--cwd",
        "/tmp",
        "t1",
        "sh",
        "-c",
        "id -u; pwd",
    ])
    .assert_success()
    .assert_stdout_eq("1000\n/tmp");

    let mut term = ctd.pty(
        &["task", "exec", "-t", "--exec-id", "e5", "t1", "sh"],
        24,
        80,
    );
    term.read_until("# ");
    term.write("tty; echo exec-$((2*21))\n");
    term.read_until("exec-42");
    term.write("exit 2\n");
    let (code, shown) = term.wait();
    assert_eq!(
        code, 2,
        "ctr task exec -t exit code; terminal showed {shown:?}"
    );
    assert!(shown.contains("/dev/pts/"), "exec -t has no tty: {shown:?}");

    let ps = ctd.run(&["task", "ps", "t1"]);
    ps.assert_success();
    assert!(
        ps.stdout_lines().len() >= 3,
        "task ps lists the shell and its sleep:\n{ps}"
    );

    ctd.run(&["task", "kill", "--signal", "USR1", "t1"])
        .assert_success();
    wait_until("the task got SIGUSR1", || {
        ctd.run(&["task", "exec", "--exec-id", "e6", "t1", "cat", "/tmp/usr1"])
            .stdout
            .contains("got-usr1")
    });

    let freezer = cgroup_file("freezer", &cgroup, "freezer.state");
    ctd.run(&["task", "pause", "t1"]).assert_success();
    assert_eq!(ctd.task_status("t1").as_deref(), Some("PAUSED"));
    assert_eq!(read_trimmed(&freezer), "FROZEN");
    ctd.run(&["task", "resume", "t1"]).assert_success();
    assert_eq!(ctd.task_status("t1").as_deref(), Some("RUNNING"));
    assert_eq!(read_trimmed(&freezer), "THAWED");

    ctd.run(&["task", "kill", "--signal", "KILL", "t1"])
        .assert_success();
    ctd.wait_task_status("t1", "STOPPED");
    ctd.run(&["task", "delete", "t1"]).assert_success();
    assert!(!state.exists(), "runtime state outlived task delete");
    ctd.run(&["containers", "rm", "t1"]).assert_success();
    ctd.assert_clean();
}

/// `ctr task kill --all` signals every process of the task.
#[test]
fn kill_all_reaches_every_process() {
    let ctd = Containerd::start("kill-all");
    ctd.run(&[
        "run",
        "-d",
        IMAGE,
        "ka",
        "sh",
        "-c",
        "sleep 1000 & sleep 1000 & wait",
    ])
    .assert_success();
    ctd.wait_task_status("ka", "RUNNING");
    wait_until("both sleeps run", || {
        ctd.run(&["task", "ps", "ka"]).stdout_lines().len() >= 4
    });
    ctd.run(&["task", "kill", "--all", "--signal", "KILL", "ka"])
        .assert_success();
    ctd.wait_task_status("ka", "STOPPED");
    ctd.run(&["task", "delete", "ka"]).assert_success();
    ctd.run(&["containers", "rm", "ka"]).assert_success();
    ctd.assert_clean();
}

/// `--memory-limit`: set in the container's cgroup; exceeding it is an OOM
/// kill that ctr reports as exit 137.
#[test]
fn memory_limit_is_enforced() {
    let ctd = Containerd::start("memory");
    let limit = "67108864";
    ctd.run(&[
        "run",
        "-d",
        "--memory-limit",
        limit,
        IMAGE,
        "lim",
        "sleep",
        "1000",
    ])
    .assert_success();
    ctd.wait_task_status("lim", "RUNNING");
    assert_eq!(
        read_trimmed(&cgroup_file(
            "memory",
            &ctd.container_cgroup("lim"),
            "memory.limit_in_bytes"
        )),
        limit
    );
    ctd.run(&["task", "kill", "--signal", "KILL", "lim"])
        .assert_success();
    ctd.wait_task_status("lim", "STOPPED");
    ctd.run(&["task", "delete", "lim"]).assert_success();
    ctd.run(&["containers", "rm", "lim"]).assert_success();

    ctd.run(&[
        "run",
        "--rm",
        "--memory-limit",
        limit,
        IMAGE,
        "oom",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=128M",
        "count=1",
    ])
    .assert_code(137);
    ctd.assert_clean();
}

/// `ctr task metrics` reads the task's cgroup through the shim. On this host
/// the shim can load the cgroup only where the hugetlb hierarchy is mounted,
/// so this daemon runs in a private mount namespace that mounts it.
#[test]
fn task_metrics_report_cgroup_usage() {
    let ctd = Containerd::start_in("metrics", Mode::PrivateMountsWithHugetlb);
    ctd.run(&[
        "run",
        "-d",
        IMAGE,
        "m1",
        "sh",
        "-c",
        "while :; do sleep 1; done",
    ])
    .assert_success();
    ctd.wait_task_status("m1", "RUNNING");
    let out = ctd.run(&["task", "metrics", "--format", "json", "m1"]);
    out.assert_success();
    let metrics: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("metrics are not JSON ({e}):\n{out}"));
    let pids = metrics["pids"]["current"].as_u64().unwrap_or(0);
    assert!(pids >= 1, "no pids in the metrics:\n{out}");
    let usage = metrics["memory"]["usage"]["usage"].as_u64().unwrap_or(0);
    assert!(usage > 0, "no memory usage in the metrics:\n{out}");
    ctd.run(&["task", "kill", "--signal", "KILL", "m1"])
        .assert_success();
    ctd.wait_task_status("m1", "STOPPED");
    ctd.run(&["task", "delete", "m1"]).assert_success();
    ctd.run(&["containers", "rm", "m1"]).assert_success();
    ctd.assert_clean();
}
