//! `update`: new limits from `--resources` (the JSON containerd and podman send) and/or
//! runc's flags, applied to the live cgroup.

use std::io::Read;

use oci_spec::runtime::LinuxResources;
use serde_json::{Value, json};

use super::{CommandError, ExitCode};
use crate::cli::UpdateArgs;
use crate::container;
use crate::state::Store;

pub fn update(store: &Store, a: &UpdateArgs) -> Result<ExitCode, CommandError> {
    let mut doc = match &a.resources {
        Some(path) => read_resources(path)?,
        None => json!({}),
    };
    doc = container::merge(doc, flags_to_json(a)?);
    let resources: LinuxResources = serde_json::from_value(doc)
        .map_err(|e| CommandError::Usage(format!("invalid resources: {e}")))?;
    container::update(store, &a.id, &resources)?;
    Ok(0)
}

fn read_resources(path: &std::path::Path) -> Result<Value, CommandError> {
    let mut text = Vec::new();
    let io = |source| CommandError::Io {
        op: "read",
        path: path.to_owned(),
        source,
    };
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut text).map_err(io)?;
    } else {
        text = std::fs::read(path).map_err(io)?;
    }
    serde_json::from_slice(&text)
        .map_err(|e| CommandError::Usage(format!("parse {}: {e}", path.display())))
}

fn flags_to_json(a: &UpdateArgs) -> Result<Value, CommandError> {
    let mut v = json!({});
    let mut set = |section: &str, key: &str, value: Value| {
        if v.get(section).is_none() {
            v[section] = json!({});
        }
        v[section][key] = value;
    };
    if let Some(x) = a.blkio_weight {
        set("blockIO", "weight", json!(x));
    }
    if let Some(x) = a.cpu_period {
        set("cpu", "period", json!(x));
    }
    if let Some(x) = a.cpu_quota {
        set("cpu", "quota", json!(x));
    }
    if let Some(x) = a.cpu_burst {
        set("cpu", "burst", json!(x));
    }
    if let Some(x) = a.cpu_rt_period {
        set("cpu", "realtimePeriod", json!(x));
    }
    if let Some(x) = a.cpu_rt_runtime {
        set("cpu", "realtimeRuntime", json!(x));
    }
    if let Some(x) = a.cpu_share {
        set("cpu", "shares", json!(x));
    }
    if let Some(x) = a.cpu_idle {
        set("cpu", "idle", json!(x));
    }
    if let Some(x) = &a.cpuset_cpus {
        set("cpu", "cpus", json!(x));
    }
    if let Some(x) = &a.cpuset_mems {
        set("cpu", "mems", json!(x));
    }
    if let Some(x) = &a.memory {
        set("memory", "limit", json!(parse_bytes(x)?));
    }
    if let Some(x) = &a.memory_reservation {
        set("memory", "reservation", json!(parse_bytes(x)?));
    }
    if let Some(x) = &a.memory_swap {
        set("memory", "swap", json!(parse_bytes(x)?));
    }
    if let Some(x) = &a.kernel_memory {
        set("memory", "kernel", json!(parse_bytes(x)?));
    }
    if let Some(x) = &a.kernel_memory_tcp {
        set("memory", "kernelTCP", json!(parse_bytes(x)?));
    }
    if let Some(x) = a.pids_limit {
        set("pids", "limit", json!(x));
    }
    Ok(v)
}

/// `-1`, `1048576`, `512k`, `100m`, `2g` (powers of 1024, case-insensitive, optional `b`).
pub fn parse_bytes(text: &str) -> Result<i64, CommandError> {
    let bad = || CommandError::Usage(format!("invalid size {text:?}"));
    if text == "-1" {
        return Ok(-1);
    }
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let mult: i64 = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("512k").unwrap(), 512 * 1024);
        assert_eq!(parse_bytes("100M").unwrap(), 100 << 20);
        assert_eq!(parse_bytes("2gb").unwrap(), 2 << 30);
        assert!(parse_bytes("12q").is_err());
        assert!(parse_bytes("m").is_err());
    }
}
