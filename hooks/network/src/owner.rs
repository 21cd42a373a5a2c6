//! Who holds a lease, and whether they still exist.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("read start time of process {pid}")]
    ReadStartTime {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("parse /proc/{pid}/stat")]
    ParseStat { pid: i32 },
}

/// A lease is live while its owner exists: husk's state directory of the container, or (without
/// one) the container's init process, identified by pid and start time so a recycled pid does not count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    Dir { path: PathBuf },
    Process { pid: i32, start_time: u64 },
}

impl Owner {
    pub fn for_target(pid: i32, owner_dir: Option<&Path>) -> Result<Owner, OwnerError> {
        match owner_dir {
            Some(dir) => Ok(Owner::Dir {
                path: dir.to_path_buf(),
            }),
            None => Ok(Owner::Process {
                pid,
                start_time: process_start_time(pid)?,
            }),
        }
    }

    /// Only a definite "gone" counts as dead: any other error reading /proc or the owner dir
    /// keeps the lease, since reclaiming a live one would hand its address out twice.
    pub fn is_alive(&self) -> bool {
        match self {
            Owner::Dir { path } => match std::fs::symlink_metadata(path) {
                Ok(_) => true,
                Err(e) => e.kind() != std::io::ErrorKind::NotFound,
            },
            Owner::Process { pid, start_time } => match process_start_time(*pid) {
                Ok(t) => t == *start_time,
                Err(OwnerError::ReadStartTime { source, .. }) => {
                    !matches!(source.kind(), std::io::ErrorKind::NotFound)
                        && source.raw_os_error() != Some(libc::ESRCH)
                }
                Err(_) => true,
            },
        }
    }
}

/// Field 22 of /proc/PID/stat (clock ticks since boot).
pub fn process_start_time(pid: i32) -> Result<u64, OwnerError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|source| OwnerError::ReadStartTime { pid, source })?;
    parse_start_time(&stat).ok_or(OwnerError::ParseStat { pid })
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name may contain spaces and parentheses: fields restart after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')' come field 3 (state) onwards; start time is field 22.
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_time_with_odd_names() {
        let stat =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_start_time(stat), Some(98765));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn own_process_is_alive_and_wrong_start_time_is_not() {
        let pid = std::process::id() as i32;
        let me = Owner::for_target(pid, None).unwrap();
        assert!(me.is_alive());
        let Owner::Process { start_time, .. } = me else {
            panic!("expected a process owner")
        };
        assert!(
            !Owner::Process {
                pid,
                start_time: start_time + 1
            }
            .is_alive()
        );
    }

    #[test]
    fn dir_owner() {
        let dir = std::env::temp_dir().join(format!("husk-net-owner-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let o = Owner::for_target(1, Some(&dir)).unwrap();
        assert!(o.is_alive());
        std::fs::remove_dir(&dir).unwrap();
        assert!(!o.is_alive());
    }
}
