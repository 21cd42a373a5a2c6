//! `features`: what this husk supports, truthfully, in the OCI features format.

use serde_json::json;

use super::{CommandError, ExitCode};
use crate::linux::{capabilities, seccomp};

pub fn features() -> Result<ExitCode, CommandError> {
    let doc = json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.1",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "mand", "noatime",
            "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime", "nosuid", "private",
            "rbind", "relatime", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw", "shared",
            "slave", "strictatime", "suid", "sync", "tmpcopyup", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": capabilities::all_known(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": true},
            "seccomp": {
                "enabled": true,
                "actions": seccomp::supported_actions(),
                "operators": seccomp::supported_operators(),
                "archs": seccomp::known_archs(),
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}},
        },
        "annotations": {
            "io.husk.net.": "built-in network (see hooks/network/README.md)",
            "io.husk.rootfs.overlay": "private overlay over the bundle rootfs",
        },
        "potentiallyUnsafeConfigAnnotations": ["io.husk.net.", "io.husk.rootfs.overlay"],
    });
    say!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    Ok(0)
}
