//! `delete`: idempotent, best effort. Kill what is left, then tear down in the order that keeps
//! the host consistent: network rules and links, the cgroup, poststop hooks, the state dir.
//! Errors are collected rather than stopping at the first.

use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};

use super::{Container, ContainerError, Status, status};
use crate::linux::signals;
use crate::state::{StateError, Store};

pub fn delete(store: &Store, id: &str, force: bool) -> Result<(), ContainerError> {
    let _lock = store.lock(id)?;
    let c = match Container::load(store, id) {
        Ok(c) => c,
        // A create that died before writing its record leaves only the directory.
        Err(ContainerError::State(StateError::NotFound(_))) if store.dir(id).exists() => {
            store.remove(id)?;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if !status::can_delete(c.status, force) {
        return Err(ContainerError::DeleteNotStopped {
            id: id.to_owned(),
            status: c.status.as_str(),
        });
    }
    // Teardown must not stop half-way because the caller got impatient.
    let mut block = SigSet::empty();
    block.add(Signal::SIGINT);
    block.add(Signal::SIGTERM);
    block.add(Signal::SIGHUP);
    let mut old = SigSet::empty();
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&block), Some(&mut old));
    let result = destroy(store, &c);
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    result
}

fn destroy(store: &Store, c: &Container) -> Result<(), ContainerError> {
    let mut errors: Vec<String> = Vec::new();
    let cgroup = super::cgroup_manager(&c.record);
    // Whatever is left in the cgroup dies too: without a pid namespace of its own, init's
    // children outlive it, and a cgroup with processes cannot be removed.
    if let Ok(cg) = &cgroup
        && cg.pids().is_ok_and(|p| !p.is_empty())
        && let Err(e) = cg.kill_all(libc::SIGKILL)
    {
        errors.push(format!("kill processes: {e}"));
    }
    if c.status != Status::Stopped {
        match signals::signal_process(c.record.pid, c.record.start_time, libc::SIGKILL) {
            Ok(()) | Err(signals::SignalError::NoSuchProcess) => {}
            Err(e) => errors.push(format!("kill init: {e}")),
        }
        wait_gone(c);
    }
    if let Ok(cg) = &cgroup {
        wait_empty(cg.as_ref());
    }
    if let Some(net) = &c.record.network
        && let Err(e) = husk_net::teardown(net, &store.root().join("net"))
    {
        errors.push(format!("network: {e}"));
    }
    match &cgroup {
        Ok(cg) => {
            if let Err(e) = cg.destroy() {
                errors.push(format!("cgroup: {e}"));
            }
            remove_default_parent(cg.as_ref());
        }
        Err(e) => errors.push(format!("cgroup: {e}")),
    }
    let state = super::oci_state(&c.record, Status::Stopped).to_string();
    for e in crate::hooks::run_hooks_best_effort(&c.hooks("poststop"), state.as_bytes()) {
        log::warn!("poststop hook: {e}");
    }
    if let Err(e) = store.remove(&c.record.id) {
        errors.push(e.to_string());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ContainerError::Teardown {
            id: c.record.id.clone(),
            errors: errors.join("; "),
        })
    }
}

/// husk's default parent cgroup (`/husk`) goes with its last container. rmdir fails harmlessly
/// while another container still lives there; a create racing with it retries its mkdir.
fn remove_default_parent(cg: &dyn crate::cgroups::CgroupManager) {
    for d in cg.dirs() {
        if let Some(parent) = d
            .dir
            .parent()
            .filter(|p| p.file_name().is_some_and(|n| n == "husk"))
        {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Waits (bounded) for the killed processes to leave the cgroup.
fn wait_empty(cg: &dyn crate::cgroups::CgroupManager) {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let deadline = Instant::now() + Duration::from_secs(10);
    while cg.pids().is_ok_and(|p| !p.is_empty()) && Instant::now() < deadline {
        // Reap those that are ours (`run` is their subreaper).
        while let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) =
            waitpid(None, Some(WaitPidFlag::WNOHANG))
        {}
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (bounded) for init to be gone; it may be a zombie of another reaper, which counts.
fn wait_gone(c: &Container) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.init_alive() && Instant::now() < deadline {
        // Reap it if it is ours (`run` is its subreaper).
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(c.record.pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
