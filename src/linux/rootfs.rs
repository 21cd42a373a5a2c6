//! The container's filesystem view, built inside its mount namespace before pivot_root:
//! propagation, the root mount, every config mount, /dev, then pivot_root, masks and read-only bits.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use nix::sys::statvfs::{FsFlags, statvfs};
use nix::unistd::{Gid, Uid, chdir, chown, chroot, fchdir, pivot_root};

use super::in_root::{Create, InRootError, fd_path, open_in_root, open_root};
use crate::spec::{DeviceNode, MountKind, MountOp};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("mount {what} on {target}")]
    Mount {
        what: String,
        target: PathBuf,
        #[source]
        source: Errno,
    },
    #[error(transparent)]
    InRoot(#[from] InRootError),
    #[error("open root {path}")]
    OpenRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("create device {path}")]
    Device {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("create symlink {path}")]
    Symlink {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pivot_root into {path}")]
    Pivot {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn mnt(
    what: &str,
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), RootfsError> {
    mount(source, target, fstype, flags, data).map_err(|source| RootfsError::Mount {
        what: what.to_owned(),
        target: target.to_owned(),
        source,
    })
}

/// Step 1: our mount namespace must not propagate back to the host, and the root must be a
/// mount point of its own for pivot_root.
pub fn prepare_root(rootfs: &Path, propagation: MsFlags) -> Result<(), RootfsError> {
    mnt(
        "propagation",
        None,
        Path::new("/"),
        None,
        propagation | MsFlags::MS_REC,
        None,
    )?;
    make_parent_mount_private(rootfs)?;
    mnt(
        "rootfs bind",
        Some(rootfs),
        rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
}

/// Mounts an overlay with `lower` as its read-only layer at `merged`.
pub fn mount_overlay(
    lower: &Path,
    upper: &Path,
    work: &Path,
    merged: &Path,
) -> Result<(), RootfsError> {
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    mnt(
        "overlay",
        Some(Path::new("overlay")),
        merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(&data),
    )
}

/// pivot_root refuses a new root whose parent mount is shared: make that one mount private.
fn make_parent_mount_private(rootfs: &Path) -> Result<(), RootfsError> {
    let path = PathBuf::from("/proc/self/mountinfo");
    let info =
        std::fs::read_to_string(&path).map_err(|source| RootfsError::Read { path, source })?;
    let parent = rootfs.parent().unwrap_or(Path::new("/"));
    let mount_point = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|mp| parent.starts_with(mp))
        .max_by_key(|mp| mp.as_os_str().len())
        .unwrap_or_else(|| PathBuf::from("/"));
    mnt(
        "parent private",
        None,
        &mount_point,
        None,
        MsFlags::MS_PRIVATE,
        None,
    )
}

fn unescape_mountinfo(field: &str) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let b = field.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// Facts the mount step needs about the container.
pub struct MountContext<'a> {
    pub rootfs: &'a Path,
    pub in_user_ns: bool,
    /// The container's cgroup paths by hierarchy mount point (from /proc/self/cgroup + mountinfo).
    pub cgroup_binds: &'a [(String, PathBuf)],
}

/// Step 2: every mount of the config, in order, each target resolved inside the root.
pub fn mount_all(ops: &[MountOp], ctx: &MountContext) -> Result<(), RootfsError> {
    let root = open_root(ctx.rootfs).map_err(|source| RootfsError::OpenRoot {
        path: ctx.rootfs.to_owned(),
        source,
    })?;
    for op in ops {
        mount_one(&root, op, ctx)?;
    }
    Ok(())
}

fn mount_one(root: &OwnedFd, op: &MountOp, ctx: &MountContext) -> Result<(), RootfsError> {
    let dest = &op.destination;
    match &op.kind {
        MountKind::Bind { recursive } => {
            let source = op.source.as_deref().unwrap_or(Path::new("/"));
            let create = if source.is_dir() {
                Create::Dir
            } else {
                Create::File
            };
            bind(root, source, dest, *recursive, create)?;
        }
        MountKind::Fs(fstype) if fstype == "cgroup" || fstype == "cgroup2" => {
            return mount_cgroups(root, op, ctx);
        }
        MountKind::Fs(fstype) => {
            let target = open_in_root(root, dest, Create::Dir)?;
            let source = op.source.clone().unwrap_or_else(|| PathBuf::from(fstype));
            let data = (!op.data.is_empty()).then_some(op.data.as_str());
            let r = mount(
                Some(&source),
                &fd_path(&target),
                Some(fstype.as_str()),
                op.flags,
                data,
            );
            match (r, fstype.as_str()) {
                (Ok(()), _) => {}
                // Without a network namespace of its own (or in a user namespace) sysfs and
                // mqueue cannot be mounted fresh: bind the host's, as runc does.
                (Err(Errno::EPERM), "sysfs") => {
                    bind(root, Path::new("/sys"), dest, true, Create::Dir)?
                }
                (Err(Errno::EPERM), "mqueue") => {
                    bind(root, Path::new("/dev/mqueue"), dest, false, Create::Dir)?
                }
                (Err(source), _) => {
                    return Err(RootfsError::Mount {
                        what: fstype.clone(),
                        target: dest.clone(),
                        source,
                    });
                }
            }
        }
    }
    if op.needs_bind_remount()
        || (matches!(op.kind, MountKind::Fs(ref t) if t == "sysfs")
            && op.flags.contains(MsFlags::MS_RDONLY))
    {
        remount(root, dest, op.flags)?;
    }
    for p in &op.propagation {
        let target = open_in_root(root, dest, Create::Nothing)?;
        mnt("propagation", None, &fd_path(&target), None, *p, None)?;
    }
    Ok(())
}

fn bind(
    root: &OwnedFd,
    source: &Path,
    dest: &Path,
    recursive: bool,
    create: Create,
) -> Result<(), RootfsError> {
    let target = open_in_root(root, dest, create)?;
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    mnt("bind", Some(source), &fd_path(&target), None, flags, None).map_err(|e| match e {
        RootfsError::Mount {
            what,
            source: errno,
            ..
        } => RootfsError::Mount {
            what: format!("{what} {}", source.display()),
            target: dest.to_owned(),
            source: errno,
        },
        other => other,
    })
}

/// Applies flags to an existing bind mount, keeping the flags the kernel locks in a user
/// namespace (nosuid, nodev, noexec, ro of the source) or the remount fails with EPERM.
fn remount(root: &OwnedFd, dest: &Path, flags: MsFlags) -> Result<(), RootfsError> {
    let target = open_in_root(root, dest, Create::Nothing)?;
    let path = fd_path(&target);
    let locked = statvfs(&path)
        .map(|s| locked_flags(s.flags()))
        .unwrap_or(MsFlags::empty());
    mnt(
        "remount",
        None,
        &path,
        None,
        flags | locked | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
        None,
    )
}

fn locked_flags(f: FsFlags) -> MsFlags {
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

/// A cgroup mount shows the container's own cgroups: a tmpfs with one bind per v1 hierarchy
/// (plus the unified one), or the cgroup2 subtree on a pure v2 host.
fn mount_cgroups(root: &OwnedFd, op: &MountOp, ctx: &MountContext) -> Result<(), RootfsError> {
    let dest = &op.destination;
    let pure_v2 = ctx.cgroup_binds.len() == 1 && ctx.cgroup_binds[0].0.is_empty();
    if pure_v2 {
        let (_, host) = &ctx.cgroup_binds[0];
        let target = open_in_root(root, dest, Create::Dir)?;
        if mount(
            Some("cgroup2"),
            &fd_path(&target),
            Some("cgroup2"),
            op.flags,
            None::<&str>,
        )
        .is_err()
        {
            bind(root, host, dest, true, Create::Dir)?;
        }
    } else {
        let target = open_in_root(root, dest, Create::Dir)?;
        mnt(
            "tmpfs",
            Some(Path::new("tmpfs")),
            &fd_path(&target),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=755"),
        )?;
        for (name, host) in ctx.cgroup_binds {
            if !host.is_dir() {
                continue;
            }
            bind(root, host, &dest.join(name), false, Create::Dir)?;
            remount(
                root,
                &dest.join(name),
                op.flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            )?;
        }
        if op.flags.contains(MsFlags::MS_RDONLY) {
            remount(
                root,
                dest,
                op.flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            )?;
        }
    }
    Ok(())
}

const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Step 3: the default device nodes, the config's devices, and the /dev symlinks.
pub fn populate_dev(
    rootfs: &Path,
    own_dev: bool,
    devices: &[DeviceNode],
    in_user_ns: bool,
) -> Result<(), RootfsError> {
    let root = open_root(rootfs).map_err(|source| RootfsError::OpenRoot {
        path: rootfs.to_owned(),
        source,
    })?;
    let mut nodes: Vec<DeviceNode> = Vec::new();
    if own_dev {
        nodes.extend(
            DEFAULT_DEVICES
                .iter()
                .map(|(name, major, minor)| DeviceNode {
                    path: PathBuf::from("/dev").join(name),
                    kind: libc::S_IFCHR,
                    major: *major,
                    minor: *minor,
                    mode: 0o666,
                    uid: 0,
                    gid: 0,
                }),
        );
    }
    nodes.extend(devices.iter().cloned());
    for node in &nodes {
        make_device(&root, node, in_user_ns)?;
    }
    if own_dev {
        for (link, target) in [
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
            ("/dev/core", "/proc/kcore"),
        ] {
            symlink_in_root(&root, Path::new(link), target)?;
        }
        if !path_exists_in_root(&root, Path::new("/dev/ptmx")) {
            symlink_in_root(&root, Path::new("/dev/ptmx"), "pts/ptmx")?;
        }
    }
    Ok(())
}

fn path_exists_in_root(root: &OwnedFd, path: &Path) -> bool {
    open_in_root(root, path, Create::Nothing).is_ok()
}

fn symlink_in_root(root: &OwnedFd, link: &Path, target: &str) -> Result<(), RootfsError> {
    let parent = open_in_root(root, link.parent().unwrap_or(Path::new("/")), Create::Dir)?;
    let name = link.file_name().unwrap_or_default();
    match nix::unistd::symlinkat(target, parent.as_fd(), name) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(RootfsError::Symlink {
            path: link.to_owned(),
            source: e.into(),
        }),
    }
}

fn make_device(root: &OwnedFd, node: &DeviceNode, in_user_ns: bool) -> Result<(), RootfsError> {
    let err = |source| RootfsError::Device {
        path: node.path.clone(),
        source,
    };
    if in_user_ns {
        // mknod is not allowed in a user namespace: bind the host's node instead.
        return bind(root, &node.path, &node.path, false, Create::File);
    }
    let parent = open_in_root(
        root,
        node.path.parent().unwrap_or(Path::new("/dev")),
        Create::Dir,
    )?;
    let name = node.path.file_name().unwrap_or_default();
    let parent_path = fd_path(&parent);
    let full = parent_path.join(name);
    let kind = SFlag::from_bits_truncate(node.kind);
    match mknod(
        &full,
        kind,
        Mode::from_bits_truncate(node.mode),
        makedev(node.major, node.minor),
    ) {
        Ok(()) => {}
        Err(Errno::EEXIST) => {
            // Replace whatever the rootfs had there: the config decides what the node is.
            nix::unistd::unlink(&full).map_err(err)?;
            mknod(
                &full,
                kind,
                Mode::from_bits_truncate(node.mode),
                makedev(node.major, node.minor),
            )
            .map_err(err)?;
        }
        Err(e) => return Err(err(e)),
    }
    // mknod applies the umask; the config's mode is exact.
    nix::sys::stat::fchmodat(
        parent.as_fd(),
        name,
        Mode::from_bits_truncate(node.mode),
        nix::sys::stat::FchmodatFlags::NoFollowSymlink,
    )
    .or_else(|e| {
        if e == Errno::EOPNOTSUPP {
            Ok(())
        } else {
            Err(e)
        }
    })
    .map_err(err)?;
    chown(
        &full,
        Some(Uid::from_raw(node.uid)),
        Some(Gid::from_raw(node.gid)),
    )
    .map_err(err)
}

/// Step 5: make the prepared root the process's `/`.
pub fn enter_root(rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    let err = |source| RootfsError::Pivot {
        path: rootfs.to_owned(),
        source,
    };
    if no_pivot {
        chdir(rootfs).map_err(err)?;
        mnt(
            "move root",
            Some(rootfs),
            Path::new("/"),
            None,
            MsFlags::MS_MOVE,
            None,
        )?;
        chroot(".").map_err(err)?;
        return chdir("/").map_err(err);
    }
    let root = open_root(rootfs).map_err(|source| RootfsError::OpenRoot {
        path: rootfs.to_owned(),
        source,
    })?;
    fchdir(root.as_fd()).map_err(err)?;
    // pivot_root(".", ".") stacks the old root under the new one; it is then detached.
    pivot_root(".", ".").map_err(err)?;
    // The old root must not carry our unmount back to the host.
    mnt(
        "old root slave",
        None,
        Path::new("."),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
    )?;
    umount2(".", MntFlags::MNT_DETACH).map_err(err)?;
    chdir("/").map_err(err)
}

/// The container's `/`, after pivot_root.
fn open_new_root() -> Result<OwnedFd, RootfsError> {
    open_root(Path::new("/")).map_err(|source| RootfsError::OpenRoot {
        path: "/".into(),
        source,
    })
}

/// A path inside the root, or None when it does not exist (masked and read-only paths may be
/// absent from an image).
fn open_if_exists(root: &OwnedFd, path: &Path) -> Result<Option<OwnedFd>, RootfsError> {
    match open_in_root(root, path, Create::Nothing) {
        Ok(fd) => Ok(Some(fd)),
        Err(InRootError::Open {
            source: Errno::ENOENT,
            ..
        }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Step 4 (before pivot_root): masked paths disappear, read-only paths become read-only.
/// Targets are resolved inside the root; the mask source is the host's /dev/null, never a
/// path an image controls (its /dev/null could be a symlink to something writable).
pub fn mask_paths(rootfs: &Path, masked: &[PathBuf]) -> Result<(), RootfsError> {
    let root = open_root(rootfs).map_err(|source| RootfsError::OpenRoot {
        path: rootfs.to_owned(),
        source,
    })?;
    for path in masked {
        let Some(target) = open_if_exists(&root, path)? else {
            continue;
        };
        let fdp = fd_path(&target);
        if fdp.is_dir() {
            mnt(
                "mask",
                Some(Path::new("tmpfs")),
                &fdp,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some("size=0,mode=755"),
            )?;
        } else {
            mnt(
                "mask",
                Some(Path::new("/dev/null")),
                &fdp,
                None,
                MsFlags::MS_BIND,
                None,
            )?;
        }
    }
    Ok(())
}

pub fn readonly_paths(rootfs: &Path, paths: &[PathBuf]) -> Result<(), RootfsError> {
    let root = open_root(rootfs).map_err(|source| RootfsError::OpenRoot {
        path: rootfs.to_owned(),
        source,
    })?;
    for path in paths {
        let Some(target) = open_if_exists(&root, path)? else {
            continue;
        };
        mnt(
            "readonly bind",
            Some(&fd_path(&target)),
            &fd_path(&target),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        remount(&root, path, MsFlags::MS_RDONLY | MsFlags::MS_REC)?;
    }
    Ok(())
}

pub fn readonly_root() -> Result<(), RootfsError> {
    let root = open_new_root()?;
    remount(&root, Path::new("/"), MsFlags::MS_RDONLY)
}

/// Binds the console pty slave over /dev/console (created as an empty file if missing).
pub fn bind_console(slave_path: &Path) -> Result<(), RootfsError> {
    let root = open_new_root()?;
    bind(
        &root,
        slave_path,
        Path::new("/dev/console"),
        false,
        Create::File,
    )
}
