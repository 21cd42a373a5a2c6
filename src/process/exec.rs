//! Starting a second process in a running container (`husk exec`): stage-1 joins every
//! namespace of the container's init that differs from ours (user first), then forks the new
//! process so it is born inside the container's pid namespace.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Pid, fork};

use super::channel::{Channel, ToChild, ToParent};
use super::init::{InitError, launch};
use super::spawn::{SpawnError, error_chain};
use crate::linux::namespaces;
use crate::linux::seccomp::CompiledSeccomp;
use crate::linux::tty;
use crate::spec::ProcessPlan;

pub struct ExecContext<'a> {
    pub process: &'a ProcessPlan,
    pub seccomp: Option<&'a CompiledSeccomp>,
    pub init_pid: i32,
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

/// The container's namespaces that are not already ours.
fn namespaces_of(pid: i32) -> Vec<(CloneFlags, PathBuf)> {
    let inode = |p: &PathBuf| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    KINDS
        .iter()
        .filter_map(|(name, flag)| {
            let theirs = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
            let ours = PathBuf::from(format!("/proc/self/ns/{name}"));
            let t = inode(&theirs)?;
            (Some(t) != inode(&ours)).then_some((*flag, theirs))
        })
        .collect()
}

pub fn fork_exec(ctx: &ExecContext) -> Result<(Pid, Channel), SpawnError> {
    let joins = namespaces_of(ctx.init_pid);
    let (parent_end, child_end) = Channel::pair()?;
    // SAFETY: husk is single-threaded here, so the child may run arbitrary code after fork.
    match unsafe { fork() }.map_err(SpawnError::Fork)? {
        ForkResult::Parent { child } => {
            drop(child_end);
            Ok((child, parent_end))
        }
        ForkResult::Child => {
            drop(parent_end);
            let code = match stage1(ctx, &joins, &child_end) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = child_end.send(&ToParent::Failed(error_chain(&e)));
                    1
                }
            };
            // SAFETY: _exit skips destructors that belong to the parent.
            unsafe { libc::_exit(code) }
        }
    }
}

fn stage1(
    ctx: &ExecContext,
    joins: &[(CloneFlags, PathBuf)],
    chan: &Channel,
) -> Result<(), SpawnError> {
    let _: ToChild = chan.recv()?;
    let files: Vec<(CloneFlags, File, PathBuf)> = namespaces::open_all(joins)?;
    for (flag, file, path) in &files {
        namespaces::join(*flag, file, path)?;
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
