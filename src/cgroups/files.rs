//! Reading and writing cgroup files, creating and removing cgroup directories.
//!
//! Files are opened without `O_CREAT`: a missing file is an error naming it, exactly as on
//! cgroupfs, which also makes fixture directories behave like the real thing.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use super::error::CgroupError;

/// Writes `value` to `dir/file` in one write.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    let result = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    result.map_err(|source| CgroupError::WriteFile {
        path,
        value: value.to_string(),
        source,
    })
}

pub(crate) fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(|source| CgroupError::ReadFile { path, source })
}

/// Like [`read`], but a missing file (absent controller, older kernel) is `None`.
pub(crate) fn read_optional(dir: &Path, file: &str) -> Result<Option<String>, CgroupError> {
    let path = dir.join(file);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::ReadFile { path, source }),
    }
}

pub(crate) fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

pub(crate) fn parse_error(dir: &Path, file: &str, content: &str) -> CgroupError {
    CgroupError::ParseFile {
        path: dir.join(file),
        content: content.trim().to_string(),
    }
}

/// Reads a single number (`max`, v2's "unlimited", reads as `u64::MAX`); a missing
/// file reads as `None`.
pub(crate) fn read_u64_optional(dir: &Path, file: &str) -> Result<Option<u64>, CgroupError> {
    match read_optional(dir, file)? {
        None => Ok(None),
        Some(text) => parse_u64(&text)
            .map(Some)
            .ok_or_else(|| parse_error(dir, file, &text)),
    }
}

pub(crate) fn parse_u64(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => Some(u64::MAX),
        other => other.parse().ok(),
    }
}

/// `key value` lines (memory.stat, cpu.stat, memory.events, ...). Lines that do not fit
/// are skipped: kernels add keys with other shapes over time.
pub(crate) fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(char::is_whitespace)?;
            Some((key.to_string(), parse_u64(value)?))
        })
        .collect()
}

/// Reads a flat-keyed file; a missing file reads as empty.
pub(crate) fn read_flat_keyed(
    dir: &Path,
    file: &str,
) -> Result<BTreeMap<String, u64>, CgroupError> {
    Ok(read_optional(dir, file)?
        .map(|text| parse_flat_keyed(&text))
        .unwrap_or_default())
}

/// The pids listed in `dir/cgroup.procs`.
pub(crate) fn read_procs(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let text = read(dir, "cgroup.procs")?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim()
                .parse()
                .map_err(|_| parse_error(dir, "cgroup.procs", l))
        })
        .collect()
}

/// The pids of `dir` and every cgroup below it, sorted and without duplicates.
pub(crate) fn read_procs_recursive(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let mut pids = Vec::new();
    for cgroup in walk_dirs(dir)? {
        match read_procs(&cgroup) {
            Ok(found) => pids.extend(found),
            // A child cgroup removed while we walk is not an error.
            Err(CgroupError::ReadFile { source, .. }) if source.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// `dir` and all directories below it, parents before children.
pub(crate) fn walk_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut out = vec![dir.to_path_buf()];
    let mut next = 0;
    while next < out.len() {
        let current = out[next].clone();
        next += 1;
        out.extend(subdirs(&current)?);
    }
    Ok(out)
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let list_error = |source| CgroupError::ListDir {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(list_error(e)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(list_error)?;
        // file_type does not follow symlinks; cgroupfs has none anyway.
        if entry.file_type().map_err(list_error)?.is_dir() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// `mkdir -p`. A concurrent `delete` may remove an empty shared parent (husk's default
/// `/husk`) between two steps; that ENOENT is retried.
pub(crate) fn create_dir_all(dir: &Path) -> Result<(), CgroupError> {
    let mut attempt = 0;
    loop {
        match fs::create_dir_all(dir) {
            Err(e) if e.kind() == ErrorKind::NotFound && attempt < 5 => attempt += 1,
            other => {
                return other.map_err(|source| CgroupError::CreateDir {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// How long `remove_tree` keeps retrying a busy cgroup (processes still exiting).
const REMOVE_ATTEMPTS: u32 = 20;

/// Removes `dir` and every cgroup below it, children first. A missing directory is fine.
/// `EBUSY` (a process has not finished exiting) is retried with a short back-off.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    let mut dirs = walk_dirs(dir)?;
    dirs.reverse();
    for path in dirs {
        remove_dir_retrying(&path)?;
    }
    Ok(())
}

fn remove_dir_retrying(path: &Path) -> Result<(), CgroupError> {
    let mut delay = Duration::from_millis(5);
    let mut attempt = 0;
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if is_busy(&e) && attempt + 1 < REMOVE_ATTEMPTS => {
                attempt += 1;
                sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(200));
            }
            Err(source) => {
                return Err(CgroupError::RemoveDir {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
}

fn is_busy(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EBUSY)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
pub(crate) mod tests {
    use super::*;

    #[test]
    fn write_needs_existing_file_and_names_it() {
        let tmp = tempdir("files-write");
        fs::write(tmp.join("memory.max"), "old-long-value").unwrap();
        write(&tmp, "memory.max", "42").unwrap();
        assert_eq!(read(&tmp, "memory.max").unwrap(), "42");
        let err = write(&tmp, "memory.nope", "7").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("memory.nope") && text.contains("\"7\""),
            "{text}"
        );
        fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn parses_numbers_and_keyed_files() {
        assert_eq!(parse_u64("12\n"), Some(12));
        assert_eq!(parse_u64("max\n"), Some(u64::MAX));
        assert_eq!(parse_u64("x"), None);
        let keyed = parse_flat_keyed("cache 10\nrss 20\nweird line here\n\nmax max\n");
        assert_eq!(keyed["cache"], 10);
        assert_eq!(keyed["rss"], 20);
        assert_eq!(keyed["max"], u64::MAX);
        assert!(!keyed.contains_key("weird"));
    }

    #[test]
    fn procs_recursive_and_remove_tree() {
        let tmp = tempdir("files-tree");
        fs::create_dir_all(tmp.join("a/b")).unwrap();
        fs::write(tmp.join("cgroup.procs"), "5\n3\n").unwrap();
        fs::write(tmp.join("a/cgroup.procs"), "3\n9\n").unwrap();
        fs::write(tmp.join("a/b/cgroup.procs"), "").unwrap();
        assert_eq!(read_procs_recursive(&tmp).unwrap(), [3, 5, 9]);
        fs::write(tmp.join("a/cgroup.procs"), "x\n").unwrap();
        assert!(matches!(
            read_procs_recursive(&tmp),
            Err(CgroupError::ParseFile { .. })
        ));
        // remove_tree only removes directories, so clear the fixture files first
        // (cgroupfs directories can be removed with their files in place).
        for f in ["cgroup.procs", "a/cgroup.procs", "a/b/cgroup.procs"] {
            fs::remove_file(tmp.join(f)).unwrap();
        }
        remove_tree(&tmp).unwrap();
        assert!(!tmp.exists());
        remove_tree(&tmp).unwrap();
    }

    pub(crate) fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "husk-unit-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
