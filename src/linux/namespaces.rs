//! Namespaces: joining by path, creating, and the id maps and time offsets a new one needs.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns, unshare};

use crate::spec::IdMap;

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("open namespace {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("join namespace {path}")]
    Join {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("create namespaces {flags:?}")]
    Unshare {
        flags: CloneFlags,
        #[source]
        source: Errno,
    },
    #[error("write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Opens every namespace to join first: joining a mount namespace changes what later paths mean.
pub fn open_all(
    join: &[(CloneFlags, PathBuf)],
) -> Result<Vec<(CloneFlags, File, PathBuf)>, NamespaceError> {
    join.iter()
        .map(|(flag, path)| {
            File::open(path)
                .map(|f| (*flag, f, path.clone()))
                .map_err(|source| NamespaceError::Open {
                    path: path.clone(),
                    source,
                })
        })
        .collect()
}

pub fn join(flag: CloneFlags, file: &File, path: &Path) -> Result<(), NamespaceError> {
    setns(file.as_fd(), flag).map_err(|source| NamespaceError::Join {
        path: path.to_owned(),
        source,
    })
}

pub fn create(flags: CloneFlags) -> Result<(), NamespaceError> {
    if flags.is_empty() {
        return Ok(());
    }
    unshare(flags).map_err(|source| NamespaceError::Unshare { flags, source })
}

/// The text of a uid_map/gid_map file.
pub fn map_text(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
        .collect()
}

/// Written by the parent, which holds the capabilities in the parent user namespace.
pub fn write_id_maps(pid: i32, uid_map: &[IdMap], gid_map: &[IdMap]) -> Result<(), NamespaceError> {
    let write = |name: &str, text: String| {
        let path = PathBuf::from(format!("/proc/{pid}/{name}"));
        std::fs::write(&path, text).map_err(|source| NamespaceError::Write { path, source })
    };
    write("uid_map", map_text(uid_map))?;
    write("gid_map", map_text(gid_map))
}

/// Offsets must be written after unshare(CLONE_NEWTIME) and before the first child enters it.
pub fn write_time_offsets(offsets: &[(String, i64, u32)]) -> Result<(), NamespaceError> {
    if offsets.is_empty() {
        return Ok(());
    }
    let text: String = offsets
        .iter()
        .map(|(clock, s, ns)| format!("{clock} {s} {ns}\n"))
        .collect();
    let path = PathBuf::from("/proc/self/timens_offsets");
    std::fs::write(&path, text).map_err(|source| NamespaceError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_text_has_one_line_per_range() {
        let maps = [
            IdMap {
                container_id: 0,
                host_id: 100000,
                size: 1,
            },
            IdMap {
                container_id: 1,
                host_id: 200000,
                size: 65535,
            },
        ];
        assert_eq!(map_text(&maps), "0 100000 1\n1 200000 65535\n");
    }
}
