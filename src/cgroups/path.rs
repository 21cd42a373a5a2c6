//! Where a container's cgroup lives: turning `linux.cgroupsPath` into a normalised path
//! relative to the root of every hierarchy.
//!
//! Rules (pure, no I/O):
//! - cgroupfs driver (`systemd == false`):
//!   - absolute path: used as given (normalised), relative to the hierarchy root;
//!   - relative path: placed under the husk default parent, [`DEFAULT_PARENT`] (`/husk/<path>`);
//!   - no path: `/husk/<container id>`.
//! - systemd driver (`systemd == true`), as passed by podman, containerd and kubelet:
//!   `slice:prefix:name` maps to the directory systemd would create, e.g.
//!   `machine.slice:libpod:abc` -> `/machine.slice/libpod-abc.scope` and
//!   `kubepods-burstable.slice:cri-containerd:abc` ->
//!   `/kubepods.slice/kubepods-burstable.slice/cri-containerd-abc.scope`.
//!   An empty slice means `system.slice`; an empty prefix gives `<name>.scope`; a name that
//!   is itself a `.slice` is used as the unit name. No path means `system.slice:husk:<id>`.
//!   systemd is not running here, so husk creates these directories itself.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::CgroupError;

/// Parent of containers whose cgroups path is relative or missing (cgroupfs driver).
pub const DEFAULT_PARENT: &str = "/husk";
/// Slice used by the systemd driver when the path names no slice.
pub const DEFAULT_SLICE: &str = "system.slice";
/// Scope prefix used by the systemd driver when the spec gives no cgroups path.
pub const DEFAULT_SCOPE_PREFIX: &str = "husk";

/// A normalised cgroup path, always absolute (`/a/b`), relative to the root of a hierarchy.
/// It never contains `.`/`..` components or empty components, and is never `/` itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CgroupPath(String);

impl CgroupPath {
    /// Validates and normalises an absolute cgroup path.
    pub fn new(path: &str) -> Result<Self, CgroupError> {
        let invalid = |reason: &str| CgroupError::InvalidPath {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        if !path.starts_with('/') {
            return Err(invalid("must be absolute"));
        }
        if path.contains('\0') {
            return Err(invalid("contains a NUL byte"));
        }
        let mut parts = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(invalid("must not contain \"..\"")),
                other => parts.push(other),
            }
        }
        if parts.is_empty() {
            return Err(invalid("must not be the root cgroup"));
        }
        Ok(Self(format!("/{}", parts.join("/"))))
    }

    /// The path as `/a/b`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path without its leading slash (`a/b`), ready to join onto a mount point.
    pub fn relative(&self) -> &str {
        self.0.trim_start_matches('/')
    }

    /// The components, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.relative().split('/')
    }
}

