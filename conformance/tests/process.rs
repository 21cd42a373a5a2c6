//! The container process: cwd, env, user, umask, rlimits, capabilities,
//! no_new_privs, oom score, sysctls, inherited fds and the terminal.

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::OwnedFd;

use husk_conformance::{Config, ConsoleSocket, Output, Sandbox};
use serde_json::json;

/// The value of `Key:` in the container's /proc/self/status, whitespace-normalized.
fn status_field(out: &Output, key: &str) -> String {
    let prefix = format!("{key}:");
    out.stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .map(|l| {
            l[prefix.len()..]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| panic!("no {key} in status:\n{out}"))
}

fn run_status(sb: &Sandbox, config: Config) -> Output {
    let out = sb.run(&config.sh("cat /proc/self/status"));
    out.assert_success();
    out
}

#[test]
fn cwd_is_set() {
    let sb = Sandbox::new("cwd");
    sb.run(&Config::runc_spec().cwd("/var/www").sh("pwd"))
        .assert_success()
        .assert_stdout_eq("/var/www");
}

#[test]
fn missing_cwd_is_created() {
    let sb = Sandbox::new("cwd-missing");
    sb.run(&Config::runc_spec().cwd("/hc/new/dir").sh("pwd"))
        .assert_success()
        .assert_stdout_eq("/hc/new/dir");
    assert!(sb.rootfs().join("hc/new/dir").is_dir());
}

#[test]
fn env_is_exactly_the_configured_list() {
    let sb = Sandbox::new("env");
    let config = Config::runc_spec()
        .set(
            "/process/env",
            json!([
                "PATH=/bin:/sbin",
                "HC_ONE=1",
                "HC_SPACED=a b  c",
                "HOME=/root"
            ]),
        )
        // `env` itself, not a shell: a shell would add PWD and SHLVL.
        .args(&["env"]);
    let out = sb.run(&config);
    out.assert_success();
    let mut lines = out.stdout_lines();
    lines.sort_unstable();
    assert_eq!(
        lines,
        vec![
            "HC_ONE=1",
            "HC_SPACED=a b  c",
            "HOME=/root",
            "PATH=/bin:/sbin"
        ],
        "{out}"
    );
}

#[test]
fn home_defaults_from_passwd() {
    let sb = Sandbox::new("env-home");
    let config = Config::runc_spec()
        .set("/process/env", json!(["PATH=/bin"]))
        .user(1000, 1000)
        .sh("echo $HOME");
    sb.run(&config)
        .assert_success()
        .assert_stdout_eq("/home/husk");
}

#[test]
fn user_uid_gid_and_additional_gids() {
    let sb = Sandbox::new("user-ids");
    let out = run_status(
        &sb,
        Config::runc_spec()
            .user(1000, 1000)
            .additional_gids(&[10, 100]),
    );
    assert_eq!(status_field(&out, "Uid"), "1000 1000 1000 1000");
    assert_eq!(status_field(&out, "Gid"), "1000 1000 1000 1000");
    let mut groups: Vec<String> = status_field(&out, "Groups")
        .split(' ')
        .map(String::from)
        .collect();
    groups.sort();
    assert_eq!(groups, vec!["10", "100"], "{out}");
}

#[test]
fn id_reports_names_from_the_rootfs() {
    let sb = Sandbox::new("user-id-names");
    sb.run(
        &Config::runc_spec()
            .user(1000, 1000)
            .additional_gids(&[10])
            .sh("id"),
    )
    .assert_success()
    .assert_stdout_eq("uid=1000(husk) gid=1000(husk) groups=10(wheel)");
}

#[test]
fn umask_is_applied() {
    let sb = Sandbox::new("umask");
    let out = sb.run(
        &Config::runc_spec()
            .umask(0o027)
            .sh("umask; touch /tmp/f; stat -c %a /tmp/f"),
    );
    out.assert_success();
    assert_eq!(out.stdout_lines(), vec!["0027", "640"], "{out}");
}

#[test]
fn rlimits_set_soft_and_hard() {
    let sb = Sandbox::new("rlimits");
    let config = Config::runc_spec()
        .rlimit("RLIMIT_NOFILE", 512, 1000)
        .rlimit("RLIMIT_NPROC", 300, 400)
        .sh("ulimit -n; ulimit -Hn; grep 'Max processes' /proc/self/limits");
    let out = sb.run(&config);
    out.assert_success();
    let lines = out.stdout_lines();
    assert_eq!(lines.get(..2), Some(&["512", "1000"][..]), "{out}");
    let nproc: Vec<&str> = lines
        .get(2)
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(nproc.get(2..4), Some(&["300", "400"][..]), "{out}");
}

#[test]
fn rlimit_above_the_hard_limit_fails_naming_rlimit() {
    let sb = Sandbox::new("rlimit-too-high");
    let id = sb.new_id();
    // This machine's hard nofile limit is 20000 and root lacks CAP_SYS_RESOURCE.
    let out = sb.run_id(
        &id,
        &Config::runc_spec()
            .rlimit("RLIMIT_NOFILE", 1 << 20, 1 << 20)
            .sh("echo ran"),
    );
    out.assert_failure().assert_stderr_contains("rlimit");
    assert!(!out.stdout.contains("ran"), "{out}");
    sb.assert_nothing_left(&id);
}

#[test]
fn default_capabilities_match_runc_spec() {
    let sb = Sandbox::new("caps-default");
    let out = run_status(&sb, Config::runc_spec());
    // CAP_KILL (5), CAP_NET_BIND_SERVICE (10), CAP_AUDIT_WRITE (29).
    let expected = "0000000020000420";
    for field in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_field(&out, field), expected, "{field}\n{out}");
    }
    // runc spec asks for ambient caps without inheritable ones; the kernel only
    // raises an ambient cap that is also inheritable, so none are raised, and
    // the runtime must not fail over it.
    for field in ["CapInh", "CapAmb"] {
        assert_eq!(
            status_field(&out, field),
            "0000000000000000",
            "{field}\n{out}"
        );
    }
}

