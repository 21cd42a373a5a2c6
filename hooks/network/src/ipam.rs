//! IP address management: leases on disk under `<state_dir>/ipam/<bridge>/`, one file per address.
//!
//! Every operation runs under [`BridgeLock`], an exclusive flock on the bridge's directory, so
//! processes creating containers concurrently never hand out the same address. The same lock
//! also serialises creating and deleting the bridge itself (see `setup` and `teardown`).

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::annotations::PortMapping;
use crate::cidr::Ipv4Net;
use crate::owner::Owner;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("create lease directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lock lease directory {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("read lease directory {path}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "bridge {bridge} already serves subnet {existing} with gateway {existing_gateway}; \
         requested {requested} with gateway {requested_gateway}"
    )]
    SubnetMismatch {
        bridge: String,
        existing: Ipv4Net,
        existing_gateway: Ipv4Addr,
        requested: Ipv4Net,
        requested_gateway: Ipv4Addr,
    },
    #[error("address {ip} is already leased to container {holder:?}")]
    AddressInUse { ip: Ipv4Addr, holder: String },
    #[error("no free address left in {subnet}")]
    Exhausted { subnet: Ipv4Net },
}

/// What a lease file holds: its holder, and enough about what was built for it to clean up
/// after a holder that died without a teardown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub container_id: String,
    pub owner: Owner,
    pub host_veth: String,
    pub ports: Vec<PortMapping>,
    pub masquerade: bool,
    pub resolv_conf: Option<PathBuf>,
}

/// The subnet a bridge serves, fixed while it has leases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeNetwork {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
}

const NETWORK_FILE: &str = "network.json";
const LAST_FILE: &str = "last";
/// Present while the bridge is one husk created (and so deletes with its last lease).
pub const MARKER_BRIDGE_CREATED: &str = "bridge-created";
/// Present while husk has route_localnet on for a bridge that had it off (and that husk did not
/// create): the last container to leave turns it off again.
pub const MARKER_ROUTE_LOCALNET: &str = "route-localnet-set";
/// Present while the gateway address husk added to a bridge it did not create is there.
pub const MARKER_GATEWAY_ADDED: &str = "gateway-added";
/// Present while husk's iptables FORWARD accept rules for the bridge are installed.
pub const MARKER_IPTABLES: &str = "iptables-forward";

pub fn bridge_dir(state_dir: &Path, bridge: &str) -> PathBuf {
    state_dir.join("ipam").join(bridge)
}

/// An exclusive lock on one bridge's lease directory, held until dropped.
pub struct BridgeLock {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl BridgeLock {
    pub fn acquire(state_dir: &Path, bridge: &str) -> Result<BridgeLock, IpamError> {
        let dir = bridge_dir(state_dir, bridge);
        fs::create_dir_all(&dir).map_err(|source| IpamError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let file = File::open(&dir).map_err(|source| IpamError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let lock =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, source)| IpamError::Lock {
                path: dir.clone(),
                source,
            })?;
        Ok(BridgeLock { dir, _lock: lock })
    }

