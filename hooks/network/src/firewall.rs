//! nftables: one table of our own, `table ip husk`, changed only through `nft -f -` batches
//! (each batch applies atomically or not at all).
//!
//! The table's rules are fixed; containers only add and remove elements of its sets and maps,
//! so the 500th container costs what the 1st does:
//! - `ports`   (`meta l4proto . th dport` -> container `addr . port`): forwards for any local address;
//! - `ipports` (`ip daddr . meta l4proto . th dport` -> `addr . port`): forwards for one host address;
//! - `masq`    container addresses whose traffic leaving the host is masqueraded;
//! - `members` every container address (hairpin: a container reaching a forwarded port is
//!   masqueraded so the reply comes back through the host);
//! - `bridges` our bridges (hairpin masquerade, and the 127.0.0.0/8 guard that keeps
//!   `route_localnet` from opening anything but forwarded ports).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::annotations::{PortMapping, Protocol};

/// nft by absolute path: engines run `delete` with no PATH at all (podman does), and a bare
/// name would then be looked up only in /bin and /usr/bin.
fn nft_binary() -> std::path::PathBuf {
    ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft", "/bin/nft"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| std::path::PathBuf::from("nft"))
}

pub const TABLE: &str = "husk";

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("run nft")]
    Spawn {
        #[source]
        source: std::io::Error,
    },
    #[error("nft failed to apply {what}: {stderr}")]
    Apply { what: String, stderr: String },
    #[error("host port {port} is already forwarded (by another container?)")]
    PortTaken { port: PortMapping },
}

