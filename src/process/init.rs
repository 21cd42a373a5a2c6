//! The container's init, from birth in its namespaces to execve of the user process.
//! Each step is a small function; the order in [`steps`] is the contract.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

use super::channel::{Channel, ChannelError, ToChild, ToParent};
use super::spawn::{InitContext, error_chain};
use crate::linux::rootfs::{self, MountContext, RootfsError};
use crate::linux::tty::{self, TtyError};
use crate::linux::{capabilities, process_attrs, rlimits, seccomp};
use crate::spec::MountKind;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Tty(#[from] TtyError),
    #[error(transparent)]
    Loopback(#[from] crate::linux::loopback::LoopbackError),
    #[error(transparent)]
    Capabilities(#[from] capabilities::CapabilityError),
    #[error(transparent)]
    Rlimits(#[from] rlimits::RlimitError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error("{op}")]
    Sys {
        op: String,
        #[source]
        source: Errno,
    },
    #[error("{op}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    #[error("exec: {0:?}: stat {0}: no such file or directory")]
    NoExecutable(String),
    #[error("exec: {0:?}: permission denied")]
    NotExecutable(String),
    #[error("argument contains a NUL byte: {0:?}")]
    Nul(String),
}

fn sys(op: impl Into<String>) -> impl FnOnce(Errno) -> InitError {
    let op = op.into();
    move |source| InitError::Sys { op, source }
}

fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> InitError {
    let op = op.into();
    move |source| InitError::Io { op, source }
}

/// Runs init to execve; on failure tells husk why and exits.
pub fn run(ctx: &InitContext, chan: &Channel) -> ! {
    let err = match steps(ctx, chan) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = chan.send(&ToParent::Failed(error_chain(&err)));
    // SAFETY: _exit ends init without running the parent's destructors.
    unsafe { libc::_exit(1) }
}

fn steps(ctx: &InitContext, chan: &Channel) -> Result<std::convert::Infallible, InitError> {
    let plan = ctx.plan;
    let process = &plan.process;
    // stage-1 and init share the channel: wait until husk has our pid before saying anything.
    let _: ToChild = chan.recv()?;
    // A session of our own: no terminal of husk's caller can be ours.
    nix::unistd::setsid().map_err(sys("setsid"))?;
    if ctx.new_keyring {
        join_session_keyring()?;
    }

    if plan.namespaces.new.contains(CloneFlags::CLONE_NEWNET) {
        crate::linux::loopback::bring_up()?;
    }
    // Filesystem, while the host's paths are still visible.
    rootfs::prepare_root(&plan.rootfs, plan.rootfs_propagation)?;
    if let Some(ov) = &ctx.overlay {
        rootfs::mount_overlay(&plan.rootfs, &ov.upper, &ov.work, &ctx.rootfs)?;
    }
    let in_user_ns = plan.namespaces.has(CloneFlags::CLONE_NEWUSER);
    let mctx = MountContext {
        rootfs: &ctx.rootfs,
        in_user_ns,
        cgroup_binds: &ctx.cgroup_binds,
    };
    rootfs::mount_all(&plan.mounts, &mctx)?;
    let own_dev = plan
        .mounts
        .iter()
        .any(|m| m.destination == Path::new("/dev") && !matches!(m.kind, MountKind::Bind { .. }));
    rootfs::populate_dev(&ctx.rootfs, own_dev, &plan.devices, in_user_ns)?;
    // sysctl and oom_score_adj through the host's /proc: net, ipc and uts entries there
    // resolve to the writer's namespaces, which are the container's now.
    for (key, value) in &plan.sysctl {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(io(format!("write sysctl {key}={value}")))?;
    }
    if let Some(adj) = process.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(io(format!("write oom_score_adj {adj}")))?;
    }

    // The runtime's hooks run now: namespaces exist, mounts are done, pivot_root is not.
    chan.send(&ToParent::RunRuntimeHooks)?;
    let state_json = match chan.recv::<ToChild>()? {
        ToChild::RuntimeHooksDone { state } => state,
        other => {
            return Err(InitError::Sys {
                op: format!("unexpected message {other:?}"),
                source: Errno::EPROTO,
            });
        }
    };
    crate::hooks::run_hooks(
        plan.hooks.create_container().as_deref().unwrap_or_default(),
        state_json.as_bytes(),
    )?;

    rootfs::mask_paths(&ctx.rootfs, &plan.masked_paths)?;
    rootfs::readonly_paths(&ctx.rootfs, &plan.readonly_paths)?;
    rootfs::enter_root(&ctx.rootfs, plan.no_pivot)?;
    if let Some(h) = &plan.hostname {
        nix::unistd::sethostname(h).map_err(sys(format!("sethostname {h}")))?;
    }
    if let Some(d) = &plan.domainname {
        set_domainname(d)?;
    }
    if let Some(p) = plan.personality {
        process_attrs::set_personality(p).map_err(sys(format!("personality {p:#x}")))?;
    }
    if process.terminal
        && let Some(sock) = &ctx.console_socket
    {
        let slave = tty::setup_console(sock, process.console_size)?;
        rootfs::bind_console(&slave)?;
    }
    // Read-only root last among mounts: the steps above may still create files.
    if plan.readonly_root {
        rootfs::readonly_root()?;
    }
    let start = || {
        wait_for_start(&ctx.exec_fifo)?;
        crate::hooks::run_hooks(
            plan.hooks.start_container().as_deref().unwrap_or_default(),
            state_json.as_bytes(),
        )
        .map_err(InitError::from)
    };
    launch(
        process,
        plan.seccomp.as_ref(),
        ctx.preserve_fds,
        chan,
        start,
    )
}

/// The common end of init and of `exec`: resolve the program, apply limits, identity,
/// capabilities and seccomp, report ready, wait for `release`, and exec.
pub fn launch(
    process: &crate::spec::ProcessPlan,
    filter: Option<&seccomp::CompiledSeccomp>,
    preserve_fds: u32,
    chan: &Channel,
    release: impl FnOnce() -> Result<(), InitError>,
) -> Result<std::convert::Infallible, InitError> {
    let program = find_program(&process.args[0], &process.env, &process.cwd)?;
    if !Path::new(&process.cwd).exists() {
        std::fs::create_dir_all(&process.cwd)
            .map_err(io(format!("create cwd {}", process.cwd.display())))?;
    }
    rlimits::apply(&process.rlimits)?;
    if let Some(mask) = process.umask {
        nix::sys::stat::umask(Mode::from_bits_truncate(mask));
    }
    // Before any filter: a profile need not allow close_range.
    prepare_fds(preserve_fds)?;
    // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: do it while we have it.
    let seccomp_early = !process.no_new_privileges;
    if seccomp_early && let Some(filter) = filter {
        seccomp::install(filter)?;
    }
    switch_user(process)?;
    std::env::set_current_dir(&process.cwd)
        .map_err(io(format!("chdir {}", process.cwd.display())))?;
    if process.no_new_privileges {
        process_attrs::set_no_new_privs().map_err(sys("set no_new_privs"))?;
    }
    let argv = cstrings(&process.args)?;
    let envp = cstrings(&with_home(&process.env, process.uid))?;
    let program_c = CString::new(program.as_os_str().as_bytes())
        .map_err(|_| InitError::Nul(program.display().to_string()))?;

    chan.send(&ToParent::Ready)?;
    release()?;
    // Seccomp as late as possible: everything above may need syscalls the filter denies.
    if !seccomp_early && let Some(filter) = filter {
        seccomp::install(filter)?;
    }
    reset_signals()?;
    let err = nix::unistd::execve(&program_c, &argv, &envp)
        .map_err(sys(format!("exec {}", program.display())));
    match err {
        Ok(never) => match never {},
        Err(e) => Err(e),
    }
}

fn join_session_keyring() -> Result<(), InitError> {
    match process_attrs::join_session_keyring(c"_ses.husk") {
        // Kernels without keys, or a user namespace over its key quota: run without one, like runc.
        Ok(()) | Err(Errno::ENOSYS | Errno::EDQUOT | Errno::EPERM) => Ok(()),
        Err(source) => Err(InitError::Sys {
            op: "join session keyring".into(),
            source,
        }),
    }
}

/// Like runc: without HOME in the environment, the user's home from the container's
/// /etc/passwd (or `/`).
fn with_home(env: &[String], uid: u32) -> Vec<String> {
    let mut env = env.to_vec();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_owned())
                })
            })
            .unwrap_or_else(|| "/".to_owned());
        env.push(format!("HOME={home}"));
    }
    env
}

