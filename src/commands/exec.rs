//! `exec`: a process from --process or the command line, in a running container.

use oci_spec::runtime::{Process, User};

use super::{CommandError, ExitCode, wait};
use crate::cli::ExecArgs;
use crate::container::{self, Container, ExecRequest};
use crate::state::Store;

pub fn exec(store: &Store, a: &ExecArgs) -> Result<ExitCode, CommandError> {
    let c = Container::load(store, &a.id)?;
    let process = match &a.process {
        Some(path) => {
            let text = std::fs::read(path).map_err(|source| CommandError::Io {
                op: "read",
                path: path.clone(),
                source,
            })?;
            serde_json::from_slice::<Process>(&text)
                .map_err(|e| CommandError::Usage(format!("parse {}: {e}", path.display())))?
        }
        None => process_from_args(&c, a)?,
    };
    let mask = if a.detach {
        None
    } else {
        Some(wait::block_forwarded()?)
    };
    let req = ExecRequest {
        process,
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        preserve_fds: a.preserve_fds,
        ignore_paused: a.ignore_paused,
    };
    let execed = container::exec(&c, &req)?;
    match mask {
        None => Ok(0),
        Some(mask) => wait::wait_for(&mask, execed.pid, execed.start_time, None),
    }
}

/// Like runc: the container's own process is the template; the command line overrides it.
fn process_from_args(c: &Container, a: &ExecArgs) -> Result<Process, CommandError> {
    if a.command.is_empty() {
        return Err(CommandError::Usage(
            "exec needs a command or --process".into(),
        ));
    }
    let mut p: Process = c
        .record
        .config
        .get("process")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(a.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(user) = &a.user {
        let (uid, gid) = parse_user(user)?;
        let mut u: User = p.user().clone();
        u.set_uid(uid);
        u.set_gid(gid);
        p.set_user(u);
    }
    if !a.additional_gids.is_empty() {
        let mut u: User = p.user().clone();
        u.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(u);
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &a.cap {
            // runc's form is CAP_NET_RAW; oci-spec parses NET_RAW.
            let cap: oci_spec::runtime::Capability = name
                .to_ascii_uppercase()
                .trim_start_matches("CAP_")
                .parse()
                .map_err(|_| CommandError::Usage(format!("unknown capability {name:?}")))?;
            let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = s.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

fn parse_user(text: &str) -> Result<(u32, u32), CommandError> {
    let bad = || CommandError::Usage(format!("--user {text:?}: expected uid[:gid] with numbers"));
    let mut parts = text.splitn(2, ':');
    let uid = parts
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|_| bad())?;
    let gid = match parts.next() {
        Some(g) => g.parse().map_err(|_| bad())?,
        None => 0,
    };
    Ok((uid, gid))
}
