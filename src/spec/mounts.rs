//! One config.json mount -> one mount operation: flags, propagation and data split apart.

use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::Mount;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    Bind {
        recursive: bool,
    },
    /// A filesystem mounted by type (proc, sysfs, tmpfs, devpts, mqueue, cgroup, cgroup2, overlay...).
    Fs(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOp {
    /// Absolute, lexically clean, inside the container root.
    pub destination: PathBuf,
    pub kind: MountKind,
    /// For binds: an absolute host path (relative sources are resolved against the bundle).
    pub source: Option<PathBuf>,
    pub flags: MsFlags,
    /// Propagation changes applied after the mount (MS_SHARED, MS_PRIVATE|MS_REC, ...).
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific options (mode=755, size=64m, newinstance...).
    pub data: String,
}

impl MountOp {
    /// A bind that also wants flags (ro, nosuid...) needs a second, remount step.
    pub fn needs_bind_remount(&self) -> bool {
        matches!(self.kind, MountKind::Bind { .. })
            && self.flags.intersects(
                MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC
                    | MsFlags::MS_NOATIME
                    | MsFlags::MS_NODIRATIME
                    | MsFlags::MS_RELATIME
                    | MsFlags::MS_STRICTATIME,
            )
    }
}

/// Lexically cleans an absolute in-container path. `..` may not climb above `/`.
pub fn clean_container_path(path: &Path) -> Result<PathBuf, String> {
    if !path.is_absolute() {
        return Err("must be an absolute path".into());
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err("escapes the container root".into());
                }
                if out.as_os_str().is_empty() {
                    return Err("escapes the container root".into());
                }
            }
            Component::Normal(n) => out.push(n),
            Component::Prefix(_) => return Err("is not a Linux path".into()),
        }
    }
    // `/..` pops "/" itself: PathBuf::pop on "/" returns false, caught above.
    Ok(out)
}

enum Opt {
    Set(MsFlags),
    Clear(MsFlags),
    Propagation(MsFlags),
    Bind { recursive: bool },
    Ignore,
}

fn classify(option: &str) -> Option<Opt> {
    use MsFlags as F;
    Some(match option {
        "ro" => Opt::Set(F::MS_RDONLY),
        "rw" => Opt::Clear(F::MS_RDONLY),
        "nosuid" => Opt::Set(F::MS_NOSUID),
        "suid" => Opt::Clear(F::MS_NOSUID),
        "nodev" => Opt::Set(F::MS_NODEV),
        "dev" => Opt::Clear(F::MS_NODEV),
        "noexec" => Opt::Set(F::MS_NOEXEC),
        "exec" => Opt::Clear(F::MS_NOEXEC),
        "sync" => Opt::Set(F::MS_SYNCHRONOUS),
        "async" => Opt::Clear(F::MS_SYNCHRONOUS),
        "dirsync" => Opt::Set(F::MS_DIRSYNC),
        "mand" => Opt::Set(F::MS_MANDLOCK),
        "nomand" => Opt::Clear(F::MS_MANDLOCK),
        "noatime" => Opt::Set(F::MS_NOATIME),
        "atime" => Opt::Clear(F::MS_NOATIME),
        "nodiratime" => Opt::Set(F::MS_NODIRATIME),
        "diratime" => Opt::Clear(F::MS_NODIRATIME),
        "relatime" => Opt::Set(F::MS_RELATIME),
        "norelatime" => Opt::Clear(F::MS_RELATIME),
        "strictatime" => Opt::Set(F::MS_STRICTATIME),
        "nostrictatime" => Opt::Clear(F::MS_STRICTATIME),
        "bind" => Opt::Bind { recursive: false },
        "rbind" => Opt::Bind { recursive: true },
        "private" => Opt::Propagation(F::MS_PRIVATE),
        "rprivate" => Opt::Propagation(F::MS_PRIVATE | F::MS_REC),
        "shared" => Opt::Propagation(F::MS_SHARED),
        "rshared" => Opt::Propagation(F::MS_SHARED | F::MS_REC),
        "slave" => Opt::Propagation(F::MS_SLAVE),
        "rslave" => Opt::Propagation(F::MS_SLAVE | F::MS_REC),
        "unbindable" => Opt::Propagation(F::MS_UNBINDABLE),
        "runbindable" => Opt::Propagation(F::MS_UNBINDABLE | F::MS_REC),
        // Options runc accepts that need nothing from a mount(2)-based runtime.
        "tmpcopyup" | "defaults" => Opt::Ignore,
        _ => return None,
    })
}

