//! The `io.husk.net.*` annotation contract: parse and validate everything into a [`NetworkRequest`].
//! Pure: no I/O. Every error names the annotation key and its value.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::cidr::Ipv4Net;

pub const PREFIX: &str = "io.husk.net.";
pub const KEY_BRIDGE: &str = "io.husk.net.bridge";
pub const KEY_SUBNET: &str = "io.husk.net.subnet";
pub const KEY_GATEWAY: &str = "io.husk.net.gateway";
pub const KEY_IP: &str = "io.husk.net.ip";
pub const KEY_PORTS: &str = "io.husk.net.ports";
pub const KEY_NAT: &str = "io.husk.net.nat";
pub const KEY_DNS: &str = "io.husk.net.dns";
pub const KEY_MTU: &str = "io.husk.net.mtu";
pub const KEY_MAC: &str = "io.husk.net.mac";

const KNOWN_KEYS: [&str; 9] = [
    KEY_BRIDGE,
    KEY_SUBNET,
    KEY_GATEWAY,
    KEY_IP,
    KEY_PORTS,
    KEY_NAT,
    KEY_DNS,
    KEY_MTU,
    KEY_MAC,
];

pub const DEFAULT_BRIDGE: &str = "husk0";
pub const DEFAULT_SUBNET: &str = "10.0.0.0/24";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnotationError {
    #[error("unknown annotation {key:?} (known: {known})", known = KNOWN_KEYS.join(", "))]
    UnknownKey { key: String },
    #[error("invalid annotation {key}={value:?}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

fn invalid(key: &str, value: &str, reason: impl fmt::Display) -> AnnotationError {
    AnnotationError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One forwarded port: traffic to `host_ip` (any local address when None) `host_port`/`protocol`
/// goes to the container's `container_port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

/// Everything the annotations ask for, validated, with defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRequest {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// A static address; None = allocate one.
    pub ip: Option<Ipv4Addr>,
    pub ports: Vec<PortMapping>,
    /// Masquerade traffic leaving the host.
    pub nat: bool,
    /// Nameservers for the container's resolv.conf; None = the host's non-loopback ones.
    pub dns: Option<Vec<IpAddr>>,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
}

/// Parse the `io.husk.net.*` annotations. `Ok(None)` when none is present (no network).
pub fn parse_annotations(
    annotations: &HashMap<String, String>,
) -> Result<Option<NetworkRequest>, AnnotationError> {
    let mut ours: Vec<(&str, &str)> = annotations
        .iter()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if ours.is_empty() {
        return Ok(None);
    }
    // Sorted so the first error reported is the same on every run.
    ours.sort_unstable();
    if let Some((key, _)) = ours.iter().find(|(k, _)| !KNOWN_KEYS.contains(k)) {
        return Err(AnnotationError::UnknownKey {
            key: key.to_string(),
        });
    }
    let get = |key: &str| annotations.get(key).map(|v| v.trim());

    let bridge = match get(KEY_BRIDGE) {
        Some(v) => parse_ifname(KEY_BRIDGE, v)?,
        None => DEFAULT_BRIDGE.to_string(),
    };
    let subnet_text = get(KEY_SUBNET).unwrap_or(DEFAULT_SUBNET);
    let subnet = parse_subnet(KEY_SUBNET, subnet_text)?;
    let gateway = match get(KEY_GATEWAY) {
        Some(v) => {
            let gw = parse_ipv4(KEY_GATEWAY, v)?;
            check_host_address(KEY_GATEWAY, v, gw, &subnet)?;
            gw
        }
        // A /30 or larger always has a .1 host address.
        None => subnet
            .nth(1)
            .ok_or_else(|| invalid(KEY_SUBNET, subnet_text, "has no room for a gateway"))?,
    };
    let ip = match get(KEY_IP) {
        Some(v) => {
            let ip = parse_ipv4(KEY_IP, v)?;
            check_host_address(KEY_IP, v, ip, &subnet)?;
            if ip == gateway {
                return Err(invalid(
                    KEY_IP,
                    v,
                    format_args!("is the gateway address of {subnet}"),
                ));
            }
            Some(ip)
        }
        None => None,
    };
    let ports = match get(KEY_PORTS) {
        Some(v) => parse_ports(v).map_err(|reason| invalid(KEY_PORTS, v, reason))?,
        None => Vec::new(),
    };
    let nat = match get(KEY_NAT) {
        Some("true") | None => true,
        Some("false") => false,
        Some(v) => return Err(invalid(KEY_NAT, v, "expected true or false")),
    };
    let dns = match get(KEY_DNS) {
        Some(v) => Some(parse_dns(v)?),
        None => None,
    };
    let mtu = match get(KEY_MTU) {
        Some(v) => Some(
            v.parse::<u32>()
                .ok()
                .filter(|m| (68..=65535).contains(m))
                .ok_or_else(|| invalid(KEY_MTU, v, "expected an integer between 68 and 65535"))?,
        ),
        None => None,
    };
    let mac = match get(KEY_MAC) {
        Some(v) => Some(parse_mac(v).map_err(|reason| invalid(KEY_MAC, v, reason))?),
        None => None,
    };
    Ok(Some(NetworkRequest {
        bridge,
        subnet,
        gateway,
        ip,
        ports,
        nat,
        dns,
        mtu,
        mac,
    }))
}

/// Linux interface names: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
pub fn parse_ifname(key: &str, value: &str) -> Result<String, AnnotationError> {
    if value.is_empty() || value.len() > 15 {
        return Err(invalid(
            key,
            value,
            "an interface name has 1 to 15 characters",
        ));
    }
    if value == "." || value == ".." {
        return Err(invalid(key, value, "not a valid interface name"));
    }
    // Narrower than the kernel allows: the name also goes into nft scripts.
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(invalid(
            key,
            value,
            format_args!(
                "an interface name here has only letters, digits, '_', '-' and '.', not {c:?}"
            ),
        ));
    }
    if matches!(value, "all" | "default" | "lo") {
        return Err(invalid(key, value, "is a name the kernel reserves"));
    }
    Ok(value.to_string())
}

