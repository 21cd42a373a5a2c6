//! Bind-mount our resolv.conf, read-only, onto `<rootfs>/etc/resolv.conf` inside the container's
//! mount namespace.
//!
//! We clone the file into a detached mount (open_tree) and make it read-only (mount_setattr) here,
//! then a forked child joins the container's mount namespace (ours stays untouched), resolves
//! `etc/resolv.conf` with openat2(RESOLVE_IN_ROOT) so a symlink in the rootfs can never send the
//! mount outside it, creates the file if missing, and attaches the detached mount onto the
//! resolved fd (move_mount). The child only makes raw syscalls (no allocation, no locks), as it
//! may be forked from a multi-threaded process; it reports the failing step and errno on a pipe.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ResolvMountError {
    #[error("open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("rootfs path {0:?} contains a NUL byte")]
    NulInPath(PathBuf),
    #[error("prepare the mount of {path}: {step}")]
    Detach {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("create the resolv.conf mount helper")]
    Fork {
        #[source]
        source: std::io::Error,
    },
    #[error(
        "bind {source_file} onto {rootfs}/etc/resolv.conf in the mount namespace of process {pid}: {step}"
    )]
    Mount {
        pid: i32,
        source_file: PathBuf,
        rootfs: PathBuf,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

const STEPS: [&str; 7] = [
    "join the mount namespace",
    "open the rootfs",
    "resolve etc/resolv.conf in the rootfs",
    "create etc in the rootfs",
    "create etc/resolv.conf in the rootfs",
    "etc/resolv.conf is not a regular file",
    "attach the mount",
];

/// A detached, read-only, nosuid/nodev/noexec bind mount of `path`.
fn detached_read_only_copy(path: &Path) -> Result<OwnedFd, ResolvMountError> {
    let fail = |step: &'static str| ResolvMountError::Detach {
        path: path.to_path_buf(),
        step,
        source: std::io::Error::last_os_error(),
    };
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| ResolvMountError::NulInPath(path.into()))?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(fail("clone the file into a detached mount"));
    }
    // SAFETY: open_tree returned a fresh descriptor that we own from here on.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // SAFETY: mount_attr is plain data; zeroed is valid.
    let mut attr: libc::mount_attr = unsafe { std::mem::zeroed() };
    attr.attr_set = libc::MOUNT_ATTR_RDONLY
        | libc::MOUNT_ATTR_NOSUID
        | libc::MOUNT_ATTR_NODEV
        | libc::MOUNT_ATTR_NOEXEC;
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names `tree` itself; `attr` is a
    // valid mount_attr of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            size_of::<libc::mount_attr>(),
        )
    };
    if rc != 0 {
        return Err(fail("make the detached mount read-only"));
    }
    Ok(tree)
}

