//! Starting a second process in a running container (`husk exec`): stage-1 joins every
//! namespace of the container's init that differs from ours (user first), then forks the new
//! process so it is born inside the container's pid namespace.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Pid, fork};

use super::channel::{Channel, ToChild, ToParent};
use super::init::{InitError, launch};
use super::spawn::{SpawnError, error_chain, fork_reporting};
use crate::linux::namespaces::NamespaceError;
use crate::linux::seccomp::CompiledSeccomp;
use crate::linux::tty;
use crate::spec::ProcessPlan;

pub struct ExecContext<'a> {
    pub process: &'a ProcessPlan,
    pub seccomp: Option<&'a CompiledSeccomp>,
    /// A pidfd of the container's init, taken after checking its start time: joining through
    /// it reaches that process's namespaces even if the pid is recycled meanwhile.
    pub init_pidfd: OwnedFd,
    /// The namespaces of init that differ from ours (see [`namespaces_to_join`]).
    pub join: CloneFlags,
    pub console_socket: Option<OwnedFd>,
    pub preserve_fds: u32,
}

/// Namespace kinds in the order they are joined: user first (it grants the rights to join
/// the others), mount last (it changes what paths mean).
const KINDS: [(&str, CloneFlags); 8] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("time", CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// The kinds of namespace in which `pid` differs from us. A namespace of the container that
/// cannot be read is an error: skipping it would run the process on the host's side.
pub fn namespaces_to_join(pid: i32) -> Result<CloneFlags, SpawnError> {
    let inode = |p: &PathBuf| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let mut flags = CloneFlags::empty();
    for (name, flag) in KINDS {
        let ours = PathBuf::from(format!("/proc/self/ns/{name}"));
        let Ok(ours) = inode(&ours) else {
            // The kernel lacks this kind of namespace (e.g. time before 5.6).
            continue;
        };
        let path = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        let theirs = inode(&path)
            .map_err(|source| SpawnError::Namespace(NamespaceError::Open { path, source }))?;
        if theirs != ours {
            flags |= flag;
        }
    }
    Ok(flags)
}

pub fn fork_exec(ctx: &ExecContext) -> Result<(Pid, Channel), SpawnError> {
    fork_reporting(|chan| stage1(ctx, chan))
}

fn stage1(ctx: &ExecContext, chan: &Channel) -> Result<(), SpawnError> {
    let _: ToChild = chan.recv()?;
    // One setns through the pidfd joins them all at once, the user namespace first.
    if !ctx.join.is_empty() {
        nix::sched::setns(ctx.init_pidfd.as_fd(), ctx.join).map_err(|source| {
            SpawnError::Namespace(NamespaceError::Join {
                path: PathBuf::from("init pidfd"),
                source,
            })
        })?;
    }
    // SAFETY: stage-1 is single-threaded (forked from a single-threaded husk).
    match unsafe { fork() }.map_err(SpawnError::Fork)? {
        ForkResult::Parent { child } => {
            chan.send(&ToParent::InitPid(child.as_raw()))?;
            Ok(())
        }
        ForkResult::Child => {
            let err = match run(ctx, chan) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = chan.send(&ToParent::Failed(error_chain(&err)));
            // SAFETY: _exit ends the child without running the parent's destructors.
            unsafe { libc::_exit(1) }
        }
    }
}

fn run(ctx: &ExecContext, chan: &Channel) -> Result<std::convert::Infallible, InitError> {
    // stage-1 and this process share the channel: wait until husk has our pid.
    let _: ToChild = chan.recv()?;
    if ctx.process.terminal
        && let Some(sock) = &ctx.console_socket
    {
        nix::unistd::setsid().map_err(|source| InitError::Sys {
            op: "setsid".into(),
            source,
        })?;
        tty::setup_console(sock, ctx.process.console_size)?;
    }
    launch(ctx.process, ctx.seccomp, ctx.preserve_fds, chan, || Ok(()))
}
