//! `kill`: signal init (checked against its start time) or, with --all, every process in the
//! container's cgroup.

use super::{Container, ContainerError, status};
use crate::linux::signals;
use crate::state::Store;

pub fn kill(store: &Store, id: &str, signal: i32, all: bool) -> Result<(), ContainerError> {
    let c = Container::load(store, id)?;
    if all {
        // Like runc, also for a stopped container: without a pid namespace of its own, init's
        // children outlive it in the cgroup.
        let cg = super::cgroup_manager(&c.record)?;
        if c.status == super::Status::Stopped && cg.pids().map_or(true, |p| p.is_empty()) {
            return Err(ContainerError::NotRunning);
        }
        cg.kill_all(signal)?;
        return Ok(());
    }
    if !status::can_kill(c.status) {
        return Err(ContainerError::NotRunning);
    }
    match signals::signal_process(c.record.pid, c.record.start_time, signal) {
        Err(signals::SignalError::NoSuchProcess) => Err(ContainerError::NotRunning),
        other => Ok(other?),
    }
}
