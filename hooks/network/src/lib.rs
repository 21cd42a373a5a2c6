//! husk-net: built-in container networking for husk (and, as an OCI hook, for runc and crun).
//!
//! `io.husk.net.*` annotations -> [`NetworkRequest`] -> [`setup`] -> [`NetworkRecord`] -> [`teardown`].
//! A bridge with a gateway address, a veth pair per container (one end created directly inside
//! the container's network namespace), IPv4 leases on disk, one nftables table for masquerade
//! and port forwards, and a read-only resolv.conf bind-mounted into the rootfs.

mod annotations;
mod cidr;
mod dns;
mod firewall;
mod hook;
mod ipam;
mod iptables;
mod names;
mod netlink;
mod owner;
mod record;
mod resolv_mount;
mod setup;
mod signals;
mod sysctl;
mod teardown;

use std::path::PathBuf;

pub use annotations::{AnnotationError, NetworkRequest, PortMapping, Protocol};
pub use cidr::Ipv4Net;
pub use hook::{HookError, HookStage, run_hook};
pub use names::host_veth as host_veth_name;
pub use record::NetworkRecord;
pub use setup::setup;
pub use teardown::teardown;

/// Where the annotation keys start; every key under it is ours.
pub const ANNOTATION_PREFIX: &str = annotations::PREFIX;
/// The nftables table we own (`table ip husk`).
pub const NFT_TABLE: &str = firewall::TABLE;

/// Parse and validate the `io.husk.net.*` annotations (pure). `Ok(None)`: no such key, no
/// network. Errors name the key and the value (`NetError::Annotation`).
pub fn parse_annotations(
    annotations: &std::collections::HashMap<String, String>,
) -> Result<Option<NetworkRequest>, NetError> {
    Ok(annotations::parse_annotations(annotations)?)
}

/// The container to connect.
#[derive(Clone, Debug)]
pub struct Target {
    pub container_id: String,
    /// The container's init: /proc/PID/ns/net is its network namespace, /proc/PID/ns/mnt its mounts.
    pub pid: i32,
    /// The rootfs as seen inside the container's mount namespace before pivot_root.
    pub rootfs: PathBuf,
    /// husk's state dir of the container: the lease is live while it exists. None: live while
    /// the process `pid` (with its start time) lives.
    pub owner_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Annotation(#[from] AnnotationError),
    #[error(transparent)]
    Ipam(#[from] ipam::IpamError),
    #[error(transparent)]
    Netlink(#[from] netlink::NetlinkError),
    #[error(transparent)]
    Firewall(#[from] firewall::FirewallError),
    #[error(transparent)]
    Iptables(#[from] iptables::IptablesError),
    #[error(transparent)]
    Dns(#[from] dns::DnsError),
    #[error(transparent)]
    ResolvMount(#[from] resolv_mount::ResolvMountError),
    #[error(transparent)]
    Owner(#[from] owner::OwnerError),
    #[error(transparent)]
    Sysctl(#[from] sysctl::SysctlError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(
        "process {pid} shares our network namespace: the container needs a network namespace of its own"
    )]
    SharedNetns { pid: i32 },
    #[error("container id {0:?} is not a valid file name")]
    InvalidContainerId(String),
    #[error("subnet {subnet} overlaps the host route {route} on {device}")]
    SubnetOverlap {
        subnet: Ipv4Net,
        route: Ipv4Net,
        device: String,
    },
    #[error("teardown of container {container_id}: {}", list(errors))]
    Teardown {
        container_id: String,
        errors: Vec<NetError>,
    },
    #[error("setup failed, and rolling it back left: {}", list(leftovers))]
    Rollback {
        #[source]
        failure: Box<NetError>,
        leftovers: Vec<NetError>,
    },
}

fn list(errors: &[NetError]) -> String {
    errors
        .iter()
        .map(|e| error_chain(e))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An error and its causes, `a: b: c`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
