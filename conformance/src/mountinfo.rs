//! Reads mount points from `/proc/self/mountinfo`.

use std::fs;
use std::path::{Path, PathBuf};

/// Mount points of this mount namespace, in mountinfo order (parents first).
pub fn mount_points() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .map(|text| text.lines().filter_map(mount_point).collect())
        .unwrap_or_default()
}

/// Mount points at or below `dir`, deepest last as they appear in mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mount_points()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// Whether `path` itself is a mount point.
pub fn is_mount_point(path: &Path) -> bool {
    mount_points().iter().any(|m| m == path)
}

fn mount_point(line: &str) -> Option<PathBuf> {
    // Fields: id parent major:minor root mount_point options ...
    line.split(' ')
        .nth(4)
        .map(|field| PathBuf::from(unescape(field)))
}

/// Undoes the kernel's octal escapes (`\040` for space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes.get(i + 1..i + 4).filter(|_| bytes[i] == b'\\');
        match escaped
            .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok())
        {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mount_point_with_escaped_space() {
        let line = r"36 35 98:0 /mnt1 /mnt/with\040space rw,noatime master:1 - ext3 /dev/root rw";
        assert_eq!(mount_point(line), Some(PathBuf::from("/mnt/with space")));
    }

    #[test]
    fn root_of_this_namespace_is_a_mount_point() {
        assert!(is_mount_point(Path::new("/")));
    }
}