/// The table, its sets, maps and rules. Starts with `create table`, so when the table already
/// exists the whole batch fails and changes nothing (a concurrent creator cannot double the rules).
pub fn table_script() -> String {
    let t = TABLE;
    format!(
        "create table ip {t}
add set ip {t} bridges {{ type ifname; }}
add set ip {t} masq {{ type ipv4_addr; }}
add set ip {t} members {{ type ipv4_addr; }}
add map ip {t} ports {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
add map ip {t} ipports {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
add chain ip {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain ip {t} output {{ type nat hook output priority -100; policy accept; }}
add chain ip {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
add chain ip {t} guard {{ type filter hook prerouting priority raw; policy accept; }}
add chain ip {t} portfwd
add rule ip {t} prerouting ip daddr != 127.0.0.0/8 fib daddr type local jump portfwd
add rule ip {t} output fib daddr type local jump portfwd
add rule ip {t} portfwd dnat ip to ip daddr . meta l4proto . th dport map @ipports
add rule ip {t} portfwd dnat ip to meta l4proto . th dport map @ports
add rule ip {t} postrouting ct status dnat ip saddr 127.0.0.0/8 masquerade
add rule ip {t} postrouting ct status dnat ip saddr @members oifname @bridges masquerade
add rule ip {t} postrouting ip saddr @masq oifname != @bridges masquerade
add rule ip {t} guard iifname @bridges ip daddr 127.0.0.0/8 drop
add rule ip {t} guard iifname @bridges ip saddr 127.0.0.0/8 drop
"
    )
}

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// The map a forward lives in and its element (`key : value`).
fn port_element(p: &PortMapping, container_ip: Ipv4Addr) -> (&'static str, String, String) {
    let value = format!("{container_ip} . {}", p.container_port);
    match p.host_ip {
        Some(hip) => (
            "ipports",
            format!("{hip} . {} . {}", proto(p.protocol), p.host_port),
            value,
        ),
        None => (
            "ports",
            format!("{} . {}", proto(p.protocol), p.host_port),
            value,
        ),
    }
}

/// What one container adds. `create element` fails on a host port someone else forwards
/// (and with it the whole batch), so a conflict leaves nothing behind.
pub fn container_add_script(
    bridge: &str,
    ip: Ipv4Addr,
    masquerade: bool,
    ports: &[PortMapping],
) -> String {
    let t = TABLE;
    let mut s = format!(
        "add element ip {t} bridges {{ \"{bridge}\" }}\nadd element ip {t} members {{ {ip} }}\n"
    );
    if masquerade {
        let _ = writeln!(s, "add element ip {t} masq {{ {ip} }}");
    }
    for p in ports {
        let (map, key, value) = port_element(p, ip);
        let _ = writeln!(s, "create element ip {t} {map} {{ {key} : {value} }}");
    }
    s
}

/// The `delete element` commands for one container's elements, one per line.
pub fn container_delete_commands(
    ip: Ipv4Addr,
    masquerade: bool,
    ports: &[PortMapping],
) -> Vec<String> {
    let t = TABLE;
    let mut out = vec![format!("delete element ip {t} members {{ {ip} }}")];
    if masquerade {
        out.push(format!("delete element ip {t} masq {{ {ip} }}"));
    }
    for p in ports {
        let (map, key, _) = port_element(p, ip);
        out.push(format!("delete element ip {t} {map} {{ {key} }}"));
    }
    out
}

pub fn bridge_delete_command(bridge: &str) -> String {
    format!("delete element ip {TABLE} bridges {{ \"{bridge}\" }}\n")
}

/// Run one batch. Ok(Err(stderr)) when nft ran and refused it.
fn nft(script: &str) -> Result<Result<(), String>, FirewallError> {
    let mut child = Command::new(nft_binary())
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| FirewallError::Spawn { source })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|source| FirewallError::Spawn { source })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| FirewallError::Spawn { source })?;
    if out.status.success() {
        Ok(Ok(()))
    } else {
        Ok(Err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

fn table_exists() -> Result<bool, FirewallError> {
    let status = Command::new(nft_binary())
        .args(["list", "table", "ip", TABLE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|source| FirewallError::Spawn { source })?;
    Ok(status.success())
}

/// Create our table unless it exists (race-safe: see [`table_script`]).
pub fn ensure_table() -> Result<(), FirewallError> {
    if table_exists()? {
        return Ok(());
    }
    match nft(&table_script())? {
        Ok(()) => Ok(()),
        // Lost a race with another creator: fine if the table is there now.
        Err(_) if table_exists()? => Ok(()),
        Err(stderr) => Err(FirewallError::Apply {
            what: format!("table ip {TABLE}"),
            stderr,
        }),
    }
}

/// Add one container's forwards and masquerade in one atomic batch. The table is created on
/// first use (one process spawn per setup in the common case).
pub fn add_container(
    bridge: &str,
    ip: Ipv4Addr,
    masquerade: bool,
    ports: &[PortMapping],
) -> Result<(), FirewallError> {
    let script = container_add_script(bridge, ip, masquerade, ports);
    let mut result = nft(&script)?;
    // The table (or a set in it) is missing: create it (race-safe) and try once more.
    if result
        .as_ref()
        .is_err_and(|stderr| stderr.contains("No such file or directory"))
    {
        ensure_table()?;
        result = nft(&script)?;
    }
    let Err(stderr) = result else { return Ok(()) };
    // Name the forward that collided, when that is what happened.
    if stderr.contains("File exists") {
        for p in ports {
            if let Some(holder) = forward_target(p)?
                && holder != (ip, p.container_port)
            {
                return Err(FirewallError::PortTaken { port: *p });
            }
        }
    }
    Err(FirewallError::Apply {
        what: format!("forwards for {ip}"),
        stderr,
    })
}

/// Where a host port is forwarded now, if anywhere.
pub fn forward_target(p: &PortMapping) -> Result<Option<(Ipv4Addr, u16)>, FirewallError> {
    let (map, key, _) = port_element(p, Ipv4Addr::UNSPECIFIED);
    let out = Command::new(nft_binary())
        .args(["get", "element", "ip", TABLE, map, &format!("{{ {key} }}")])
        .stderr(Stdio::null())
        .output()
        .map_err(|source| FirewallError::Spawn { source })?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(parse_map_value(&String::from_utf8_lossy(&out.stdout)))
}

/// `elements = { tcp . 8080 : 10.0.0.2 . 80 }` -> (10.0.0.2, 80)
fn parse_map_value(listing: &str) -> Option<(Ipv4Addr, u16)> {
    let line = listing
        .lines()
        .find(|l| l.trim_start().starts_with("elements"))?;
    let value = line.rsplit(':').next()?.trim().trim_end_matches('}').trim();
    let (addr, port) = value.split_once(" . ")?;
    Some((addr.trim().parse().ok()?, port.trim().parse().ok()?))
}

/// Remove one container's elements; elements already gone are fine.
///
/// `owned`: the caller holds the bridge lock and the address's lease is this container's, so
/// every element for the address is ours and one batch removes them (the common case). Otherwise
/// (the lease is gone: a second teardown, or a rollback) a forward is only removed while it still
/// points at this container, so a later container's forward of the same port survives.
pub fn remove_container(
    ip: Ipv4Addr,
    masquerade: bool,
    ports: &[PortMapping],
    owned: bool,
) -> Result<(), FirewallError> {
    if owned && nft(&(container_delete_commands(ip, masquerade, ports).join("\n") + "\n"))?.is_ok()
    {
        return Ok(());
    }
    if !table_exists()? {
        return Ok(());
    }
    let mut ours = Vec::new();
    for p in ports {
        if forward_target(p)? == Some((ip, p.container_port)) {
            ours.push(*p);
        }
    }
    let mut last = Ok(());
    for c in container_delete_commands(ip, masquerade, &ours) {
        if let Err(stderr) = nft(&(c + "\n"))?
            && !stderr.contains("No such file or directory")
        {
            last = Err(FirewallError::Apply {
                what: format!("forwards for {ip}"),
                stderr,
            });
        }
    }
    last
}

/// Forget a bridge (its last container left). Absent is fine.
pub fn remove_bridge(bridge: &str) -> Result<(), FirewallError> {
    if !table_exists()? {
        return Ok(());
    }
    match nft(&bridge_delete_command(bridge))? {
        Err(stderr) if !stderr.contains("No such file or directory") => Err(FirewallError::Apply {
            what: format!("bridge {bridge}"),
            stderr,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(
        host_ip: Option<Ipv4Addr>,
        host_port: u16,
        container_port: u16,
        protocol: Protocol,
    ) -> PortMapping {
        PortMapping {
            host_ip,
            host_port,
            container_port,
            protocol,
        }
    }

    #[test]
    fn add_script_uses_create_for_forwards() {
        let s = container_add_script(
            "husk0",
            Ipv4Addr::new(10, 0, 0, 2),
            true,
            &[
                pm(None, 8080, 80, Protocol::Tcp),
                pm(Some(Ipv4Addr::LOCALHOST), 53, 5353, Protocol::Udp),
            ],
        );
        assert_eq!(
            s,
            "add element ip husk bridges { \"husk0\" }\n\
             add element ip husk members { 10.0.0.2 }\n\
             add element ip husk masq { 10.0.0.2 }\n\
             create element ip husk ports { tcp . 8080 : 10.0.0.2 . 80 }\n\
             create element ip husk ipports { 127.0.0.1 . udp . 53 : 10.0.0.2 . 5353 }\n"
        );
        let s = container_add_script("b", Ipv4Addr::new(10, 0, 0, 3), false, &[]);
        assert!(!s.contains("masq"));
    }

    #[test]
    fn delete_commands() {
        let c = container_delete_commands(
            Ipv4Addr::new(10, 0, 0, 2),
            true,
            &[pm(None, 1, 2, Protocol::Udp)],
        );
        assert_eq!(
            c,
            vec![
                "delete element ip husk members { 10.0.0.2 }",
                "delete element ip husk masq { 10.0.0.2 }",
                "delete element ip husk ports { udp . 1 }"
            ]
        );
    }

    #[test]
    fn table_script_is_one_create() {
        let s = table_script();
        assert!(s.starts_with("create table ip husk\n"));
        assert_eq!(s.matches("create ").count(), 1);
    }

    #[test]
    fn parses_get_element_output() {
        let out = "table ip husk {\n\tmap ports {\n\t\ttype inet_proto . inet_service : ipv4_addr . inet_service\n\t\telements = { tcp . 8080 : 10.0.0.2 . 80 }\n\t}\n}\n";
        assert_eq!(parse_map_value(out), Some((Ipv4Addr::new(10, 0, 0, 2), 80)));
        assert_eq!(parse_map_value("nothing"), None);
    }
}
