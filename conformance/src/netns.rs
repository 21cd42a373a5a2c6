//! A named network namespace (`ip netns add`) that is deleted on drop.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::reaper;

/// A throwaway `/run/netns/<name>` namespace.
pub struct NamedNetns {
    name: String,
}

impl NamedNetns {
    /// Creates `husk-conf-<pid>-<n>`.
    #[track_caller]
    pub fn create() -> NamedNetns {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "husk-conf-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        NamedNetns { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`, the path a config joins.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `ip -n <name> <args>` and returns its stdout; panics on failure.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = reaper::output(Command::new("ip").args(["netns", "delete", &self.name]));
    }
}

#[track_caller]
fn ip(args: &[&str]) -> String {
    let out = reaper::output(Command::new("ip").args(args))
        .unwrap_or_else(|e| panic!("run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
