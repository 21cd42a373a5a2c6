//! `spec`: a default config.json like runc's, within this machine's limits (nofile 1024).

use std::path::Path;

use serde_json::{Value, json};

use super::{CommandError, ExitCode};
use crate::cli::SpecArgs;

pub fn spec(a: &SpecArgs, rootless: bool) -> Result<ExitCode, CommandError> {
    let path = a.bundle.join("config.json");
    if path.exists() {
        return Err(CommandError::Usage(format!(
            "file {} exists. Remove it first",
            path.display()
        )));
    }
    let body = serde_json::to_string_pretty(&default_spec(rootless)).unwrap_or_default();
    write(&path, &body)?;
    Ok(0)
}

fn write(path: &Path, body: &str) -> Result<(), CommandError> {
    std::fs::write(path, body).map_err(|source| CommandError::Io {
        op: "write",
        path: path.to_owned(),
        source,
    })
}

const DEFAULT_CAPS: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

pub fn default_spec(rootless: bool) -> Value {
    let caps = json!(DEFAULT_CAPS);
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    let mut linux = json!({
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    });
    if rootless {
        namespaces.push(json!({"type": "user"}));
        linux["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        linux["gidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        mounts.retain(|m| m["type"] != "cgroup");
        if let Some(sys) = mounts.iter_mut().find(|m| m["destination"] == "/sys") {
            *sys = json!({"destination": "/sys", "type": "none", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
        }
    } else {
        namespaces.insert(1, json!({"type": "network"}));
        namespaces.push(json!({"type": "cgroup"}));
        linux["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    }
    linux["namespaces"] = Value::Array(namespaces);
    json!({
        "ociVersion": "1.2.1",
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "husk",
        "mounts": mounts,
        "linux": linux
    })
}