#[test]
fn capabilities_are_exactly_the_requested_set() {
    let sb = Sandbox::new("caps-set");
    let out = run_status(
        &sb,
        Config::runc_spec().capabilities(&["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"]),
    );
    // CAP_CHOWN (0), CAP_KILL (5), CAP_NET_RAW (13).
    for field in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(
            status_field(&out, field),
            "0000000000002021",
            "{field}\n{out}"
        );
    }
    for field in ["CapInh", "CapAmb"] {
        assert_eq!(
            status_field(&out, field),
            "0000000000000000",
            "{field}\n{out}"
        );
    }
}

#[test]
fn ambient_capabilities_reach_a_non_root_user() {
    let sb = Sandbox::new("caps-ambient");
    let caps = json!(["CAP_NET_BIND_SERVICE"]);
    let mut config = Config::runc_spec().user(1000, 1000);
    for kind in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        config = config.set(&format!("/process/capabilities/{kind}"), caps.clone());
    }
    let out = run_status(&sb, config);
    for field in ["CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"] {
        assert_eq!(
            status_field(&out, field),
            "0000000000000400",
            "{field}\n{out}"
        );
    }
}

#[test]
fn no_new_privileges_follows_the_config() {
    let sb = Sandbox::new("nnp");
    let on = run_status(&sb, Config::runc_spec().no_new_privileges(true));
    assert_eq!(status_field(&on, "NoNewPrivs"), "1");
    let off = run_status(&sb, Config::runc_spec().no_new_privileges(false));
    assert_eq!(status_field(&off, "NoNewPrivs"), "0");
}

#[test]
fn oom_score_adj_is_applied() {
    let sb = Sandbox::new("oom-score");
    sb.run(
        &Config::runc_spec()
            .oom_score_adj(123)
            .sh("cat /proc/self/oom_score_adj"),
    )
    .assert_success()
    .assert_stdout_eq("123");
}

#[test]
fn sysctls_apply_inside_the_container_namespaces_only() {
    let sb = Sandbox::new("sysctl");
    let read = |key: &str| fs::read_to_string(format!("/proc/sys/{key}")).unwrap_or_default();
    let host_before = (read("net/ipv4/ip_forward"), read("kernel/shm_rmid_forced"));
    let wanted_forward = if host_before.0.trim() == "1" {
        "0"
    } else {
        "1"
    };
    let wanted_rmid = if host_before.1.trim() == "1" {
        "0"
    } else {
        "1"
    };
    let config = Config::runc_spec()
        .sysctl("net.ipv4.ip_forward", wanted_forward)
        .sysctl("kernel.shm_rmid_forced", wanted_rmid)
        .sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shm_rmid_forced");
    let out = sb.run(&config);
    out.assert_success();
    assert_eq!(
        out.stdout_lines(),
        vec![wanted_forward, wanted_rmid],
        "{out}"
    );
    let host_after = (read("net/ipv4/ip_forward"), read("kernel/shm_rmid_forced"));
    assert_eq!(host_before, host_after, "sysctls leaked to the host");
}

/// A file holding `text`, opened for reading, as an fd to hand to the runtime.
fn fd_with(sb: &Sandbox, name: &str, text: &str) -> OwnedFd {
    let path = sb.dir().join(name);
    File::create(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    OwnedFd::from(File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display())))
}

