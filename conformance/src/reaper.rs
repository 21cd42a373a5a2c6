//! Makes the test process a child subreaper and reaps the orphans it adopts.
//!
//! `create` forks the container init and exits, so the init is orphaned. PID 1
//! on this machine reaps orphans lazily, which would leave exited containers as
//! zombies for a while; engines (containerd shims, conmon) are subreapers that
//! reap promptly, so the suite behaves the same way: adopted orphans are reaped
//! by a background thread. Children we spawned ourselves (`Command`) are
//! registered as owned and left for their `Child` handle to wait on.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, Once};
use std::thread;
use std::time::Duration;

use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

static START: Once = Once::new();
static OWNED: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

fn owned() -> MutexGuard<'static, Option<HashSet<i32>>> {
    // A panic while holding the lock cannot leave the set inconsistent.
    OWNED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Marks this process as a child subreaper and starts the reaper thread, once.
pub fn ensure_started() {
    START.call_once(|| {
        if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
            panic!("prctl(PR_SET_CHILD_SUBREAPER) failed: {err}");
        }
        let spawned = thread::Builder::new()
            .name("orphan-reaper".into())
            .spawn(|| {
                loop {
                    reap_adopted_zombies();
                    thread::sleep(Duration::from_millis(20));
                }
            });
        if let Err(err) = spawned {
            panic!("cannot start the orphan reaper thread: {err}");
        }
    });
}

/// Spawns `cmd` and registers it as owned before the reaper can see it exit.
pub fn spawn_owned(cmd: &mut Command) -> io::Result<Child> {
    ensure_started();
    let mut set = owned();
    let child = cmd.spawn()?;
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    set.get_or_insert_with(HashSet::new).insert(pid);
    Ok(child)
}

/// Runs `cmd` to completion like `Command::output`, safely alongside the reaper.
pub fn output(cmd: &mut Command) -> io::Result<std::process::Output> {
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = spawn_owned(cmd)?;
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    let result = child.wait_with_output();
    if let Some(set) = owned().as_mut() {
        set.remove(&pid);
    }
    result
}

/// Forgets an owned child after its `Child` handle has waited on it.
pub fn release(child: &Child) {
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    if let Some(set) = owned().as_mut() {
        set.remove(&pid);
    }
}

fn reap_adopted_zombies() {
    let me = std::process::id();
    let set = owned();
    for pid in zombie_children(me) {
        let is_owned = set.as_ref().is_some_and(|s| s.contains(&pid));
        if !is_owned {
            // Errors only mean someone else reaped it first.
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}

/// Pids of zombie processes whose parent is `parent`.
fn zombie_children(parent: u32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parse_state_and_ppid(&stat))
                .is_some_and(|(state, ppid)| state == 'Z' && ppid == parent)
        })
        .collect()
}

/// Parses the state and parent pid out of a `/proc/<pid>/stat` line.
pub(crate) fn parse_state_and_ppid(stat: &str) -> Option<(char, u32)> {
    // The command name may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_state_and_ppid_with_odd_command_names() {
        let stat = "1234 (we ird) (name)) Z 77 1234 1234 0 -1 4194560";
        assert_eq!(parse_state_and_ppid(stat), Some(('Z', 77)));
    }

    #[test]
    fn rejects_truncated_stat() {
        assert_eq!(parse_state_and_ppid("12 (x)"), None);
    }
}