/// Plans one mount; the error names what is wrong with it (the caller adds the index).
pub fn plan_mount(mount: &Mount, bundle: &Path) -> Result<MountOp, String> {
    let destination = clean_container_path(mount.destination())
        .map_err(|why| format!("destination {:?} {why}", mount.destination()))?;
    if mount.uid_mappings().is_some() || mount.gid_mappings().is_some() {
        return Err(format!(
            "destination {destination:?}: id-mapped mounts are not supported"
        ));
    }
    let mut flags = MsFlags::empty();
    let mut propagation = Vec::new();
    let mut data = Vec::new();
    let mut bind = None;
    for option in mount.options().iter().flatten() {
        match classify(option) {
            Some(Opt::Set(f)) => flags |= f,
            Some(Opt::Clear(f)) => flags &= !f,
            Some(Opt::Propagation(f)) => propagation.push(f),
            Some(Opt::Bind { recursive }) => bind = Some(recursive || bind == Some(true)),
            Some(Opt::Ignore) => {}
            None if matches!(option.as_str(), "idmap" | "ridmap") => {
                return Err(format!(
                    "destination {destination:?}: id-mapped mounts are not supported"
                ));
            }
            None => data.push(option.clone()),
        }
    }
    let typ = mount.typ().as_deref().unwrap_or("");
    let kind = match (bind, typ) {
        (Some(recursive), _) => MountKind::Bind { recursive },
        (None, "bind") => MountKind::Bind { recursive: false },
        (None, "") => {
            return Err(format!(
                "destination {destination:?}: no type and no bind option"
            ));
        }
        (None, t) => MountKind::Fs(t.to_owned()),
    };
    let source = match (&kind, mount.source()) {
        (MountKind::Bind { .. }, None) => {
            return Err(format!(
                "destination {destination:?}: bind mount without a source"
            ));
        }
        (MountKind::Bind { .. }, Some(src)) if src.is_relative() => Some(bundle.join(src)),
        (_, src) => src.clone(),
    };
    Ok(MountOp {
        destination,
        kind,
        source,
        flags,
        propagation,
        data: data.join(","),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::MountBuilder;

    fn mount(dest: &str, typ: &str, src: &str, opts: &[&str]) -> Mount {
        MountBuilder::default()
            .destination(dest)
            .typ(typ)
            .source(src)
            .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap()
    }

    #[test]
    fn clean_paths() {
        assert_eq!(
            clean_container_path(Path::new("/a/./b/../c")).unwrap(),
            PathBuf::from("/a/c")
        );
        assert!(clean_container_path(Path::new("relative/x")).is_err());
        assert!(clean_container_path(Path::new("/../etc")).is_err());
        assert!(clean_container_path(Path::new("/a/../../etc")).is_err());
    }

    #[test]
    fn tmpfs_flags_and_data() {
        let op = plan_mount(
            &mount(
                "/dev",
                "tmpfs",
                "tmpfs",
                &["nosuid", "strictatime", "mode=755", "size=65536k"],
            ),
            Path::new("/b"),
        )
        .unwrap();
        assert_eq!(op.kind, MountKind::Fs("tmpfs".into()));
        assert_eq!(op.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(op.data, "mode=755,size=65536k");
        assert!(!op.needs_bind_remount());
    }

    #[test]
    fn bind_relative_source_and_propagation() {
        let op = plan_mount(
            &mount("/data", "none", "host", &["rbind", "ro", "rprivate"]),
            Path::new("/b"),
        )
        .unwrap();
        assert_eq!(op.kind, MountKind::Bind { recursive: true });
        assert_eq!(op.source, Some(PathBuf::from("/b/host")));
        assert_eq!(op.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert!(op.needs_bind_remount());
    }

    #[test]
    fn rejects_bad_destinations() {
        let e = plan_mount(&mount("data", "tmpfs", "tmpfs", &[]), Path::new("/b")).unwrap_err();
        assert!(e.contains("absolute"), "{e}");
        let e =
            plan_mount(&mount("/../../etc", "tmpfs", "tmpfs", &[]), Path::new("/b")).unwrap_err();
        assert!(e.contains("escapes"), "{e}");
    }
}