fn cstrings(items: &[String]) -> Result<Vec<CString>, InitError> {
    items
        .iter()
        .map(|s| CString::new(s.as_bytes()).map_err(|_| InitError::Nul(s.clone())))
        .collect()
}

fn set_domainname(name: &str) -> Result<(), InitError> {
    process_attrs::set_domainname(name).map_err(sys(format!("setdomainname {name}")))
}

/// Resolves args[0] like execvp would, but with the container's PATH.
fn find_program(arg0: &str, env: &[String], cwd: &Path) -> Result<PathBuf, InitError> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if arg0.contains('/') {
        // runc's wording: engines map "no such file or directory" to 127 and "permission
        // denied" to 126.
        // A relative path (./run.sh) is relative to the process's cwd, where execve runs it.
        let path = cwd.join(arg0);
        return match std::fs::metadata(&path) {
            Err(_) => Err(InitError::NoExecutable(arg0.to_owned())),
            Ok(_) if !executable(&path) => Err(InitError::NotExecutable(arg0.to_owned())),
            Ok(_) => Ok(path),
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(arg0))
        .find(|p| executable(p))
        .ok_or_else(|| InitError::NotFound(arg0.to_owned()))
}

fn switch_user(process: &crate::spec::ProcessPlan) -> Result<(), InitError> {
    if let Some(caps) = &process.capabilities {
        capabilities::drop_bounding(caps)?;
    }
    // Keep the permitted set across setuid; `apply` then sets the exact sets.
    process_attrs::set_keepcaps(true).map_err(sys("set keepcaps"))?;
    let groups: Vec<Gid> = process
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    match nix::unistd::setgroups(&groups) {
        // A user namespace with setgroups denied: nothing to set.
        Ok(()) | Err(Errno::EPERM) if groups.is_empty() => {}
        Ok(()) => {}
        Err(e) => return Err(sys(format!("setgroups {:?}", process.additional_gids))(e)),
    }
    let gid = Gid::from_raw(process.gid);
    let uid = Uid::from_raw(process.uid);
    nix::unistd::setresgid(gid, gid, gid).map_err(sys(format!("setgid {}", process.gid)))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(sys(format!("setuid {}", process.uid)))?;
    if let Some(caps) = &process.capabilities {
        capabilities::apply(caps)?;
    }
    process_attrs::set_keepcaps(false).map_err(sys("clear keepcaps"))?;
    Ok(())
}

/// Blocks until `start` opens the exec fifo for reading, then tells it we are going.
fn wait_for_start(fifo: &OwnedFd) -> Result<(), InitError> {
    let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    let w = nix::fcntl::open(
        path.as_str(),
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys(
        "open exec fifo for writing (is /proc mounted in the container?)",
    ))?;
    nix::unistd::write(&w, b"0").map_err(sys("write exec fifo"))?;
    Ok(())
}

/// Only stdio and the preserved fds survive exec. The fds are marked close-on-exec, not
/// closed: husk's own (channel, fifo) are needed until exec.
fn prepare_fds(preserve: u32) -> Result<(), InitError> {
    process_attrs::keep_only_fds_below(3 + preserve).map_err(sys("mark fds close-on-exec"))
}

/// The user process starts with default signal handling and an empty mask, whatever husk had
/// (Rust ignores SIGPIPE; `run` blocks the signals it forwards).
fn reset_signals() -> Result<(), InitError> {
    process_attrs::reset_signals().map_err(sys("reset signal dispositions and mask"))
}
