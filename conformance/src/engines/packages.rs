//! Installs the Debian packages an engine test needs, once, if missing.
//!
//! A test that needs an engine must run it, not skip: when a package cannot be
//! installed the test fails with a message naming the packages.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::reaper;

/// One binary a test runs and the Debian package that ships it.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    pub binary: &'static str,
    pub package: &'static str,
}

const fn need(binary: &'static str, package: &'static str) -> Need {
    Need { binary, package }
}

/// What the podman tests run (nft: husk's network hook calls it).
pub const PODMAN: &[Need] = &[
    need("podman", "podman"),
    need("conmon", "conmon"),
    need("nsenter", "util-linux"),
    need("nft", "nftables"),
    need("busybox", "busybox-static"),
    need("tar", "tar"),
];

/// What the containerd tests run.
pub const CONTAINERD: &[Need] = &[
    need("containerd", "containerd"),
    need("ctr", "containerd"),
    need("containerd-shim-runc-v2", "containerd"),
    need("busybox", "busybox-static"),
    need("tar", "tar"),
    need("gzip", "gzip"),
    need("sha256sum", "coreutils"),
    need("unshare", "util-linux"),
];

const DIRS: [&str; 4] = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// Where `binary` is installed, looking in the system dirs only (the engines
/// run with minimal environments, so PATH tricks would not help them either).
pub fn find(binary: &str) -> Option<PathBuf> {
    DIRS.iter()
        .map(|d| Path::new(d).join(binary))
        .find(|p| p.is_file())
}

/// Absolute path of `binary`; panics naming the package if it is missing.
#[track_caller]
pub fn path_of(n: &Need) -> PathBuf {
    find(n.binary).unwrap_or_else(|| {
        panic!(
            "{} is not installed: apt-get install {}",
            n.binary, n.package
        )
    })
}

/// Installs the packages of `needs` whose binaries are missing (apt-get
/// install, then apt-get update and install again if that failed); panics
/// with the apt output if a binary is still missing afterwards.
#[track_caller]
pub fn require(needs: &[Need]) {
    static APT: Mutex<()> = Mutex::new(());
    let _apt = APT.lock().unwrap_or_else(|p| p.into_inner());
    let mut missing: Vec<&str> = needs
        .iter()
        .filter(|n| find(n.binary).is_none())
        .map(|n| n.package)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return;
    }
    eprintln!("engine tests: installing missing packages {missing:?}");
    let mut log = String::new();
    let install = |log: &mut String| {
        let out = reaper::output(
            Command::new("apt-get")
                .args(["install", "-y", "-q"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        );
        match out {
            Ok(out) => {
                log.push_str(&String::from_utf8_lossy(&out.stderr));
                out.status.success()
            }
            Err(e) => {
                log.push_str(&format!("cannot run apt-get: {e}\n"));
                false
            }
        }
    };
    if !install(&mut log) {
        let _ = reaper::output(Command::new("apt-get").args(["update", "-q"]));
        install(&mut log);
    }
    let still: Vec<&str> = needs
        .iter()
        .filter(|n| find(n.binary).is_none())
        .map(|n| n.binary)
        .collect();
    assert!(
        still.is_empty(),
        "engine tests need the Debian packages {missing:?}, and installing them failed \
         (still missing: {still:?}); apt-get said:\n{log}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_in_a_system_dir() {
        assert!(find("sh").is_some_and(|p| p.is_absolute()));
        assert!(find("no-such-binary-hc").is_none());
    }
}
