//! `exec`: a new process inside a running container, in its namespaces and cgroup, with the
//! container's seccomp profile.

use std::path::PathBuf;

use nix::sys::wait::waitpid;
use oci_spec::runtime::Process;

use super::{Container, ContainerError, Status};
use crate::linux::{procfs, seccomp, signals};
use crate::process::channel::{ChannelError, ToChild, ToParent};
use crate::process::exec::{ExecContext, fork_exec, namespaces_to_join};
use crate::spec::{SpecError, plan_exec_process};

pub struct ExecRequest {
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    pub ignore_paused: bool,
}

/// The exec'd process: its pid and start time.
pub struct Execed {
    pub pid: i32,
    pub start_time: u64,
}

/// Runs `req` in `c`, a container the caller loaded (its config is also the template for a
/// process given on the command line).
pub fn exec(c: &Container, req: &ExecRequest) -> Result<Execed, ContainerError> {
    match c.status {
        Status::Stopped => return Err(ContainerError::ExecStopped),
        Status::Paused if !req.ignore_paused => return Err(ContainerError::ExecPaused),
        Status::Creating => return Err(ContainerError::NotRunning),
        _ => {}
    }
    let plan = plan_exec_process(&req.process, req.console_socket.is_some())
        .map_err(SpecError::Invalid)?;
    let filter = c
        .record
        .config
        .pointer("/linux/seccomp")
        .filter(|v| !v.is_null())
        .map(|v| {
            let spec = serde_json::from_value(v.clone()).map_err(|e| SpecError::Parse {
                path: c.dir.join("state.json"),
                message: e.to_string(),
            })?;
            seccomp::compile(&spec).map_err(|e| {
                SpecError::Invalid(crate::spec::Problems(vec![format!("linux.seccomp: {e}")]))
            })
        })
        .transpose()?;
    let console_socket = match (&req.console_socket, plan.terminal) {
        (Some(path), true) => Some(super::connect_console(path)?),
        _ => None,
    };
    super::create::set_subreaper()?;
    // Pin init, then read which of its namespaces to join; a recycled pid is caught by the
    // start time check before and after.
    let init_pidfd = signals::pidfd_for(c.record.pid, c.record.start_time)
        .map_err(|_| ContainerError::ExecStopped)?;
    let join = namespaces_to_join(c.record.pid)?;
    if !c.init_alive() {
        return Err(ContainerError::ExecStopped);
    }
    let ctx = ExecContext {
        process: &plan,
        seccomp: filter.as_ref(),
        init_pidfd,
        join,
        console_socket,
        preserve_fds: req.preserve_fds,
    };
    let (stage1, chan) = fork_exec(&ctx)?;
    drop(ctx);
    let joined = (|| {
        super::cgroup_manager(&c.record)?.add_task(stage1.as_raw())?;
        chan.send(&ToChild::Proceed)?;
        Ok::<(), ContainerError>(())
    })();
    if let Err(e) = joined {
        super::kill_and_reap(stage1);
        return Err(e);
    }
    let mut pid = None;
    let outcome = loop {
        match chan.recv::<ToParent>() {
            Ok(ToParent::InitPid(p)) => {
                let _ = waitpid(stage1, None);
                pid = Some(p);
                if let Err(e) = chan.send(&ToChild::Proceed) {
                    break Err(e.into());
                }
            }
            Ok(ToParent::Ready) => break Ok(()),
            Ok(ToParent::Failed(msg)) => break Err(ContainerError::ExecFailed(msg)),
            Ok(other) => {
                break Err(ContainerError::ExecFailed(format!(
                    "unexpected message {other:?}"
                )));
            }
            Err(ChannelError::Closed) => break Err(ContainerError::InitVanished),
            Err(e) => break Err(e.into()),
        }
    };
    if pid.is_none() {
        // stage-1 may still wait for us on the channel: it must not be waited for blindly.
        super::kill_and_reap(stage1);
    }
    if let Err(e) = outcome {
        if let Some(p) = pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = waitpid(nix::unistd::Pid::from_raw(p), None);
        }
        return Err(e);
    }
    let pid = pid.ok_or(ContainerError::InitVanished)?;
    // Between Ready and execve the process may still fail; its channel end closes on exec.
    match chan.recv::<ToParent>() {
        Err(ChannelError::Closed) => {}
        Ok(ToParent::Failed(msg)) => {
            let _ = waitpid(nix::unistd::Pid::from_raw(pid), None);
            return Err(ContainerError::ExecFailed(msg));
        }
        Ok(_) | Err(_) => {}
    }
    let start_time = procfs::stat(pid).map(|s| s.start_time).unwrap_or(0);
    if let Some(pid_file) = &req.pid_file {
        super::create::write_pid_file(pid_file, pid)?;
    }
    Ok(Execed { pid, start_time })
}
