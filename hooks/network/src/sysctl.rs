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

fn route_localnet_path(bridge: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet")
}

/// Whether route_localnet is on for `bridge` now.
pub fn route_localnet(bridge: &str) -> Result<bool, SysctlError> {
    let path = PathBuf::from(route_localnet_path(bridge));
    std::fs::read_to_string(&path)
        .map(|v| v.trim() != "0")
        .map_err(|source| SysctlError { path, source })
}

/// Turns route_localnet off again (on a bridge husk did not create, when its last container
/// leaves and the guard rules stop covering it).
pub fn disable_route_localnet(bridge: &str) -> Result<(), SysctlError> {
    set(route_localnet_path(bridge), "0")
}

/// Lets DNAT'ed traffic from 127.0.0.0/8 (the host reaching a forwarded port on localhost) be
/// routed out of the bridge. The firewall's guard chain drops everything else 127/8 on our bridges.
pub fn enable_route_localnet(bridge: &str) -> Result<(), SysctlError> {
    set(
        format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"),
        "1",
    )
}