fn parse_subnet(key: &str, value: &str) -> Result<Ipv4Net, AnnotationError> {
    let net: Ipv4Net = value.parse().map_err(|e| invalid(key, value, e))?;
    if net.prefix() < 8 {
        return Err(invalid(key, value, "the prefix must be at least /8"));
    }
    let first = net.network().octets()[0];
    let second = net.network().octets()[1];
    let special = match first {
        0 => Some("0.0.0.0/8 is \"this network\""),
        127 => Some("127.0.0.0/8 is loopback"),
        224..=239 => Some("224.0.0.0/4 is multicast"),
        240..=255 => Some("240.0.0.0/4 is reserved"),
        169 if second == 254 => Some("169.254.0.0/16 is link-local"),
        _ => None,
    };
    if let Some(why) = special {
        return Err(invalid(key, value, why));
    }
    if net.prefix() > 30 {
        return Err(invalid(
            key,
            value,
            "the prefix must be at most /30 (room for a gateway and a container)",
        ));
    }
    Ok(net)
}

fn parse_ipv4(key: &str, value: &str) -> Result<Ipv4Addr, AnnotationError> {
    value
        .parse()
        .map_err(|_| invalid(key, value, "not an IPv4 address"))
}

fn check_host_address(
    key: &str,
    value: &str,
    ip: Ipv4Addr,
    subnet: &Ipv4Net,
) -> Result<(), AnnotationError> {
    if !subnet.contains(ip) {
        return Err(invalid(
            key,
            value,
            format_args!("is outside the subnet {subnet}"),
        ));
    }
    if ip == subnet.network() || ip == subnet.broadcast() {
        return Err(invalid(
            key,
            value,
            format_args!("is the network or broadcast address of {subnet}"),
        ));
    }
    Ok(())
}

fn parse_dns(value: &str) -> Result<Vec<IpAddr>, AnnotationError> {
    let mut servers = Vec::new();
    for item in value.split(',').map(str::trim) {
        let ip: IpAddr = item.parse().map_err(|_| {
            invalid(
                KEY_DNS,
                value,
                format_args!("{item:?} is not an IP address"),
            )
        })?;
        servers.push(ip);
    }
    Ok(servers)
}

fn parse_mac(value: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = value.split(':').collect();
    if parts.len() != 6 {
        return Err("expected six hex octets separated by ':'".to_string());
    }
    let mut mac = [0u8; 6];
    for (slot, part) in mac.iter_mut().zip(&parts) {
        if part.len() != 2 {
            return Err(format!("octet {part:?} is not two hex digits"));
        }
        *slot = u8::from_str_radix(part, 16)
            .map_err(|_| format!("octet {part:?} is not two hex digits"))?;
    }
    if mac[0] & 1 == 1 {
        return Err("a multicast address cannot be an interface address".to_string());
    }
    if mac == [0; 6] {
        return Err("the all-zero address cannot be an interface address".to_string());
    }
    Ok(mac)
}

/// `[hostIP:]hostPort:containerPort[/tcp|/udp]`, comma-separated; ports may be equal-length ranges.
fn parse_ports(value: &str) -> Result<Vec<PortMapping>, String> {
    let mut out: Vec<PortMapping> = Vec::new();
    for item in value.split(',').map(str::trim) {
        if item.is_empty() {
            return Err("empty port mapping".to_string());
        }
        for m in parse_port_item(item)? {
            if let Some(prev) = out.iter().find(|p| conflicts(p, &m)) {
                return Err(format!("host port {m} conflicts with {prev}"));
            }
            out.push(m);
        }
    }
    Ok(out)
}

