//! Finding cgroup mounts in `/proc/self/mountinfo` (never hardcoded).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::error::CgroupError;
use super::path::CgroupPath;

/// The mountinfo file read by [`CgroupMounts::discover`].
pub const SELF_MOUNTINFO: &str = "/proc/self/mountinfo";

/// cgroup v1 controllers husk knows; other super options of a v1 mount are flags.
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "debug",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// One mounted cgroup v1 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Mount {
    /// Controllers bound to the hierarchy (`cpu`, or `cpu`+`cpuacct` when co-mounted),
    /// or the hierarchy name such as `name=systemd`.
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
    /// The cgroup mounted there (`/` unless a sub-tree is bind-mounted or the mount was
    /// made in another cgroup namespace).
    pub root: String,
}

impl V1Mount {
    /// The directory of `path` inside this hierarchy.
    pub fn dir(&self, path: &CgroupPath) -> PathBuf {
        dir_under(&self.mount_point, &self.root, path)
    }

    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// One mounted cgroup2 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V2Mount {
    pub mount_point: PathBuf,
    pub root: String,
}

impl V2Mount {
    pub fn dir(&self, path: &CgroupPath) -> PathBuf {
        dir_under(&self.mount_point, &self.root, path)
    }
}

/// All cgroup hierarchies visible to this process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// One entry per v1 hierarchy (the first mount of each wins).
    pub v1: Vec<V1Mount>,
    /// The cgroup2 mount, if any (on a hybrid host, `/sys/fs/cgroup/unified`).
    pub v2: Option<V2Mount>,
}

impl CgroupMounts {
    /// Reads [`SELF_MOUNTINFO`].
    pub fn discover() -> Result<Self, CgroupError> {
        Self::from_file(Path::new(SELF_MOUNTINFO))
    }

    pub fn from_file(path: &Path) -> Result<Self, CgroupError> {
        let text = std::fs::read_to_string(path).map_err(|source| CgroupError::ReadMountinfo {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, reason)| CgroupError::ParseMountinfo {
            path: path.to_path_buf(),
            line,
            reason,
        })
    }

    /// Parses mountinfo text; on error returns the offending line and why.
    pub fn parse(text: &str) -> Result<Self, (String, &'static str)> {
        let mut mounts = Self::default();
        let mut seen: HashSet<Vec<String>> = HashSet::new();
        let mut v2_candidates = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let entry = parse_line(line).map_err(|reason| (line.to_string(), reason))?;
            match entry.fs_type {
                "cgroup" => {
                    let controllers: Vec<String> = entry
                        .super_options
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                        .map(str::to_string)
                        .collect();
                    if controllers.is_empty() || !seen.insert(controllers.clone()) {
                        continue;
                    }
                    mounts.v1.push(V1Mount {
                        controllers,
                        mount_point: entry.mount_point,
                        root: entry.root,
                    });
                }
                "cgroup2" => v2_candidates.push(V2Mount {
                    mount_point: entry.mount_point,
                    root: entry.root,
                }),
                _ => {}
            }
        }
        // Prefer the conventional places over any extra cgroup2 mount someone made.
        let preferred = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];
        mounts.v2 = preferred
            .iter()
            .find_map(|p| {
                v2_candidates
                    .iter()
                    .find(|m| m.mount_point == Path::new(p))
                    .cloned()
            })
            .or_else(|| v2_candidates.into_iter().next());
        Ok(mounts)
    }

    /// The v1 hierarchy that has `controller` bound (or `name=...`).
    pub fn v1_mount(&self, controller: &str) -> Option<&V1Mount> {
        self.v1.iter().find(|m| m.has(controller))
    }
}

struct MountEntry<'a> {
    root: String,
    mount_point: PathBuf,
    fs_type: &'a str,
    super_options: &'a str,
}

