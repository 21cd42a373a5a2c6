//! Opening and creating paths strictly inside a container root: openat2(RESOLVE_IN_ROOT) makes
//! every symlink and `..` resolve as if the root were `/`, so a hostile rootfs cannot point a
//! mount at the host. Mounts then target the opened fd through /proc/self/fd.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, mkdirat};

#[derive(Debug, thiserror::Error)]
pub enum InRootError {
    #[error("open {path} inside the container root")]
    Open {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("create {path} inside the container root")]
    Create {
        path: PathBuf,
        #[source]
        source: Errno,
    },
}

/// What to create when the path does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Nothing,
    /// Directories all the way down.
    Dir,
    /// Parent directories, then an empty regular file (a bind target for a file source).
    File,
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// Opens `path` (interpreted inside `root`) as an O_PATH fd, creating it first if asked.
/// A dangling symlink on the way is followed inside the root and its target created there,
/// as runc does.
pub fn open_in_root(root: &OwnedFd, path: &Path, create: Create) -> Result<OwnedFd, InRootError> {
    open_in_root_depth(root, path, path, create, 0)
}

const MAX_SYMLINKS: u32 = 40;

fn open_in_root_depth(
    root: &OwnedFd,
    path: &Path,
    original: &Path,
    create: Create,
    depth: u32,
) -> Result<OwnedFd, InRootError> {
    let rel = relative(path);
    let target = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel.clone()
    };
    match openat2(root.as_fd(), &target, how(OFlag::O_PATH)) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) if create != Create::Nothing => {}
        Err(source) => {
            return Err(InRootError::Open {
                path: original.to_owned(),
                source,
            });
        }
    }
    let names: Vec<_> = rel.components().collect();
    let mut prefix = PathBuf::new();
    let mut parent =
        openat2(root.as_fd(), ".", how(OFlag::O_PATH | OFlag::O_DIRECTORY)).map_err(|source| {
            InRootError::Open {
                path: PathBuf::from("/"),
                source,
            }
        })?;
    for (i, name) in names.iter().enumerate() {
        let parent_prefix = prefix.clone();
        prefix.push(name);
        let last = i + 1 == names.len();
        let flags = if last {
            OFlag::O_PATH
        } else {
            OFlag::O_PATH | OFlag::O_DIRECTORY
        };
        let fd = match openat2(root.as_fd(), &prefix, how(flags)) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                if let Ok(link) = nix::fcntl::readlinkat(parent.as_fd(), name.as_os_str()) {
                    // A dangling symlink: create what it points at, inside the root.
                    if depth >= MAX_SYMLINKS {
                        return Err(InRootError::Open {
                            path: original.to_owned(),
                            source: Errno::ELOOP,
                        });
                    }
                    let link = PathBuf::from(link);
                    let mut redirected = if link.is_absolute() {
                        link
                    } else {
                        Path::new("/").join(&parent_prefix).join(link)
                    };
                    for rest in &names[i + 1..] {
                        redirected.push(rest);
                    }
                    return open_in_root_depth(
                        root,
                        &clamp_to_root(&redirected),
                        original,
                        create,
                        depth + 1,
                    );
                }
                let created = if last && create == Create::File {
                    create_file(&parent, name.as_os_str())
                } else {
                    mkdirat(
                        parent.as_fd(),
                        name.as_os_str(),
                        Mode::from_bits_truncate(0o755),
                    )
                };
                match created {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(source) => {
                        return Err(InRootError::Create {
                            path: original.to_owned(),
                            source,
                        });
                    }
                }
                openat2(root.as_fd(), &prefix, how(flags)).map_err(|source| InRootError::Open {
                    path: original.to_owned(),
                    source,
                })?
            }
            Err(source) => {
                return Err(InRootError::Open {
                    path: original.to_owned(),
                    source,
                });
            }
        };
        parent = fd;
    }
    Ok(parent)
}

/// Resolves `.` and `..` lexically, never above `/` (as RESOLVE_IN_ROOT treats them).
fn clamp_to_root(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

fn create_file(dir: &OwnedFd, name: &std::ffi::OsStr) -> Result<(), Errno> {
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )?;
    drop(fd);
    Ok(())
}

/// The path through which mount(2) and friends reach an fd's file.
pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens a directory to serve as a root for [`open_in_root`].
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("husk-inroot-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn symlinks_cannot_escape_the_root() {
        let base = tempdir("escape");
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("evil")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        let rootfd = open_root(&root).unwrap();
        open_in_root(&rootfd, Path::new("/evil/sub"), Create::Dir).unwrap();
        open_in_root(&rootfd, Path::new("/up/etc/x"), Create::File).unwrap();
        // The absolute link target was resolved inside the root, never on the host path.
        assert!(!outside.join("sub").exists());
        assert!(
            root.join(outside.strip_prefix("/").unwrap())
                .join("sub")
                .is_dir()
        );
        assert!(root.join("etc/x").is_file());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn dangling_relative_symlinks_with_dotdot_are_followed_inside() {
        let base = tempdir("dotdot");
        std::fs::create_dir_all(base.join("var")).unwrap();
        std::os::unix::fs::symlink("../run", base.join("var/run")).unwrap();
        let rootfd = open_root(&base).unwrap();
        open_in_root(&rootfd, Path::new("/var/run/secrets/x"), Create::Dir).unwrap();
        assert!(base.join("run/secrets/x").is_dir());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn missing_without_create_is_an_error() {
        let base = tempdir("missing");
        let rootfd = open_root(&base).unwrap();
        let e = open_in_root(&rootfd, Path::new("/nope"), Create::Nothing).unwrap_err();
        assert!(e.to_string().contains("/nope"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