    /// True when any address file exists, readable or not.
    pub fn has_leases(&self) -> Result<bool, IpamError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| IpamError::ReadDir {
            path: self.dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| IpamError::ReadDir {
                path: self.dir.clone(),
                source,
            })?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.parse::<Ipv4Addr>().is_ok())
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The lease `container_id` holds on this bridge, if any: how a teardown finds what a setup
    /// that never returned its record (its caller was killed) had built.
    pub fn held_by(&self, container_id: &str) -> Option<(Ipv4Addr, Lease)> {
        fs::read_dir(&self.dir)
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<Ipv4Addr>().ok())
            .find_map(|ip| {
                let lease = self.read(ip).ok()?;
                (lease.container_id == container_id).then_some((ip, lease))
            })
    }

    pub fn read(&self, ip: Ipv4Addr) -> Result<Lease, IpamError> {
        let path = self.dir.join(ip.to_string());
        let text = fs::read(&path).map_err(|source| IpamError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| IpamError::Parse { path, source })
    }

    /// The subnet the bridge serves. Recorded by the first lease; a different request is refused
    /// while leases exist (the bridge has one gateway address and one route).
    pub fn check_network(&self, bridge: &str, want: BridgeNetwork) -> Result<(), IpamError> {
        let path = self.dir.join(NETWORK_FILE);
        match fs::read(&path) {
            Ok(text) => {
                let have: BridgeNetwork =
                    serde_json::from_slice(&text).map_err(|source| IpamError::Parse {
                        path: path.clone(),
                        source,
                    })?;
                if have == want {
                    return Ok(());
                }
                if self.has_leases()? {
                    return Err(IpamError::SubnetMismatch {
                        bridge: bridge.to_string(),
                        existing: have.subnet,
                        existing_gateway: have.gateway,
                        requested: want.subnet,
                        requested_gateway: want.gateway,
                    });
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(source) => return Err(IpamError::Read { path, source }),
        }
        let text = serde_json::to_vec(&want).map_err(|source| IpamError::Parse {
            path: path.clone(),
            source,
        })?;
        write_atomic(&self.dir, NETWORK_FILE, &text, true)
    }

    /// The network this bridge serves, while it has one recorded.
    pub fn network(&self) -> Option<BridgeNetwork> {
        let text = fs::read(self.dir.join(NETWORK_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// The address handed out last (where the next search starts). Only a hint: it is written
    /// after a setup succeeded, without the lock, and a stale or missing one costs a few probes.
    pub fn last_allocated(&self) -> Option<Ipv4Addr> {
        fs::read_to_string(self.dir.join(LAST_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn set_last_allocated_in(
        state_dir: &Path,
        bridge: &str,
        ip: Ipv4Addr,
    ) -> Result<(), IpamError> {
        write_atomic(
            &bridge_dir(state_dir, bridge),
            LAST_FILE,
            ip.to_string().as_bytes(),
            true,
        )
    }

    /// Create the lease file for `ip`, with its full content, failing if it exists.
    pub fn create(&self, ip: Ipv4Addr, lease: &Lease) -> Result<(), IpamError> {
        let text = serde_json::to_vec_pretty(lease).map_err(|source| IpamError::Parse {
            path: self.dir.join(ip.to_string()),
            source,
        })?;
        match write_atomic(&self.dir, &ip.to_string(), &text, false) {
            Err(IpamError::Write { source, .. }) if source.kind() == ErrorKind::AlreadyExists => {
                let holder = self.read(ip).map(|l| l.container_id).unwrap_or_default();
                Err(IpamError::AddressInUse { ip, holder })
            }
            other => other,
        }
    }

    /// Remove the lease for `ip` if it is still `container_id`'s. Ok(false) when it was not there.
    pub fn release(&self, ip: Ipv4Addr, container_id: &str) -> Result<bool, IpamError> {
        match self.read(ip) {
            Ok(lease) if lease.container_id != container_id => return Ok(false),
            Err(IpamError::Read { source, .. }) if source.kind() == ErrorKind::NotFound => {
                return Ok(false);
            }
            // A lease we cannot parse at our own address is ours to remove.
            _ => {}
        }
        self.remove(ip)
    }

    pub fn remove(&self, ip: Ipv4Addr) -> Result<bool, IpamError> {
        remove_file(&self.dir.join(ip.to_string()))
    }

    pub fn marker(&self, name: &str) -> bool {
        self.dir.join(name).exists()
    }

    pub fn set_marker(&self, name: &str) -> Result<(), IpamError> {
        write_atomic(&self.dir, name, b"", true)
    }

    pub fn clear_marker(&self, name: &str) -> Result<bool, IpamError> {
        remove_file(&self.dir.join(name))
    }

    /// Drop the bridge's subnet record (when its last lease is gone).
    pub fn forget_network(&self) -> Result<bool, IpamError> {
        remove_file(&self.dir.join(LAST_FILE))?;
        remove_file(&self.dir.join(NETWORK_FILE))
    }
}

/// Addresses to try, in order: the static one alone; or every host address but the gateway,
/// starting after `last` and wrapping around. Addresses are handed out in rotation, so the first
/// one tried is usually free and a setup costs the same with 1 or 500 leases.
pub fn candidates(
    net: BridgeNetwork,
    requested: Option<Ipv4Addr>,
    last: Option<Ipv4Addr>,
) -> Box<dyn Iterator<Item = Ipv4Addr>> {
    if let Some(ip) = requested {
        return Box::new(std::iter::once(ip));
    }
    let first = u32::from(net.subnet.network()) + 1;
    let end = u32::from(net.subnet.broadcast()) - 1;
    let start = last
        .map(|l| u32::from(l).saturating_add(1))
        .filter(|s| (first..=end).contains(s))
        .unwrap_or(first);
    let gateway = net.gateway;
    Box::new(
        (start..=end)
            .chain(first..start)
            .map(Ipv4Addr::from)
            .filter(move |ip| *ip != gateway),
    )
}

fn remove_file(path: &Path) -> Result<bool, IpamError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(source) => Err(IpamError::Remove {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Write `name` in `dir` all at once: a temp file, then rename (replace) or hard link (create only:
/// fails with AlreadyExists, like O_EXCL, and nobody ever sees a half-written file).
pub fn write_atomic(
    dir: &Path,
    name: &str,
    content: &[u8],
    replace: bool,
) -> Result<(), IpamError> {
    // Unique per process and call: threads of one process may write side by side.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    let dest = dir.join(name);
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(content)?;
        if replace {
            fs::rename(&tmp, &dest)
        } else {
            fs::hard_link(&tmp, &dest)
        }
    };
    let result = write();
    // After a rename the temp name is gone already; after a link (or a failure) it is removed here.
    let _ = fs::remove_file(&tmp);
    result.map_err(|source| IpamError::Write { path: dest, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: &str) -> Lease {
        Lease {
            container_id: id.to_string(),
            owner: Owner::Process {
                pid: 1,
                start_time: 1,
            },
            host_veth: "vhx".to_string(),
            ports: vec![],
            masquerade: true,
            resolv_conf: None,
        }
    }

    fn net() -> BridgeNetwork {
        BridgeNetwork {
            subnet: "10.0.0.0/29".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 0, 0, 1),
        }
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("husk-net-ipam-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn candidates_rotate_and_skip_the_gateway() {
        let all: Vec<Ipv4Addr> = candidates(net(), None, None).collect();
        let want: Vec<Ipv4Addr> = (2..=6).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        assert_eq!(all, want);
        let after4: Vec<Ipv4Addr> =
            candidates(net(), None, Some(Ipv4Addr::new(10, 0, 0, 4))).collect();
        assert_eq!(after4, [5, 6, 2, 3, 4].map(|i| Ipv4Addr::new(10, 0, 0, i)));
        // A hint outside the subnet (the subnet changed) starts from the beginning.
        let stale = candidates(net(), None, Some(Ipv4Addr::new(10, 9, 0, 4))).next();
        assert_eq!(stale, Some(Ipv4Addr::new(10, 0, 0, 2)));
        let last = candidates(net(), None, Some(Ipv4Addr::new(10, 0, 0, 6))).next();
        assert_eq!(last, Some(Ipv4Addr::new(10, 0, 0, 2)));
        // With the gateway moved to .6, .1 is a host address like any other.
        let gw6 = BridgeNetwork {
            gateway: Ipv4Addr::new(10, 0, 0, 6),
            ..net()
        };
        let all: Vec<Ipv4Addr> = candidates(gw6, None, None).collect();
        assert_eq!(all, [1, 2, 3, 4, 5].map(|i| Ipv4Addr::new(10, 0, 0, i)));
        let fixed: Vec<Ipv4Addr> =
            candidates(net(), Some(Ipv4Addr::new(10, 0, 0, 3)), None).collect();
        assert_eq!(fixed, vec![Ipv4Addr::new(10, 0, 0, 3)]);
    }

    #[test]
    fn create_is_exclusive_and_release_checks_holder() {
        let d = tempdir("excl");
        let lock = BridgeLock::acquire(&d, "br").unwrap();
        let ip = Ipv4Addr::new(10, 0, 0, 2);
        lock.create(ip, &lease("a")).unwrap();
        let e = lock.create(ip, &lease("b")).unwrap_err();
        assert!(
            matches!(e, IpamError::AddressInUse { ref holder, .. } if holder == "a"),
            "{e}"
        );
        assert_eq!(lock.read(ip).unwrap().container_id, "a");
        assert!(!lock.release(ip, "b").unwrap());
        assert!(lock.release(ip, "a").unwrap());
        assert!(!lock.release(ip, "a").unwrap());
        assert!(!lock.has_leases().unwrap());
        drop(lock);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn network_is_fixed_while_leased() {
        let d = tempdir("net");
        let lock = BridgeLock::acquire(&d, "br").unwrap();
        lock.check_network("br", net()).unwrap();
        let other = BridgeNetwork {
            subnet: "10.1.0.0/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 1, 0, 1),
        };
        // No lease yet: the bridge may change its subnet.
        lock.check_network("br", other).unwrap();
        lock.create(Ipv4Addr::new(10, 1, 0, 2), &lease("a"))
            .unwrap();
        let e = lock.check_network("br", net()).unwrap_err();
        assert!(
            e.to_string().contains("already serves subnet 10.1.0.0/24"),
            "{e}"
        );
        assert_eq!(lock.network(), Some(other));
        drop(lock);
        fs::remove_dir_all(&d).unwrap();
    }
}
