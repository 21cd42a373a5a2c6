//! `run`: create + start, then (unless --detach) forward signals to init, wait for it as its
//! subreaper, delete the container (unless --keep) and return its exit code.

use std::os::unix::net::UnixListener;
use std::path::Path;

use super::lifecycle::create_request;
use super::pty_proxy::{self, PtyProxy};
use super::{CommandError, ExitCode, wait};
use crate::cli::RunArgs;
use crate::container;
use crate::state::Store;

pub fn run(store: &Store, a: &RunArgs, systemd_cgroup: bool) -> Result<ExitCode, CommandError> {
    // Blocked before anything is forked: a signal for the container must reach it, not kill us
    // half-way. init unblocks everything before exec.
    let mask = wait::block_forwarded()?;

    let mut req = create_request(&a.id, &a.opts, systemd_cgroup);
    // A terminal in the foreground with nobody to hand it to: husk is the console itself.
    let console = if !a.detach && req.console_socket.is_none() && wants_terminal(&req.bundle) {
        let path = store.root().join(format!(".{}.console", a.id));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|source| CommandError::Io {
            op: "listen on",
            path: path.clone(),
            source,
        })?;
        req.console_socket = Some(path.clone());
        Some((listener, path))
    } else {
        None
    };
    let created = container::create(store, &req);
    let master = match (&console, &created) {
        (Some((listener, path)), Ok(_)) => {
            let m = pty_proxy::receive_master(listener);
            let _ = std::fs::remove_file(path);
            Some(m)
        }
        (Some((_, path)), Err(_)) => {
            let _ = std::fs::remove_file(path);
            None
        }
        _ => None,
    };
    let record = created?;
    let mut proxy = match master.transpose() {
        Ok(m) => m.map(PtyProxy::new),
        Err(e) => {
            let _ = container::delete(store, &a.id, true);
            return Err(e);
        }
    };
    if let Err(e) = container::start(store, &a.id) {
        let _ = container::delete(store, &a.id, true);
        return Err(e.into());
    }
    if a.detach {
        return Ok(0);
    }
    let code = wait::wait_for(&mask, record.pid, record.start_time, proxy.as_mut())?;
    drop(proxy);
    if !a.keep {
        container::delete(store, &a.id, true)?;
    }
    Ok(code)
}

/// Whether the bundle's process asks for a terminal (read before create, which validates).
fn wants_terminal(bundle: &Path) -> bool {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v.pointer("/process/terminal")
                .and_then(serde_json::Value::as_bool)
        })
        .unwrap_or(false)
}
