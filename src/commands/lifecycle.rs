//! create, start, state, kill, delete.

use super::{CommandError, ExitCode};
use crate::cli::{CreateArgs, CreateOptions, DeleteArgs, KillArgs};
use crate::container::{self, Container, CreateRequest};
use crate::linux::signals::parse_signal;
use crate::state::{StateError, Store};

pub fn create_request(id: &str, o: &CreateOptions, systemd_cgroup: bool) -> CreateRequest {
    CreateRequest {
        id: id.to_owned(),
        bundle: o.bundle.clone(),
        console_socket: o.console_socket.clone(),
        pid_file: o.pid_file.clone(),
        no_pivot: o.no_pivot,
        preserve_fds: o.preserve_fds,
        systemd_cgroup,
        pidfd_socket: o.pidfd_socket.clone(),
        no_new_keyring: o.no_new_keyring,
    }
}

pub fn create(
    store: &Store,
    a: &CreateArgs,
    systemd_cgroup: bool,
) -> Result<ExitCode, CommandError> {
    container::create(store, &create_request(&a.id, &a.opts, systemd_cgroup))?;
    Ok(0)
}

pub fn start(store: &Store, id: &str) -> Result<ExitCode, CommandError> {
    container::start(store, id)?;
    Ok(0)
}

pub fn state(store: &Store, id: &str) -> Result<ExitCode, CommandError> {
    let c = Container::load(store, id)?;
    let text = serde_json::to_string_pretty(&c.oci_state()).unwrap_or_default();
    say!("{text}");
    Ok(0)
}

pub fn kill(store: &Store, a: &KillArgs) -> Result<ExitCode, CommandError> {
    let signal = parse_signal(a.signal.as_deref().unwrap_or("SIGTERM"))?;
    container::kill(store, &a.id, signal, a.all)?;
    Ok(0)
}

pub fn delete(store: &Store, a: &DeleteArgs) -> Result<ExitCode, CommandError> {
    match container::delete(store, &a.id, a.force) {
        // runc: `delete --force` of a container that does not exist succeeds.
        Err(container::ContainerError::State(StateError::NotFound(_))) if a.force => Ok(0),
        Err(e) => Err(e.into()),
        Ok(()) => Ok(0),
    }
}
