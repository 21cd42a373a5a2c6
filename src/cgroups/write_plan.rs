//! A planned list of cgroup file writes and its execution.
//!
//! Planning (per hierarchy, in `v1::resources` / `v2::resources`) is pure: it validates the
//! OCI values and decides file names, values and order. Execution checks first that every
//! needed controller is present, and only then writes, so a missing controller never
//! leaves half the limits applied.

use std::path::{Path, PathBuf};

use super::error::CgroupError;
use super::files;

/// Page size used when checking that a memory limit was kept (limits round down to pages).
const PAGE_SIZE: u64 = 4096;

/// One write of a value to a cgroup file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileWrite {
    /// The controller owning the file; `""` for core cgroup v2 files (`cgroup.*`).
    pub controller: &'static str,
    /// The OCI field that asked for this write (for error messages).
    pub field: &'static str,
    /// `(file, value)` candidates: the first whose file exists is written. One candidate
    /// means "write it, a missing file is an error naming it".
    pub candidates: Vec<(String, String)>,
    /// Only write when the file exists (e.g. hugetlb reservation limits on older kernels).
    pub optional: bool,
    pub verify: Verify,
}

/// What to check after writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verify {
    Nothing,
    /// The file must read back exactly the value (the kernel clamps some, e.g. `cpu.shares`).
    Exact,
    /// A byte limit that the kernel may round down to a page; `-1` is not checked. Catches
    /// kernels that accept a write and ignore it (`memory.kmem.limit_in_bytes` since 6.1).
    PageRounded,
}

impl FileWrite {
    pub(crate) fn new(
        controller: &'static str,
        field: &'static str,
        file: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        Self {
            controller,
            field,
            candidates: vec![(file.into(), value.into())],
            optional: false,
            verify: Verify::Nothing,
        }
    }

    /// `cpu.idle`, the same file and rule on v1 and v2: 0 or 1.
    pub(crate) fn cpu_idle(idle: i64) -> Result<Self, CgroupError> {
        if !(0..=1).contains(&idle) {
            return Err(CgroupError::InvalidValue {
                field: "linux.resources.cpu.idle",
                value: idle.to_string(),
                reason: "must be 0 or 1".to_string(),
            });
        }
        Ok(Self::new(
            "cpu",
            "linux.resources.cpu.idle",
            "cpu.idle",
            idle.to_string(),
        ))
    }

    pub(crate) fn first_existing(
        controller: &'static str,
        field: &'static str,
        candidates: Vec<(String, String)>,
    ) -> Self {
        Self {
            controller,
            field,
            candidates,
            optional: false,
            verify: Verify::Nothing,
        }
    }

    pub(crate) fn verified(mut self, verify: Verify) -> Self {
        self.verify = verify;
        self
    }

    pub(crate) fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// The file and value of the first candidate (for tests and messages).
    pub(crate) fn first(&self) -> (&str, &str) {
        self.candidates
            .first()
            .map(|(f, v)| (f.as_str(), v.as_str()))
            .unwrap_or(("", ""))
    }
}

/// Runs `writes` in order. `dir_for(controller, field)` returns the cgroup directory that
/// holds that controller's files, or the error explaining why the controller is missing.
/// All directories are resolved before the first write.
pub(crate) fn execute(
    writes: &[FileWrite],
    dir_for: &dyn Fn(&'static str, &'static str) -> Result<PathBuf, CgroupError>,
) -> Result<(), CgroupError> {
    let dirs = writes
        .iter()
        .map(|w| dir_for(w.controller, w.field))
        .collect::<Result<Vec<_>, _>>()?;
    for (write, dir) in writes.iter().zip(dirs) {
        execute_one(write, &dir)?;
    }
    Ok(())
}

fn execute_one(write: &FileWrite, dir: &Path) -> Result<(), CgroupError> {
    let chosen = if write.candidates.len() == 1 && !write.optional {
        write.candidates.first()
    } else {
        write
            .candidates
            .iter()
            .find(|(file, _)| files::exists(dir, file))
    };
    let Some((file, value)) = chosen else {
        if write.optional {
            return Ok(());
        }
        let names: Vec<&str> = write.candidates.iter().map(|(f, _)| f.as_str()).collect();
        return Err(CgroupError::NoCandidateFile {
            path: dir.join(names.join("|")),
            value: write.first().1.to_string(),
        });
    };
    files::write(dir, file, value)?;
    verify(dir, file, value, write.verify)
}