pub fn bind_resolv_conf(
    pid: i32,
    rootfs: &Path,
    source_file: &Path,
) -> Result<(), ResolvMountError> {
    let open = |path: &Path, flags: i32| -> Result<OwnedFd, ResolvMountError> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)
            .map_err(|source| ResolvMountError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(OwnedFd::from(f))
    };
    use std::os::unix::fs::OpenOptionsExt;
    let ns_path = PathBuf::from(format!("/proc/{pid}/ns/mnt"));
    let mntns = open(&ns_path, libc::O_CLOEXEC)?;
    let src = detached_read_only_copy(source_file)?;
    let root_c = CString::new(rootfs.as_os_str().as_bytes())
        .map_err(|_| ResolvMountError::NulInPath(rootfs.into()))?;
    let (read_end, write_end) = pipe()?;

    // SAFETY: fork() in a possibly multi-threaded process; the child below only makes
    // async-signal-safe syscalls on memory prepared before the fork, then _exit()s.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(ResolvMountError::Fork {
            source: std::io::Error::last_os_error(),
        });
    }
    if child == 0 {
        drop_in_child(&read_end);
        let (step, errno) = match child_mount(mntns.as_raw_fd(), src.as_raw_fd(), &root_c) {
            Ok(()) => (u32::MAX, 0),
            Err(e) => e,
        };
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&step.to_ne_bytes());
        msg[4..].copy_from_slice(&errno.to_ne_bytes());
        // SAFETY: writing 8 bytes from a stack buffer to our pipe fd, then leaving without
        // running any destructor or atexit handler of the parent's copy of the process.
        unsafe {
            libc::write(write_end.as_raw_fd(), msg.as_ptr().cast(), msg.len());
            libc::_exit(if step == u32::MAX { 0 } else { 1 });
        }
    }
    drop(write_end);
    let mut msg = Vec::new();
    let read = File::from(read_end).read_to_end(&mut msg);
    let mut status = 0;
    // SAFETY: reaping the child we just forked; `status` is a valid out pointer.
    unsafe {
        while libc::waitpid(child, &mut status, 0) < 0 && *libc::__errno_location() == libc::EINTR {
        }
    }
    let fail = |step: &'static str, source: std::io::Error| ResolvMountError::Mount {
        pid,
        source_file: source_file.to_path_buf(),
        rootfs: rootfs.to_path_buf(),
        step,
        source,
    };
    if let Err(e) = read {
        return Err(fail("read the helper's report", e));
    }
    if msg.len() != 8 {
        return Err(fail(
            "the helper died without a report",
            std::io::Error::other(format!("wait status {status}")),
        ));
    }
    let step = u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]);
    let errno = i32::from_ne_bytes([msg[4], msg[5], msg[6], msg[7]]);
    if step == u32::MAX {
        return Ok(());
    }
    let name = STEPS.get(step as usize).copied().unwrap_or("unknown step");
    Err(fail(name, std::io::Error::from_raw_os_error(errno)))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), ResolvMountError> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(ResolvMountError::Fork {
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn drop_in_child(fd: &OwnedFd) {
    // SAFETY: closing the child's copy of the read end; the OwnedFd is never used again in the
    // child, which leaves through _exit without running destructors.
    unsafe { libc::close(fd.as_raw_fd()) };
}

fn errno() -> i32 {
    // SAFETY: reading the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

fn openat2(dirfd: RawFd, path: &[u8], flags: i32, mode: u64) -> Result<RawFd, i32> {
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.mode = mode;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `path` is NUL-terminated (callers pass byte literals ending in \0) and `how` is a
    // valid open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            path.as_ptr(),
            &how as *const libc::open_how,
            size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd as RawFd)
    }
}

/// Runs in the forked child. Err((step index, errno)).
fn child_mount(mntns: RawFd, src: RawFd, rootfs: &CString) -> Result<(), (u32, i32)> {
    const TARGET: &[u8] = b"etc/resolv.conf\0";
    // SAFETY: each call below is a plain syscall on descriptors this child owns and on
    // NUL-terminated strings that outlive the call.
    unsafe {
        if libc::setns(mntns, libc::CLONE_NEWNS) != 0 {
            return Err((0, errno()));
        }
        let root = libc::open(
            rootfs.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if root < 0 {
            return Err((1, errno()));
        }
        let dst = match openat2(root, TARGET, libc::O_PATH | libc::O_CLOEXEC, 0) {
            Ok(fd) => fd,
            Err(libc::ENOENT) => {
                if libc::mkdirat(root, c"etc".as_ptr(), 0o755) != 0 && errno() != libc::EEXIST {
                    return Err((3, errno()));
                }
                let created = openat2(
                    root,
                    TARGET,
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                )
                .map_err(|e| (4, e))?;
                libc::close(created);
                openat2(root, TARGET, libc::O_PATH | libc::O_CLOEXEC, 0).map_err(|e| (2, e))?
            }
            Err(e) => return Err((2, e)),
        };
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(dst, &mut st) != 0 {
            return Err((2, errno()));
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err((5, libc::EINVAL));
        }
        let rc = libc::syscall(
            libc::SYS_move_mount,
            src,
            c"".as_ptr(),
            dst,
            c"".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        );
        if rc != 0 {
            return Err((6, errno()));
        }
    }
    Ok(())
}
