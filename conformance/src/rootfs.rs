//! Builds busybox root filesystems, with the same layout as
//! `bundle-examples/make-rootfs.sh`.
//!
//! `/bin/busybox` is copied once per test binary into a template dir; each
//! test's rootfs hardlinks that copy (never the host's binary, so a container
//! writing to its `/bin/busybox` cannot corrupt the host) and gets its own
//! directories, applet symlinks and `/etc` files.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::sandbox::base_dir;

/// Where the host's static busybox lives (Debian's busybox-static).
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// Directories every rootfs has.
pub const DIRS: [&str; 18] = [
    "bin",
    "sbin",
    "usr/bin",
    "usr/sbin",
    "etc",
    "proc",
    "sys",
    "dev",
    "tmp",
    "root",
    "run",
    "mnt",
    "home/husk",
    "var/www",
    "var/log",
    "var/tmp",
    "lib",
    "opt",
];

pub const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
husk:x:1000:1000:husk:/home/husk:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";

pub const GROUP: &str = "\
root:x:0:
tty:x:5:
wheel:x:10:husk
users:x:100:husk
husk:x:1000:
nogroup:x:65534:
";

pub const HOSTNAME: &str = "husk\n";

pub const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

struct Template {
    busybox: PathBuf,
    applets: Vec<String>,
}

fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| match build_template() {
        Ok(t) => t,
        Err(e) => panic!(
            "cannot prepare the busybox template from {HOST_BUSYBOX} ({e}); \
             install Debian's busybox-static (apt-get install busybox-static)"
        ),
    })
}

fn build_template() -> io::Result<Template> {
    let dir = base_dir().join("template");
    fs::create_dir_all(&dir)?;
    let busybox = dir.join("busybox");
    fs::copy(HOST_BUSYBOX, &busybox)?;
    let listed = crate::reaper::output(Command::new(&busybox).arg("--list"))?;
    if !listed.status.success() {
        return Err(io::Error::other("busybox --list failed"));
    }
    let applets = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::trim)
        // `busybox --list` names busybox itself; linking it would replace the binary.
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(String::from)
        .collect::<Vec<_>>();
    if !applets.iter().any(|a| a == "sh") {
        return Err(io::Error::other("busybox has no sh applet"));
    }
    Ok(Template { busybox, applets })
}

/// Populates `rootfs` (created if missing) with the busybox layout.
pub fn populate(rootfs: &Path) -> io::Result<()> {
    let template = template();
    for dir in DIRS {
        fs::create_dir_all(rootfs.join(dir))?;
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    let busybox = rootfs.join("bin/busybox");
    if !busybox.exists() && fs::hard_link(&template.busybox, &busybox).is_err() {
        fs::copy(&template.busybox, &busybox)?;
    }
    for applet in &template.applets {
        let link = rootfs.join("bin").join(applet);
        if link.symlink_metadata().is_err() {
            symlink("busybox", &link)?;
        }
    }
    write_if_changed(&rootfs.join("etc/passwd"), PASSWD)?;
    write_if_changed(&rootfs.join("etc/group"), GROUP)?;
    write_if_changed(&rootfs.join("etc/hostname"), HOSTNAME)?;
    write_if_changed(&rootfs.join("etc/hosts"), HOSTS)?;
    Ok(())
}

fn write_if_changed(path: &Path, content: &str) -> io::Result<()> {
    if fs::read_to_string(path).is_ok_and(|old| old == content) {
        return Ok(());
    }
    fs::write(path, content)
}