fn parse_line(line: &str) -> Result<MountEntry<'_>, &'static str> {
    let (before, after) = line
        .split_once(" - ")
        .ok_or("missing the \" - \" separator")?;
    let fields: Vec<&str> = before.split(' ').collect();
    if fields.len() < 6 {
        return Err("fewer than 6 fields before the separator");
    }
    let mut tail = after.split(' ');
    let fs_type = tail.next().ok_or("missing filesystem type")?;
    let _source = tail.next().ok_or("missing mount source")?;
    let super_options = tail.next().ok_or("missing super options")?;
    Ok(MountEntry {
        root: unescape(fields[3]),
        mount_point: PathBuf::from(unescape(fields[4])),
        fs_type,
        super_options,
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = bytes.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(value) = u8::try_from(value) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `mount_point` + the part of `path` below the mounted `root`.
fn dir_under(mount_point: &Path, root: &str, path: &CgroupPath) -> PathBuf {
    let root = root.trim_end_matches('/');
    let relative = if root.is_empty() {
        path.relative()
    } else {
        path.as_str()
            .strip_prefix(root)
            .filter(|rest| rest.starts_with('/'))
            .map(|rest| rest.trim_start_matches('/'))
            .unwrap_or(path.relative())
    };
    if relative.is_empty() {
        mount_point.to_path_buf()
    } else {
        mount_point.join(relative)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;

    const HYBRID: &str = "\
23 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:29 / /mnt/cpu\\040again rw,relatime - cgroup cgroup rw,cpu
";

    #[test]
    fn parses_hybrid_layout() {
        let mounts = CgroupMounts::parse(HYBRID).unwrap();
        let names: Vec<_> = mounts.v1.iter().map(|m| m.controllers.join(",")).collect();
        assert_eq!(
            names,
            ["cpu", "cpuacct", "cpuset", "memory", "name=systemd"]
        );
        assert_eq!(
            mounts.v1_mount("cpuacct").unwrap().mount_point,
            Path::new("/sys/fs/cgroup/cpuacct")
        );
        assert_eq!(
            mounts.v1_mount("name=systemd").unwrap().mount_point,
            Path::new("/sys/fs/cgroup/systemd")
        );
        assert!(mounts.v1_mount("pids").is_none());
        assert_eq!(
            mounts.v2.unwrap().mount_point,
            Path::new("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn parses_comounted_and_pure_v2() {
        let text = "1 0 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let mounts = CgroupMounts::parse(text).unwrap();
        assert_eq!(mounts.v1[0].controllers, ["cpu", "cpuacct"]);
        assert!(mounts.v1_mount("cpu").unwrap().has("cpuacct"));

        let text = "\
1 0 0:1 / /tmp/extra rw - cgroup2 cgroup2 rw
2 0 0:1 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
";
        let mounts = CgroupMounts::parse(text).unwrap();
        assert!(mounts.v1.is_empty());
        assert_eq!(mounts.v2.unwrap().mount_point, Path::new("/sys/fs/cgroup"));
    }

    #[test]
    fn unescapes_and_rejects_garbage() {
        assert_eq!(unescape("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape("/plain\\"), "/plain\\");
        assert!(CgroupMounts::parse("1 2 3\n").is_err());
    }

    #[test]
    fn dirs_account_for_mount_root() {
        let path = CgroupPath::new("/docker/abc/x").unwrap();
        let mount = V1Mount {
            controllers: vec!["memory".into()],
            mount_point: "/sys/fs/cgroup/memory".into(),
            root: "/docker/abc".into(),
        };
        assert_eq!(mount.dir(&path), Path::new("/sys/fs/cgroup/memory/x"));
        let mount = V1Mount {
            root: "/".into(),
            ..mount
        };
        assert_eq!(
            mount.dir(&path),
            Path::new("/sys/fs/cgroup/memory/docker/abc/x")
        );
        let other = V2Mount {
            mount_point: "/u".into(),
            root: "/elsewhere".into(),
        };
        assert_eq!(other.dir(&path), Path::new("/u/docker/abc/x"));
    }
}
