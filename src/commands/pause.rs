//! `pause` and `resume`.

use super::{CommandError, ExitCode};
use crate::container;
use crate::state::Store;

pub fn pause(store: &Store, id: &str) -> Result<ExitCode, CommandError> {
    container::pause(store, id)?;
    Ok(0)
}

pub fn resume(store: &Store, id: &str) -> Result<ExitCode, CommandError> {
    container::resume(store, id)?;
    Ok(0)
}
