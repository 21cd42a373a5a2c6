//! Finds (and removes by force) what an engine test left on the machine:
//! processes, cgroups, mounts.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, umount2};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::mountinfo::mounts_under;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Live processes (`"pid cmdline"`) whose command line contains one of
/// `needles`, or whose root dir or cwd is below `dir`. Our own process and
/// its threads are never reported.
pub fn processes(dir: &Path, needles: &[&str]) -> Vec<String> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        if pid == me {
            continue;
        }
        let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if is_zombie(pid) {
            continue;
        }
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        let below = |link: &str| {
            fs::read_link(format!("/proc/{pid}/{link}")).is_ok_and(|p| p.starts_with(dir))
        };
        let mentions = needles.iter().any(|n| !n.is_empty() && cmdline.contains(n));
        if mentions || below("root") || below("cwd") {
            found.push(format!("{pid} {}", cmdline.trim()));
        }
    }
    found
}

fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| crate::reaper::parse_state_and_ppid(&s))
        .is_some_and(|(state, _)| state == 'Z' || state == 'X')
}

/// Waits (up to 10 s) for [`processes`], less those `ignore` accepts, to
/// come back empty; returns what is left.
pub fn processes_after_grace(
    dir: &Path,
    needles: &[&str],
    ignore: impl Fn(&str) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<String> = processes(dir, needles)
            .into_iter()
            .filter(|p| !ignore(p))
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILLs every process [`processes`] reports.
pub fn kill_processes(dir: &Path, needles: &[&str]) {
    for line in processes(dir, needles) {
        if let Some(pid) = line.split(' ').next().and_then(|p| p.parse::<i32>().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Every dir `/sys/fs/cgroup/<hierarchy>/<relative>` (and below) that exists,
/// deepest first. `relative` is a cgroup path like `/husk-eng-1/libpod-ID`.
pub fn cgroup_dirs(relative: &str) -> Vec<PathBuf> {
    cgroup_dirs_in(Path::new(CGROUP_ROOT), relative)
}

/// Like [`cgroup_dirs`], with the hierarchies mounted under `root` (e.g.
/// `/proc/PID/root/sys/fs/cgroup` to see another mount namespace's view).
pub fn cgroup_dirs_in(root: &Path, relative: &str) -> Vec<PathBuf> {
    let relative = relative.trim_start_matches('/');
    let mut found = Vec::new();
    if relative.is_empty() {
        return found;
    }
    let Ok(hierarchies) = fs::read_dir(root) else {
        return found;
    };
    for hierarchy in hierarchies.flatten() {
        let top = hierarchy.path().join(relative);
        if top.is_dir() {
            collect_dirs(&top, &mut found);
        }
    }
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

fn collect_dirs(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_dirs(&entry.path(), found);
        }
    }
    found.push(dir.to_path_buf());
}

/// Removes the cgroup `relative` in every hierarchy, children first, killing
/// whatever still runs in them. Returns the dirs that would not go.
pub fn remove_cgroups(relative: &str) -> Vec<PathBuf> {
    remove_cgroups_in(Path::new(CGROUP_ROOT), relative)
}

/// Like [`remove_cgroups`], with the hierarchies mounted under `root`.
pub fn remove_cgroups_in(root: &Path, relative: &str) -> Vec<PathBuf> {
    let mut stuck = Vec::new();
    for dir in cgroup_dirs_in(root, relative) {
        if !remove_cgroup(&dir) {
            stuck.push(dir);
        }
    }
    stuck
}

fn remove_cgroup(dir: &Path) -> bool {
    for _ in 0..100 {
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        // A frozen cgroup must thaw for its processes to die.
        let _ = fs::write(dir.join("freezer.state"), "THAWED");
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Mount points at or below `dir`.
pub fn mounts(dir: &Path) -> Vec<PathBuf> {
    mounts_under(dir)
}

/// Mount points at or below `dir` in the mount namespace of process `pid`.
/// (Paths are compared as printed: fine for the scratch dirs, which hold no
/// characters mountinfo escapes.)
pub fn mounts_of(pid: u32, dir: &Path) -> Vec<PathBuf> {
    fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .map(|text| {
            text.lines()
                .filter_map(|l| l.split(' ').nth(4))
                .map(PathBuf::from)
                .filter(|m| m.starts_with(dir))
                .collect()
        })
        .unwrap_or_default()
}

/// Lazily unmounts everything at or below `dir`, deepest first.
pub fn unmount_all(dir: &Path) {
    for _ in 0..3 {
        let found = mounts_under(dir);
        if found.is_empty() {
            return;
        }
        for m in found.iter().rev() {
            let _ = umount2(m, MntFlags::MNT_DETACH);
        }
    }
}

/// Unmounts everything below `dir`, then deletes it, unless a mount refuses
/// to go (deleting through a bind mount would delete what it shows).
pub fn remove_tree(dir: &Path) -> bool {
    unmount_all(dir);
    if !mounts_under(dir).is_empty() {
        return false;
    }
    fs::remove_dir_all(dir).is_ok() || !dir.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cgroup_for_an_empty_or_unknown_path() {
        assert!(cgroup_dirs("").is_empty());
        assert!(cgroup_dirs("/no-such-cgroup-hc-engines").is_empty());
    }

    #[test]
    fn our_own_process_is_never_reported() {
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_string_lossy().into_owned();
        let found = processes(Path::new("/nonexistent-hc"), &[&name]);
        let me = std::process::id().to_string();
        assert!(
            found.iter().all(|l| !l.starts_with(&format!("{me} "))),
            "{found:?}"
        );
    }
}
