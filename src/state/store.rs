//! One directory per container under the root; atomic record writes; flock-based locking.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::ContainerRecord;

const RECORD: &str = "state.json";
/// The directory under the root where the built-in network keeps leases and records.
pub const NET_DIR: &str = "net";
const LOCK: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    #[error("container with id exists: {0}")]
    Exists(String),
    #[error("invalid container id {id:?}: {why}")]
    InvalidId { id: String, why: &'static str },
    #[error("create state root {path}")]
    CreateRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("create container dir {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read state {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parse state {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("write state {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("lock container dir {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("remove container dir {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("list state root {path}")]
    List {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Container ids: the characters runc allows, and never `.`/`..`, so an id is always one path component.
pub fn validate_id(id: &str) -> Result<(), StateError> {
    let bad = |why| {
        Err(StateError::InvalidId {
            id: id.to_owned(),
            why,
        })
    };
    if id.is_empty() {
        return bad("empty");
    }
    if id == "." || id == ".." {
        return bad("must not be . or ..");
    }
    if id == NET_DIR {
        return bad("reserved: husk keeps its network state under that name");
    }
    if id.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'))
    {
        return bad("only letters, digits, '_', '+', '-' and '.' are allowed");
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An exclusive lock on one container; released on drop.
pub struct ContainerLock {
    _lock: Flock<File>,
}

impl Store {
    /// The store at `root`, created (0700) if missing.
    pub fn open(root: &Path) -> Result<Self, StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|source| StateError::CreateRoot {
                path: root.to_owned(),
                source,
            })?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Claims `id` by creating its directory: mkdir is atomic, so of two concurrent creates exactly one wins.
    pub fn reserve(&self, id: &str) -> Result<PathBuf, StateError> {
        validate_id(id)?;
        let dir = self.dir(id);
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(StateError::Exists(id.to_owned()))
            }
            Err(source) => Err(StateError::CreateDir { path: dir, source }),
        }
    }

    /// Takes the container's lock (blocking), failing with NotFound if it has no directory.
    pub fn lock(&self, id: &str) -> Result<ContainerLock, StateError> {
        validate_id(id)?;
        let path = self.dir(id).join(LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .mode(0o600)
            .open(&path)
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => StateError::NotFound(id.to_owned()),
                _ => StateError::Lock {
                    path: path.clone(),
                    source,
                },
            })?;
        let lock =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| StateError::Lock {
                path,
                source: errno.into(),
            })?;
        Ok(ContainerLock { _lock: lock })
    }

    pub fn load(&self, id: &str) -> Result<ContainerRecord, StateError> {
        validate_id(id)?;
        let path = self.dir(id).join(RECORD);
        let text = fs::read(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => StateError::NotFound(id.to_owned()),
            _ => StateError::Read {
                path: path.clone(),
                source,
            },
        })?;
        serde_json::from_slice(&text).map_err(|source| StateError::Parse { path, source })
    }

    /// Writes the record to a temp file and renames it over `state.json`: readers see the old
    /// or the new record, never half of one. (No fsync: the state lives on a tmpfs, /run.)
    pub fn save(&self, record: &ContainerRecord) -> Result<(), StateError> {
        let dir = self.dir(&record.id);
        let path = dir.join(RECORD);
        // Our pid in the name: two writers never share a temp file.
        let tmp = dir.join(format!(".{RECORD}.{}.tmp", std::process::id()));
        let write = || -> io::Result<()> {
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC)
                .open(&tmp)?;
            let body = serde_json::to_vec(record).map_err(io::Error::other)?;
            file.write_all(&body)?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|source| StateError::Write { path, source })
    }

    /// Removes the container's directory and everything in it. Missing is fine.
    pub fn remove(&self, id: &str) -> Result<(), StateError> {
        validate_id(id)?;
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Remove { path: dir, source }),
        }
    }

    /// Ids of every container directory, sorted. Hidden entries and husk's own dirs (net) are skipped.
    pub fn ids(&self) -> Result<Vec<String>, StateError> {
        let entries = fs::read_dir(&self.root).map_err(|source| StateError::List {
            path: self.root.clone(),
            source,
        })?;
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join(RECORD).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_single_path_components() {
        for bad in ["", ".", "..", "a/b", "../x", "a b", "x\0y"] {
            assert!(validate_id(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(
            validate_id("net").is_err(),
            "the network state dir is reserved"
        );
        for good in ["a", "web-1", "x.y", "A_b+c", "...", "net2"] {
            assert!(validate_id(good).is_ok(), "{good:?} should be accepted");
        }
    }
}