/// Runs `create [--preserve-fds N]` with fds 3, 4 and 5 inherited, then start,
/// and returns what the container printed to stdout and stderr.
fn run_with_inherited_fds(sb: &Sandbox, preserve: Option<&str>, script: &str) -> (String, String) {
    let id = sb.new_id();
    sb.write_config(&Config::runc_spec().sh(script));
    let bundle = sb.bundle().to_string_lossy().into_owned();
    let mut args = vec!["create", "--bundle", &bundle];
    if let Some(n) = preserve {
        args.extend(["--preserve-fds", n]);
    }
    args.push(&id);
    let invocation = sb
        .call(&args)
        .inherit_fd(fd_with(sb, "three", "three"), 3)
        .inherit_fd(fd_with(sb, "four", "four"), 4)
        .inherit_fd(fd_with(sb, "five", "five"), 5);
    let created = sb.exec(invocation, "create");
    created.assert_success();
    sb.start(&id).assert_success();
    sb.wait_status(&id, "stopped");
    (created.stdout_now(), created.stderr_now())
}

/// Lists the shell's open fds, one per line, then `end`. A plain `ls` with
/// no pipe or redirect: for those busybox ash itself holds extra fds (pipe
/// ends, a saved copy of stdout) while the command runs.
const LIST_SHELL_FDS: &str = "ls /proc/$$/fd; echo end";

/// The fd numbers [`LIST_SHELL_FDS`] printed, sorted, and the lines after `end`.
fn parse_fd_listing(out: &str) -> (Vec<u32>, Vec<&str>) {
    let mut lines = out.lines().map(str::trim);
    let mut fds: Vec<u32> = lines
        .by_ref()
        .take_while(|l| *l != "end")
        .filter_map(|l| l.parse().ok())
        .collect();
    fds.sort_unstable();
    (fds, lines.filter(|l| !l.is_empty()).collect())
}

#[test]
fn only_stdio_reaches_the_container() {
    let sb = Sandbox::new("fds-stdio-only");
    let (out, err) = run_with_inherited_fds(&sb, None, LIST_SHELL_FDS);
    let (fds, _) = parse_fd_listing(&out);
    assert_eq!(fds, vec![0, 1, 2], "container output: {out}\n{err}");
}

#[test]
fn preserve_fds_passes_exactly_n_extra_fds() {
    let sb = Sandbox::new("fds-preserve");
    let script = format!("{LIST_SHELL_FDS}; cat <&3; echo; cat <&4; echo");
    let (out, err) = run_with_inherited_fds(&sb, Some("2"), &script);
    let (fds, rest) = parse_fd_listing(&out);
    assert_eq!(fds, vec![0, 1, 2, 3, 4], "container output: {out}\n{err}");
    assert_eq!(
        rest,
        vec!["three", "four"],
        "container output: {out}\n{err}"
    );
}

#[test]
fn terminal_master_is_sent_to_the_console_socket() {
    let sb = Sandbox::new("terminal");
    let socket_path = sb.dir().join("console.sock");
    let console = ConsoleSocket::listen(&socket_path);
    let id = sb.new_id();
    let config =
        Config::runc_spec()
            .terminal(true)
            .sh("tty; test -c /dev/console && echo console-ok; \
         test -t 0 && test -t 1 && test -t 2 && echo stdio-is-tty; \
         read line; echo got:$line");
    sb.create(
        &id,
        &config,
        &["--console-socket", &socket_path.to_string_lossy()],
    )
    .assert_success();
    let mut pty = console.receive();
    sb.start(&id).assert_success();
    let before = pty.read_until("stdio-is-tty");
    let tty_line = before
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("/dev/"));
    let tty_name = tty_line.unwrap_or_else(|| panic!("no tty name in {before:?}"));
    let number = tty_name
        .strip_prefix("/dev/pts/")
        .unwrap_or_else(|| panic!("tty is {tty_name}"));
    assert!(number.parse::<u32>().is_ok(), "tty is {tty_name}");
    assert!(before.contains("console-ok"), "no /dev/console: {before:?}");
    pty.write("ping\n");
    pty.read_until("got:ping");
    sb.wait_status(&id, "stopped");
}

#[test]
fn run_in_the_foreground_with_a_terminal_is_its_own_console() {
    use husk_conformance::engines::pty::PtySession;
    use husk_conformance::engines::run::Cmd;
    let sb = Sandbox::new("foreground-tty");
    let id = sb.new_id();
    sb.register(&id);
    sb.write_config(
        &Config::runc_spec()
            .terminal(true)
            .sh("tty; stty size; read x; echo got:$x; exit 5"),
    );
    let cmd = Cmd::new(husk_conformance::runtime::runtime_path(), sb.dir())
        .arg("--root")
        .arg(sb.root())
        .args(["run", "--bundle"])
        .arg(sb.bundle())
        .arg(&id);
    let mut session = PtySession::spawn(&cmd, 31, 97);
    session.read_until("31 97");
    session.write("hello\r");
    let (code, out) = session.wait();
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("got:hello"), "{out}");
}

#[test]
fn relative_program_path_is_relative_to_cwd() {
    let sb = Sandbox::new("relative-program");
    let out = sb.run(
        &Config::runc_spec()
            .cwd("/bin")
            .args(&["./echo", "from-cwd"]),
    );
    out.assert_success();
    assert_eq!(out.stdout.trim(), "from-cwd", "{out}");
}
