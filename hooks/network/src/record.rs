//! What a setup built. husk stores it with the container's state; it alone drives teardown.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::annotations::{NetworkRequest, PortMapping};
use crate::cidr::Ipv4Net;

/// Every field says what exists, not what was asked for: a setup that failed half-way leaves a
/// record whose teardown removes exactly what it had built.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NetworkRecord {
    pub container_id: String,
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The leased address (the lease file exists while this is set).
    pub address: Option<Ipv4Addr>,
    /// True when this setup created the bridge. Deleting the bridge is decided by the bridge's
    /// own marker (whoever created it), with its last lease.
    pub bridge_created: bool,
    /// nft elements installed: forwards, and masquerade of `address`.
    pub rules_installed: bool,
    pub ports: Vec<PortMapping>,
    pub masquerade: bool,
    /// The host end of the veth pair, once created.
    pub host_veth: Option<String>,
    pub container_ifname: String,
    pub mtu: Option<u32>,
    pub mac: Option<String>,
    /// Our resolv.conf under the state dir, once written.
    pub resolv_conf: Option<PathBuf>,
    pub nameservers: Vec<IpAddr>,
}

impl NetworkRecord {
    /// A record of nothing built yet.
    pub fn empty(req: &NetworkRequest, container_id: &str) -> NetworkRecord {
        NetworkRecord {
            container_id: container_id.to_string(),
            bridge: req.bridge.clone(),
            subnet: req.subnet,
            gateway: req.gateway,
            address: None,
            bridge_created: false,
            rules_installed: false,
            ports: Vec::new(),
            masquerade: false,
            host_veth: None,
            container_ifname: crate::names::CONTAINER_IFNAME.to_string(),
            mtu: req.mtu,
            mac: req.mac.map(|m| {
                m.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            }),
            resolv_conf: None,
            nameservers: Vec::new(),
        }
    }
}