/// Two mappings claim the same traffic: same protocol and host port, and the same host address
/// (or either is for every address).
fn conflicts(a: &PortMapping, b: &PortMapping) -> bool {
    a.protocol == b.protocol
        && a.host_port == b.host_port
        && (a.host_ip.is_none() || b.host_ip.is_none() || a.host_ip == b.host_ip)
}

fn parse_port_item(item: &str) -> Result<Vec<PortMapping>, String> {
    let (spec, protocol) = match item.rsplit_once('/') {
        Some((spec, "tcp")) => (spec, Protocol::Tcp),
        Some((spec, "udp")) => (spec, Protocol::Udp),
        Some((_, other)) => {
            return Err(format!(
                "unknown protocol {other:?} in {item:?} (tcp or udp)"
            ));
        }
        None => (item, Protocol::Tcp),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (host_ip, host, container) = match parts.as_slice() {
        [host, container] => (None, *host, *container),
        [ip, host, container] => {
            let ip: Ipv4Addr = ip
                .parse()
                .map_err(|_| format!("{ip:?} in {item:?} is not an IPv4 address"))?;
            if ip.is_unspecified() {
                (None, *host, *container)
            } else {
                (Some(ip), *host, *container)
            }
        }
        _ => {
            return Err(format!(
                "{item:?} is not [hostIP:]hostPort:containerPort[/proto]"
            ));
        }
    };
    let host_range = parse_range(host, item)?;
    let container_range = parse_range(container, item)?;
    let len = host_range.1 - host_range.0;
    if len != container_range.1 - container_range.0 {
        return Err(format!("port ranges in {item:?} have different lengths"));
    }
    let mut out = Vec::new();
    for i in 0..=len {
        let host_port = host_range.0 + i;
        out.push(PortMapping {
            host_ip,
            host_port,
            container_port: container_range.0 + i,
            protocol,
        });
    }
    Ok(out)
}

fn parse_range(text: &str, item: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (parse_port(lo, item)?, parse_port(hi, item)?),
        None => {
            let p = parse_port(text, item)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(format!("port range {text:?} in {item:?} is reversed"));
    }
    Ok((lo, hi))
}

fn parse_port(text: &str, item: &str) -> Result<u16, String> {
    match text.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(_) => Err(format!("port {text} in {item:?} is outside 1-65535")),
        Err(_) => Err(format!("{text:?} in {item:?} is not a port number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Option<NetworkRequest>, AnnotationError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_annotations(&map)
    }

    #[test]
    fn special_purpose_subnets_and_unsafe_bridge_names_are_refused() {
        for subnet in [
            "127.0.0.0/24",
            "0.0.0.0/24",
            "169.254.0.0/24",
            "224.0.0.0/24",
            "240.0.0.0/24",
            "10.0.0.0/7",
        ] {
            assert!(
                parse(&[("io.husk.net.subnet", subnet)]).is_err(),
                "{subnet} accepted"
            );
        }
        for bridge in ["br\"0", "br#0", "br{0", "all", "default", "lo"] {
            assert!(
                parse(&[("io.husk.net.bridge", bridge)]).is_err(),
                "{bridge} accepted"
            );
        }
        assert!(parse(&[("io.husk.net.bridge", "husk_br-1.a")]).is_ok());
        assert!(parse(&[("io.husk.net.subnet", "172.30.0.0/16")]).is_ok());
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        parse(pairs).unwrap_err().to_string()
    }

    #[test]
    fn no_key_means_no_network() {
        assert_eq!(parse(&[("org.example.x", "1")]).unwrap(), None);
    }

    #[test]
    fn any_key_switches_on_with_defaults() {
        let r = parse(&[(KEY_NAT, "true")]).unwrap().unwrap();
        assert_eq!(r.bridge, "husk0");
        assert_eq!(r.subnet.to_string(), "10.0.0.0/24");
        assert_eq!(r.gateway, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(r.ip, None);
        assert!(r.nat);
        assert!(r.ports.is_empty());
        assert_eq!(r.dns, None);
    }

    #[test]
    fn full_request() {
        let r = parse(&[
            (KEY_BRIDGE, "br-test"),
            (KEY_SUBNET, "172.20.0.0/16"),
            (KEY_GATEWAY, "172.20.0.254"),
            (KEY_IP, "172.20.3.4"),
            (
                KEY_PORTS,
                "8080:80, 127.0.0.1:5353:53/udp,9000-9002:7000-7002/tcp",
            ),
            (KEY_NAT, "false"),
            (KEY_DNS, "1.1.1.1, 2001:db8::1"),
            (KEY_MTU, "1400"),
            (KEY_MAC, "02:42:ac:11:00:02"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(r.gateway, Ipv4Addr::new(172, 20, 0, 254));
        assert_eq!(r.ip, Some(Ipv4Addr::new(172, 20, 3, 4)));
        assert_eq!(r.ports.len(), 5);
        assert_eq!(r.ports[1].host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(r.ports[1].protocol, Protocol::Udp);
        assert_eq!(
            (r.ports[4].host_port, r.ports[4].container_port),
            (9002, 7002)
        );
        assert!(!r.nat);
        assert_eq!(r.dns.unwrap().len(), 2);
        assert_eq!(r.mtu, Some(1400));
        assert_eq!(r.mac, Some([2, 0x42, 0xac, 0x11, 0, 2]));
    }

    #[test]
    fn unknown_key() {
        let e = err(&[("io.husk.net.bridgee", "x")]);
        assert!(e.contains("io.husk.net.bridgee"), "{e}");
    }

    #[test]
    fn bad_bridge_names() {
        for bad in ["", "a-very-long-bridge-name", "a/b", "a b", "a:b", ".."] {
            let e = err(&[(KEY_BRIDGE, bad)]);
            assert!(e.contains(KEY_BRIDGE), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_subnets() {
        for bad in [
            "10.0.0.0",
            "10.0.0.1/24",
            "10.0.0.0/31",
            "10.0.0.0/32",
            "x/24",
            "10.0.0.0/40",
            "::/64",
        ] {
            let e = err(&[(KEY_SUBNET, bad)]);
            assert!(e.contains(KEY_SUBNET) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_gateways() {
        for bad in ["10.0.1.1", "10.0.0.0", "10.0.0.255", "nope"] {
            let e = err(&[(KEY_GATEWAY, bad)]);
            assert!(e.contains(KEY_GATEWAY) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_ips() {
        for bad in [
            "10.0.1.2",
            "10.0.0.0",
            "10.0.0.255",
            "10.0.0.1",
            "10.0.0",
            "fe80::1",
        ] {
            let e = err(&[(KEY_IP, bad)]);
            assert!(e.contains(KEY_IP) && e.contains(bad), "{bad}: {e}");
        }
        // The gateway override moves the forbidden address.
        let e = err(&[(KEY_GATEWAY, "10.0.0.9"), (KEY_IP, "10.0.0.9")]);
        assert!(e.contains("gateway"), "{e}");
        assert!(parse(&[(KEY_GATEWAY, "10.0.0.9"), (KEY_IP, "10.0.0.1")]).is_ok());
    }

    #[test]
    fn bad_ports() {
        for (bad, why) in [
            ("0:80", "outside 1-65535"),
            ("80:0", "outside 1-65535"),
            ("65536:80", "outside 1-65535"),
            ("80:x", "not a port number"),
            ("80", "is not [hostIP:]hostPort"),
            ("1:2:3:4", "is not [hostIP:]hostPort"),
            ("80:80/sctp", "unknown protocol"),
            ("80:80/TCP", "unknown protocol"),
            ("8000-8002:80-81", "different lengths"),
            ("8002-8000:80-82", "reversed"),
            ("8000-:80", "not a port number"),
            ("80:80,80:81", "conflicts"),
            ("80:80,127.0.0.1:80:81", "conflicts"),
            ("8000-8005:80-85,8003:1", "conflicts"),
            ("1.2.3:80:80", "not an IPv4 address"),
            ("80:80,", "empty port mapping"),
        ] {
            let e = err(&[(KEY_PORTS, bad)]);
            assert!(e.contains(KEY_PORTS) && e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn ports_that_do_not_conflict() {
        let r = parse(&[(
            KEY_PORTS,
            "80:80,80:80/udp,127.0.0.1:81:80,127.0.0.2:81:80,0.0.0.0:82:82",
        )])
        .unwrap()
        .unwrap();
        assert_eq!(r.ports.len(), 5);
        assert_eq!(r.ports[4].host_ip, None);
    }

    #[test]
    fn bad_nat_dns_mtu_mac() {
        for (key, bad) in [
            (KEY_NAT, "yes"),
            (KEY_NAT, "1"),
            (KEY_DNS, "8.8.8.8,,"),
            (KEY_DNS, "dns.example"),
            (KEY_MTU, "67"),
            (KEY_MTU, "65536"),
            (KEY_MTU, "-1"),
            (KEY_MTU, "big"),
            (KEY_MAC, "02:00:00:00:00"),
            (KEY_MAC, "02:00:00:00:00:0g"),
            (KEY_MAC, "02:00:00:00:00:001"),
            (KEY_MAC, "01:00:5e:00:00:01"),
            (KEY_MAC, "00:00:00:00:00:00"),
        ] {
            let e = err(&[(key, bad)]);
            assert!(e.contains(key) && e.contains(bad), "{key}={bad}: {e}");
        }
    }
}