fn verify(dir: &Path, file: &str, value: &str, how: Verify) -> Result<(), CgroupError> {
    let expected = match how {
        Verify::Nothing => return Ok(()),
        Verify::Exact => value.trim().to_string(),
        Verify::PageRounded => match value.trim().parse::<i64>() {
            Ok(bytes) if bytes >= 0 => {
                let bytes = bytes.unsigned_abs();
                (bytes - bytes % PAGE_SIZE).to_string()
            }
            _ => return Ok(()),
        },
    };
    let actual = files::read(dir, file)?;
    if actual.trim() == expected {
        Ok(())
    } else {
        Err(CgroupError::NotHonoured {
            path: dir.join(file),
            value: value.to_string(),
            actual: actual.trim().to_string(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::cgroups::files::tests::tempdir;
    use std::fs;

    #[test]
    fn executes_candidates_optional_and_verification() {
        let tmp = tempdir("plan-exec");
        fs::write(tmp.join("blkio.bfq.weight"), "100").unwrap();
        fs::write(tmp.join("kmem"), "9223372036854771712").unwrap();
        fs::write(tmp.join("shares"), "").unwrap();
        let dir = tmp.clone();
        let dir_for = move |_: &'static str, _: &'static str| Ok(dir.clone());

        let weight = FileWrite::first_existing(
            "blkio",
            "w",
            vec![
                ("blkio.weight".into(), "500".into()),
                ("blkio.bfq.weight".into(), "500".into()),
            ],
        );
        let absent =
            FileWrite::new("hugetlb", "h", "hugetlb.2MB.rsvd.limit_in_bytes", "1").optional();
        execute(&[weight, absent], &dir_for).unwrap();
        assert_eq!(
            fs::read_to_string(tmp.join("blkio.bfq.weight")).unwrap(),
            "500"
        );
        assert!(!tmp.join("hugetlb.2MB.rsvd.limit_in_bytes").exists());

        execute(
            &[FileWrite::new("cpu", "s", "shares", "1024").verified(Verify::Exact)],
            &dir_for,
        )
        .unwrap();

        let none = FileWrite::first_existing(
            "blkio",
            "w",
            vec![("a".into(), "1".into()), ("b".into(), "1".into())],
        );
        let err = execute(&[none], &dir_for).unwrap_err();
        assert!(err.to_string().contains("a|b"), "{err}");

        // A regular file keeps what we write, so emulate a kernel that ignores the value
        // by checking a value that rounds differently than what is stored.
        fs::write(tmp.join("kmem"), "").unwrap();
        execute(
            &[FileWrite::new("memory", "k", "kmem", "-1").verified(Verify::PageRounded)],
            &dir_for,
        )
        .unwrap();
        let err = execute(
            &[FileWrite::new("memory", "k", "kmem", "10000").verified(Verify::PageRounded)],
            &dir_for,
        )
        .unwrap_err();
        assert!(matches!(err, CgroupError::NotHonoured { .. }), "{err}");
        fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn missing_controller_stops_before_any_write() {
        let tmp = tempdir("plan-missing");
        fs::write(tmp.join("memory.limit_in_bytes"), "").unwrap();
        let dir = tmp.clone();
        let dir_for = move |controller: &'static str, field: &'static str| {
            if controller == "hugetlb" {
                Err(CgroupError::ControllerMissing {
                    controller: controller.into(),
                    resource: field.into(),
                    where_: String::new(),
                })
            } else {
                Ok(dir.clone())
            }
        };
        let writes = [
            FileWrite::new("memory", "m", "memory.limit_in_bytes", "4096"),
            FileWrite::new("hugetlb", "h", "hugetlb.2MB.limit_in_bytes", "1"),
        ];
        assert!(matches!(
            execute(&writes, &dir_for),
            Err(CgroupError::ControllerMissing { .. })
        ));
        assert_eq!(
            fs::read_to_string(tmp.join("memory.limit_in_bytes")).unwrap(),
            ""
        );
        fs::remove_dir_all(&tmp).unwrap();
    }
}
