//! `kill`: signal init (checked against its start time) or, with --all, every process in the
//! container's cgroup.

use super::{Container, ContainerError, status};
use crate::linux::signals;
use crate::state::Store;

pub fn kill(store: &Store, id: &str, signal: i32, all: bool) -> Result<(), ContainerError> {
    let c = Container::load(store, id)?;
    if !status::can_kill(c.status) {
        return Err(ContainerError::NotRunning);
    }
    if all {
        let cg = super::cgroup_manager(&c.record)?;
        cg.kill_all(signal)?;
        return Ok(());
    }
    match signals::signal_process(c.record.pid, c.record.start_time, signal) {
        Err(signals::SignalError::NoSuchProcess) => Err(ContainerError::NotRunning),
        other => Ok(other?),
    }
}
