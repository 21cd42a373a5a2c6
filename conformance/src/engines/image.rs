//! The busybox image the engine tests run, built offline (no registry).
//!
//! One rootfs per test binary (the harness's busybox layout plus a web page),
//! packed as a plain tar for `podman import` and as an OCI image layout
//! tarball (by `engines/make-oci-image.sh`) for `ctr images import`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::reaper;
use crate::rootfs;
use crate::sandbox::base_dir;

/// The name both engines know the image by.
pub const IMAGE: &str = "localhost/husk-busybox:latest";

/// The page at /var/www/index.html in the image.
pub const PAGE: &str = "husk engine test page\n";

/// `conformance/engines`, where the scripts live.
pub fn engines_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("engines")
}

fn image_dir() -> PathBuf {
    base_dir().join("engine-image")
}

/// The image's root filesystem, built once.
pub fn rootfs_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = image_dir().join("rootfs");
        if let Err(e) = rootfs::populate(&dir) {
            panic!("populate {}: {e}", dir.display());
        }
        let page = dir.join("var/www/index.html");
        if let Err(e) = fs::write(&page, PAGE) {
            panic!("write {}: {e}", page.display());
        }
        dir
    })
}

#[track_caller]
fn run(cmd: &mut Command, what: &str) {
    let out = reaper::output(cmd).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The rootfs as a plain tar (for `podman import`), built once.
pub fn rootfs_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let tar = image_dir().join("rootfs.tar");
        run(
            Command::new("tar")
                .args(["--numeric-owner", "-C"])
                .arg(rootfs_dir())
                .arg("-cf")
                .arg(&tar)
                .arg("."),
            "tar the engine image rootfs",
        );
        tar
    })
}

/// The image as an OCI image layout tarball named [`IMAGE`], built once.
pub fn oci_archive() -> &'static Path {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let archive = image_dir().join("oci-image.tar");
        let script = engines_dir().join("make-oci-image.sh");
        run(
            Command::new("sh")
                .arg(&script)
                .arg(rootfs_dir())
                .arg(&archive)
                .arg(IMAGE)
                .env("TMPDIR", image_dir()),
            "make-oci-image.sh",
        );
        archive
    })
}