impl fmt::Display for CgroupPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for CgroupPath {
    type Error = CgroupError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<CgroupPath> for String {
    fn from(value: CgroupPath) -> Self {
        value.0
    }
}

/// Resolves `linux.cgroupsPath` (see the module documentation for the rules).
pub fn resolve_path(
    cgroups_path: Option<&str>,
    container_id: &str,
    systemd: bool,
) -> Result<CgroupPath, CgroupError> {
    let cgroups_path = cgroups_path.filter(|p| !p.is_empty());
    if systemd {
        return match cgroups_path {
            Some(path) => systemd_path(path),
            None => systemd_unit_path(DEFAULT_SLICE, DEFAULT_SCOPE_PREFIX, container_id).map_err(
                |reason| CgroupError::InvalidSystemdPath {
                    path: format!("{DEFAULT_SLICE}:{DEFAULT_SCOPE_PREFIX}:{container_id}"),
                    reason,
                },
            ),
        };
    }
    match cgroups_path {
        Some(path) if path.starts_with('/') => CgroupPath::new(path),
        Some(path) => CgroupPath::new(&format!("{DEFAULT_PARENT}/{path}")),
        None => {
            if container_id.is_empty() || container_id.contains('/') || container_id == ".." {
                return Err(CgroupError::InvalidPath {
                    path: format!("{DEFAULT_PARENT}/{container_id}"),
                    reason: "the container id must be one non-empty path component".to_string(),
                });
            }
            CgroupPath::new(&format!("{DEFAULT_PARENT}/{container_id}"))
        }
    }
}

/// `slice:prefix:name` -> the cgroupfs path systemd would use.
fn systemd_path(path: &str) -> Result<CgroupPath, CgroupError> {
    let invalid = |reason: String| CgroupError::InvalidSystemdPath {
        path: path.to_string(),
        reason,
    };
    let parts: Vec<&str> = path.split(':').collect();
    let [slice, prefix, name] = parts.as_slice() else {
        return Err(invalid(
            "expected the form \"slice:prefix:name\"".to_string(),
        ));
    };
    let slice = if slice.is_empty() {
        DEFAULT_SLICE
    } else {
        slice
    };
    systemd_unit_path(slice, prefix, name).map_err(invalid)
}

fn systemd_unit_path(slice: &str, prefix: &str, name: &str) -> Result<CgroupPath, String> {
    if name.is_empty() {
        return Err("the unit name is empty".to_string());
    }
    for (what, value) in [("prefix", prefix), ("name", name)] {
        if value.contains('/') {
            return Err(format!("the {what} {value:?} contains '/'"));
        }
    }
    let unit = if name.ends_with(".slice") {
        // A slice as the unit: systemd nests it under its own expanded path, which must
        // lie under the parent slice.
        let parent = expand_slice(slice)?;
        let own = expand_slice(name)?;
        if !own.starts_with(&format!("{parent}/")) {
            return Err(format!("slice {name:?} is not a child of {slice:?}"));
        }
        return CgroupPath::new(&own).map_err(|e| e.to_string());
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    let parent = expand_slice(slice)?;
    CgroupPath::new(&format!("{parent}/{unit}")).map_err(|e| e.to_string())
}

/// `a-b-c.slice` -> `/a.slice/a-b.slice/a-b-c.slice`; `-.slice` (the root slice) -> ``.
pub fn expand_slice(slice: &str) -> Result<String, String> {
    let Some(base) = slice.strip_suffix(".slice") else {
        return Err(format!("{slice:?} is not a slice (no \".slice\" suffix)"));
    };
    if slice.contains('/') {
        return Err(format!("slice {slice:?} contains '/'"));
    }
    if base == "-" {
        return Ok(String::new());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for component in base.split('-') {
        if component.is_empty() {
            return Err(format!(
                "slice {slice:?} has an empty component (leading, trailing or doubled '-')"
            ));
        }
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(component);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    Ok(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn resolved(path: Option<&str>, id: &str, systemd: bool) -> String {
        resolve_path(path, id, systemd).unwrap().to_string()
    }

    #[test]
    fn cgroupfs_paths() {
        assert_eq!(resolved(Some("/a/b"), "id", false), "/a/b");
        assert_eq!(resolved(Some("//a/./b/"), "id", false), "/a/b");
        assert_eq!(resolved(Some("k8s/pod1"), "id", false), "/husk/k8s/pod1");
        assert_eq!(resolved(None, "abc", false), "/husk/abc");
        assert_eq!(resolved(Some(""), "abc", false), "/husk/abc");
        // A colon form is just a name for the cgroupfs driver.
        assert_eq!(resolved(Some("/x:y:z"), "id", false), "/x:y:z");
    }

    #[test]
    fn cgroupfs_rejects_escapes_and_root() {
        for bad in ["/a/../b", "/..", "/", "//", "a/.."] {
            assert!(
                matches!(
                    resolve_path(Some(bad), "id", false),
                    Err(CgroupError::InvalidPath { .. })
                ),
                "{bad}"
            );
        }
        assert!(resolve_path(None, "a/b", false).is_err());
        assert!(resolve_path(None, "..", false).is_err());
    }

    #[test]
    fn systemd_paths() {
        assert_eq!(
            resolved(Some("machine.slice:libpod:abc"), "id", true),
            "/machine.slice/libpod-abc.scope"
        );
        assert_eq!(
            resolved(Some("system.slice:containerd:id1"), "id", true),
            "/system.slice/containerd-id1.scope"
        );
        assert_eq!(
            resolved(
                Some("kubepods-besteffort-pod12.slice:cri-containerd:c1"),
                "id",
                true
            ),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-c1.scope"
        );
        assert_eq!(
            resolved(Some(":libpod:abc"), "id", true),
            "/system.slice/libpod-abc.scope"
        );
        assert_eq!(
            resolved(Some("user.slice::abc"), "id", true),
            "/user.slice/abc.scope"
        );
        assert_eq!(resolved(Some("-.slice:p:abc"), "id", true), "/p-abc.scope");
        assert_eq!(
            resolved(Some("a.slice:x:a-b.slice"), "id", true),
            "/a.slice/a-b.slice"
        );
        assert_eq!(resolved(None, "c9", true), "/system.slice/husk-c9.scope");
    }

    #[test]
    fn systemd_rejects_malformed() {
        for bad in [
            "/machine.slice/x",
            "machine.slice:libpod",
            "a:b:c:d",
            "machine:libpod:abc",
            "a--b.slice:p:n",
            "-a.slice:p:n",
            "a-.slice:p:n",
            "machine.slice:lib/pod:n",
            "machine.slice:p:",
            "a.slice:x:b-c.slice",
        ] {
            assert!(
                matches!(
                    resolve_path(Some(bad), "id", true),
                    Err(CgroupError::InvalidSystemdPath { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn expand_slice_nests() {
        assert_eq!(expand_slice("a.slice").unwrap(), "/a.slice");
        assert_eq!(expand_slice("a-b.slice").unwrap(), "/a.slice/a-b.slice");
        assert_eq!(
            expand_slice("a-b-c.slice").unwrap(),
            "/a.slice/a-b.slice/a-b-c.slice"
        );
        assert_eq!(expand_slice("-.slice").unwrap(), "");
        assert!(expand_slice("a.scope").is_err());
    }

    #[test]
    fn path_serde_round_trip_and_validation() {
        let path = CgroupPath::new("/a/b").unwrap();
        let json = serde_json::to_string(&path).unwrap();
        assert_eq!(json, "\"/a/b\"");
        assert_eq!(serde_json::from_str::<CgroupPath>(&json).unwrap(), path);
        assert!(serde_json::from_str::<CgroupPath>("\"/a/../b\"").is_err());
        assert_eq!(path.relative(), "a/b");
        assert_eq!(path.components().collect::<Vec<_>>(), ["a", "b"]);
    }
}
