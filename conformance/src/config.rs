//! A builder for OCI `config.json`, starting from what `runc spec` produces.
//!
//! The value stays a plain `serde_json::Value` so a test can also write
//! configs no typed model would accept (bad input tests).

use serde_json::{Map, Value, json};

/// An OCI runtime config under construction.
#[derive(Debug, Clone)]
pub struct Config {
    value: Value,
}

/// The capabilities `runc spec` grants.
pub const DEFAULT_CAPS: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/// The paths `runc spec` masks.
pub const DEFAULT_MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// The paths `runc spec` makes read-only.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const ALL_CAP_KINDS: [&str; 5] = [
    "bounding",
    "effective",
    "permitted",
    "inheritable",
    "ambient",
];

impl Default for Config {
    fn default() -> Self {
        Config::runc_spec()
    }
}

impl Config {
    /// `runc spec` with `terminal: false`, a writable rootfs, hostname `husk`
    /// and `sh` as the process.
    pub fn runc_spec() -> Self {
        let caps = json!(DEFAULT_CAPS);
        Config {
            value: json!({
                "ociVersion": "1.0.2-dev",
                "process": {
                    "terminal": false,
                    "user": { "uid": 0, "gid": 0 },
                    "args": ["sh"],
                    "env": [
                        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "TERM=xterm"
                    ],
                    "cwd": "/",
                    "capabilities": {
                        "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
                    },
                    "rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 } ],
                    "noNewPrivileges": true
                },
                "root": { "path": "rootfs", "readonly": false },
                "hostname": "husk",
                "mounts": [
                    { "destination": "/proc", "type": "proc", "source": "proc" },
                    { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                      "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
                    { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                      "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
                    { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                      "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
                    { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                      "options": ["nosuid", "noexec", "nodev"] },
                    { "destination": "/sys", "type": "sysfs", "source": "sysfs",
                      "options": ["nosuid", "noexec", "nodev", "ro"] },
                    { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                      "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
                ],
                "linux": {
                    "resources": { "devices": [ { "allow": false, "access": "rwm" } ] },
                    "namespaces": [
                        { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                        { "type": "uts" }, { "type": "mount" }
                    ],
                    "maskedPaths": DEFAULT_MASKED_PATHS,
                    "readonlyPaths": DEFAULT_READONLY_PATHS
                }
            }),
        }
    }

    /// Wraps an existing config, e.g. one written by `spec`.
    pub fn from_json(value: Value) -> Self {
        Config { value }
    }

    /// The JSON value as it stands.
    pub fn json(&self) -> &Value {
        &self.value
    }

    /// Serialized, pretty-printed.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string_pretty(&self.value)
            .unwrap_or_else(|e| panic!("serialize config: {e}"))
    }

    /// Sets the value at a JSON pointer (`/process/cwd`), creating objects on the way.
    pub fn set(mut self, pointer: &str, new: Value) -> Self {
        *slot(&mut self.value, pointer) = new;
        self
    }

    /// Removes the value at a JSON pointer if present.
    pub fn remove(mut self, pointer: &str) -> Self {
        let (parent, key) = match pointer.rsplit_once('/') {
            Some(split) => split,
            None => return self,
        };
        if let Some(Value::Object(map)) = self.value.pointer_mut(parent) {
            map.remove(key);
        }
        self
    }

    /// Appends to the array at `pointer`, creating it if needed.
    pub fn push(mut self, pointer: &str, item: Value) -> Self {
        let target = slot(&mut self.value, pointer);
        if !target.is_array() {
            *target = Value::Array(Vec::new());
        }
        if let Value::Array(items) = target {
            items.push(item);
        }
        self
    }

    pub fn args(self, args: &[&str]) -> Self {
        self.set("/process/args", json!(args))
    }

    /// Runs `script` with `sh -c`.
    pub fn sh(self, script: &str) -> Self {
        self.args(&["sh", "-c", script])
    }

    /// Sets (or replaces) one environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        let entry = format!("{key}={value}");
        let prefix = format!("{key}=");
        let env = slot(&mut self.value, "/process/env");
        if !env.is_array() {
            *env = Value::Array(Vec::new());
        }
        if let Value::Array(items) = env {
            items.retain(|v| !v.as_str().is_some_and(|s| s.starts_with(&prefix)));
            items.push(Value::String(entry));
        }
        self
    }

    pub fn cwd(self, cwd: &str) -> Self {
        self.set("/process/cwd", json!(cwd))
    }

    pub fn terminal(self, on: bool) -> Self {
        self.set("/process/terminal", json!(on))
    }

    pub fn hostname(self, name: &str) -> Self {
        self.set("/hostname", json!(name))
    }

    pub fn domainname(self, name: &str) -> Self {
        self.set("/domainname", json!(name))
    }

    pub fn user(self, uid: u32, gid: u32) -> Self {
        self.set("/process/user/uid", json!(uid))
            .set("/process/user/gid", json!(gid))
    }

    pub fn additional_gids(self, gids: &[u32]) -> Self {
        self.set("/process/user/additionalGids", json!(gids))
    }

    pub fn umask(self, umask: u32) -> Self {
        self.set("/process/user/umask", json!(umask))
    }

    pub fn readonly_root(self, readonly: bool) -> Self {
        self.set("/root/readonly", json!(readonly))
    }

    pub fn no_new_privileges(self, on: bool) -> Self {
        self.set("/process/noNewPrivileges", json!(on))
    }

    pub fn oom_score_adj(self, adj: i32) -> Self {
        self.set("/process/oomScoreAdj", json!(adj))
    }

    /// Grants exactly `caps` in the bounding, effective and permitted sets;
    /// inheritable and ambient are left empty.
    pub fn capabilities(mut self, caps: &[&str]) -> Self {
        for kind in ALL_CAP_KINDS {
            self = self.remove(&format!("/process/capabilities/{kind}"));
        }
        for kind in ["bounding", "effective", "permitted"] {
            self = self.set(&format!("/process/capabilities/{kind}"), json!(caps));
        }
        self
    }

    /// Sets one rlimit, replacing any earlier entry of the same type.
    pub fn rlimit(mut self, kind: &str, soft: u64, hard: u64) -> Self {
        if let Some(Value::Array(items)) = self.value.pointer_mut("/process/rlimits") {
            items.retain(|r| r.get("type").and_then(Value::as_str) != Some(kind));
        }
        self.push(
            "/process/rlimits",
            json!({ "type": kind, "soft": soft, "hard": hard }),
        )
    }

    /// Adds a mount.
    pub fn mount(self, destination: &str, kind: &str, source: &str, options: &[&str]) -> Self {
        self.push(
            "/mounts",
            json!({ "destination": destination, "type": kind, "source": source, "options": options }),
        )
    }

    /// Bind-mounts host path `source` at `destination` (`rbind` plus `options`).
    pub fn bind(self, source: &std::path::Path, destination: &str, options: &[&str]) -> Self {
        let mut all = vec!["rbind"];
        all.extend_from_slice(options);
        self.mount(destination, "bind", &source.to_string_lossy(), &all)
    }

    /// Removes every mount with this destination.
    pub fn remove_mount(mut self, destination: &str) -> Self {
        if let Some(Value::Array(items)) = self.value.pointer_mut("/mounts") {
            items.retain(|m| m.get("destination").and_then(Value::as_str) != Some(destination));
        }
        self
    }

    /// Adds a namespace to create (replacing an entry of the same type).
    pub fn namespace(self, kind: &str) -> Self {
        self.remove_namespace(kind)
            .push("/linux/namespaces", json!({ "type": kind }))
    }

    /// Joins the namespace at `path` (replacing an entry of the same type).
    pub fn namespace_path(self, kind: &str, path: &str) -> Self {
        self.remove_namespace(kind)
            .push("/linux/namespaces", json!({ "type": kind, "path": path }))
    }

    pub fn remove_namespace(mut self, kind: &str) -> Self {
        if let Some(Value::Array(items)) = self.value.pointer_mut("/linux/namespaces") {
            items.retain(|n| n.get("type").and_then(Value::as_str) != Some(kind));
        }
        self
    }

    /// Adds a user namespace mapping container ids `0..size` to host ids
    /// `host..host+size`, for both uids and gids.
    pub fn user_namespace(self, host: u32, size: u32) -> Self {
        let map = json!([{ "containerID": 0, "hostID": host, "size": size }]);
        self.namespace("user")
            .set("/linux/uidMappings", map.clone())
            .set("/linux/gidMappings", map)
    }

    pub fn sysctl(self, key: &str, value: &str) -> Self {
        let pointer = format!(
            "/linux/sysctl/{}",
            key.replace('~', "~0").replace('/', "~1")
        );
        self.set(&pointer, json!(value))
    }

    pub fn masked_path(self, path: &str) -> Self {
        self.push("/linux/maskedPaths", json!(path))
    }

    pub fn readonly_path(self, path: &str) -> Self {
        self.push("/linux/readonlyPaths", json!(path))
    }

    /// Adds a `linux.devices` entry.
    pub fn device(self, path: &str, kind: &str, major: u64, minor: u64, mode: u32) -> Self {
        self.push(
            "/linux/devices",
            json!({ "path": path, "type": kind, "major": major, "minor": minor,
                    "fileMode": mode, "uid": 0, "gid": 0 }),
        )
    }

    /// Appends a hook of `kind` (`prestart`, `createRuntime`, ...).
    pub fn hook(
        self,
        kind: &str,
        path: &str,
        args: &[&str],
        env: &[&str],
        timeout: Option<u32>,
    ) -> Self {
        let mut hook = Map::new();
        hook.insert("path".into(), json!(path));
        hook.insert("args".into(), json!(args));
        if !env.is_empty() {
            hook.insert("env".into(), json!(env));
        }
        if let Some(secs) = timeout {
            hook.insert("timeout".into(), json!(secs));
        }
        self.push(&format!("/hooks/{kind}"), Value::Object(hook))
    }

    pub fn annotation(self, key: &str, value: &str) -> Self {
        let pointer = format!("/annotations/{}", key.replace('~', "~0").replace('/', "~1"));
        self.set(&pointer, json!(value))
    }
}

/// The slot at a JSON pointer, creating intermediate objects (and replacing
/// non-objects on the way).
fn slot<'a>(root: &'a mut Value, pointer: &str) -> &'a mut Value {
    let mut current = root;
    for token in pointer.split('/').skip(1) {
        let key = token.replace("~1", "/").replace("~0", "~");
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        current = match current {
            Value::Object(map) => map.entry(key).or_insert(Value::Null),
            _ => unreachable!("made an object above"),
        };
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_creates_intermediate_objects() {
        let c = Config::runc_spec().set("/linux/sysctl/kernel.x", json!("1"));
        assert_eq!(c.json()["linux"]["sysctl"]["kernel.x"], "1");
        assert!(c.json()["linux"]["namespaces"].is_array());
    }

    #[test]
    fn env_replaces_existing_key() {
        let c = Config::runc_spec().env("TERM", "dumb").env("FOO", "1");
        let env = c.json()["process"]["env"].as_array().unwrap();
        assert_eq!(
            env.iter()
                .filter(|v| v.as_str().unwrap().starts_with("TERM="))
                .count(),
            1
        );
        assert!(env.contains(&json!("TERM=dumb")));
        assert!(env.contains(&json!("FOO=1")));
    }

    #[test]
    fn namespace_path_replaces_plain_entry() {
        let c = Config::runc_spec().namespace_path("network", "/run/netns/x");
        let ns: Vec<_> = c.json()["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["type"] == "network")
            .collect();
        assert_eq!(
            ns,
            vec![&json!({"type": "network", "path": "/run/netns/x"})]
        );
    }

    #[test]
    fn capabilities_clear_ambient_and_inheritable() {
        let c = Config::runc_spec().capabilities(&["CAP_CHOWN"]);
        let caps = &c.json()["process"]["capabilities"];
        assert_eq!(caps["bounding"], json!(["CAP_CHOWN"]));
        assert!(caps.get("ambient").is_none() && caps.get("inheritable").is_none());
    }

    #[test]
    fn rlimit_replaces_same_type() {
        let c = Config::runc_spec().rlimit("RLIMIT_NOFILE", 10, 20);
        assert_eq!(
            c.json()["process"]["rlimits"],
            json!([{ "type": "RLIMIT_NOFILE", "soft": 10, "hard": 20 }])
        );
    }

    #[test]
    fn sysctl_and_annotation_keys_with_slashes_survive() {
        let c = Config::runc_spec().annotation("org.example/key", "v");
        assert_eq!(c.json()["annotations"]["org.example/key"], "v");
    }

    #[test]
    fn remove_drops_key() {
        let c = Config::runc_spec().remove("/process/args");
        assert!(c.json()["process"].get("args").is_none());
    }
}
