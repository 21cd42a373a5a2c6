//! The clone sequence. husk forks stage-1, which joins and creates the namespaces (user first,
//! so the others belong to it), then forks init so that init is born inside the new pid
//! namespace as its pid 1. stage-1 reports init's pid and exits; init is then adopted by
//! husk's subreaper (`run`) or by whoever adopts orphans (`create`).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork};

use super::channel::{Channel, ChannelError, ToChild, ToParent};
use super::init;
use crate::linux::namespaces::{self, NamespaceError};
use crate::spec::ContainerPlan;

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("fork container process")]
    Fork(#[source] Errno),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error("become root in the new user namespace")]
    SetId(#[source] Errno),
}

/// Overlay directories when the rootfs is a private overlay over the bundle rootfs.
pub struct OverlayDirs {
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// What init needs beyond the plan.
pub struct InitContext<'a> {
    pub plan: &'a ContainerPlan,
    /// Where the container root is mounted before pivot_root (bundle rootfs or the overlay).
    pub rootfs: PathBuf,
    pub overlay: Option<OverlayDirs>,
    /// The exec fifo, opened O_PATH by husk (the state dir may be closed to the container's
    /// user); init reopens it for writing through /proc/self/fd to wait for `start`.
    pub exec_fifo: OwnedFd,
    pub console_socket: Option<OwnedFd>,
    pub preserve_fds: u32,
    /// (name under /sys/fs/cgroup, host dir) of the container's cgroup in every hierarchy, for
    /// cgroup mounts; a pure cgroup2 host has one entry named "".
    pub cgroup_binds: Vec<(String, PathBuf)>,
    /// Join a fresh session keyring, so containers do not share the caller's keys.
    pub new_keyring: bool,
}

/// Forks stage-1. It waits for [`ToChild::Proceed`] (sent once it is in its cgroup) before it
/// touches a namespace. Returns its pid and husk's end of the channel.
pub fn fork_stage1(ctx: &InitContext) -> Result<(Pid, Channel), SpawnError> {
    fork_reporting(|chan| stage1(ctx, chan))
}

/// Forks a child that runs `body` with its end of a new channel; an error it returns is sent
/// to husk as [`ToParent::Failed`] before the child exits.
pub(crate) fn fork_reporting(
    body: impl FnOnce(&Channel) -> Result<(), SpawnError>,
) -> Result<(Pid, Channel), SpawnError> {
    let (parent_end, child_end) = Channel::pair()?;
    // SAFETY: husk is single-threaded here (no runtime, no helper threads have been started),
    // so the child may run arbitrary code after fork.
    match unsafe { fork() }.map_err(SpawnError::Fork)? {
        ForkResult::Parent { child } => {
            drop(child_end);
            Ok((child, parent_end))
        }
        ForkResult::Child => {
            drop(parent_end);
            let code = match body(&child_end) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = child_end.send(&ToParent::Failed(error_chain(&e)));
                    1
                }
            };
            // SAFETY: _exit skips atexit handlers and destructors that belong to the parent.
            unsafe { libc::_exit(code) }
        }
    }
}

fn stage1(ctx: &InitContext, chan: &Channel) -> Result<(), SpawnError> {
    let _: ToChild = chan.recv()?;
    let ns = &ctx.plan.namespaces;
    let joins = namespaces::open_all(&ns.join)?;
    for (flag, file, path) in &joins {
        namespaces::join(*flag, file, path)?;
    }
    if ns.new_user {
        namespaces::create(CloneFlags::CLONE_NEWUSER)?;
        chan.send(&ToParent::WriteIdMaps)?;
        let _: ToChild = chan.recv()?;
    }
    if ns.new_user
        || joins
            .iter()
            .any(|(f, _, _)| *f == CloneFlags::CLONE_NEWUSER)
    {
        // Inside the user namespace, become its root (when root is mapped) for what follows.
        let root = (Gid::from_raw(0), Uid::from_raw(0));
        nix::unistd::setresgid(root.0, root.0, root.0).map_err(SpawnError::SetId)?;
        nix::unistd::setresuid(root.1, root.1, root.1).map_err(SpawnError::SetId)?;
    }
    namespaces::create(ns.new)?;
    namespaces::write_time_offsets(&ctx.plan.time_offsets)?;
    // SAFETY: stage-1 is single-threaded (forked from a single-threaded husk).
    match unsafe { fork() }.map_err(SpawnError::Fork)? {
        ForkResult::Parent { child } => {
            chan.send(&ToParent::InitPid(child.as_raw()))?;
            Ok(())
        }
        ForkResult::Child => init::run(ctx, chan),
    }
}

/// An error and its causes on one line, for messages that cross the channel.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
