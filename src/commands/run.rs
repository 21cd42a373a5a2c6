//! `run`: create + start, then (unless --detach) forward signals to init, wait for it as its
//! subreaper, delete the container (unless --keep) and return its exit code.

use super::lifecycle::create_request;
use super::{CommandError, ExitCode, wait};
use crate::cli::RunArgs;
use crate::container;
use crate::state::Store;

pub fn run(store: &Store, a: &RunArgs, systemd_cgroup: bool) -> Result<ExitCode, CommandError> {
    // Blocked before anything is forked: a signal for the container must reach it, not kill us
    // half-way. init unblocks everything before exec.
    let mask = wait::block_forwarded()?;

    let record = container::create(store, &create_request(&a.id, &a.opts, systemd_cgroup))?;
    if let Err(e) = container::start(store, &a.id) {
        let _ = container::delete(store, &a.id, true);
        return Err(e.into());
    }
    if a.detach {
        return Ok(0);
    }
    let code = wait::wait_for(&mask, record.pid, record.start_time)?;
    if !a.keep {
        container::delete(store, &a.id, true)?;
    }
    Ok(code)
}
