//! The few sysctls we set, written through /proc/sys of the calling thread's network namespace.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("set sysctl {path}")]
pub struct SysctlError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

fn set(path: String, value: &str) -> Result<(), SysctlError> {
    let path = PathBuf::from(path);
    std::fs::write(&path, value).map_err(|source| SysctlError { path, source })
}

/// Routing between the bridge and the host's other interfaces.
pub fn enable_ip_forward() -> Result<(), SysctlError> {
    set("/proc/sys/net/ipv4/ip_forward".to_string(), "1")
}

/// Lets DNAT'ed traffic from 127.0.0.0/8 (the host reaching a forwarded port on localhost) be
/// routed out of the bridge. The firewall's guard chain drops everything else 127/8 on our bridges.
pub fn enable_route_localnet(bridge: &str) -> Result<(), SysctlError> {
    set(
        format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"),
        "1",
    )
}
