//! Remove what a [`NetworkRecord`] says was built. Idempotent and best effort: every step runs,
//! errors are collected. Works when the container's network namespace is gone already.

use std::path::Path;

use rtnetlink::Handle;

use crate::ipam::{self, BridgeLock};
use crate::netlink::{self, Runtime};
use crate::record::NetworkRecord;
use crate::signals::TerminationBlocked;
use crate::{NetError, dns, firewall, iptables, sysctl};

pub fn teardown(record: &NetworkRecord, state_dir: &Path) -> Result<(), NetError> {
    // A half-done teardown would leave forwards to an address that gets handed out again.
    let _blocked = TerminationBlocked::new();
    let rt = Runtime::new()?;
    teardown_on(&rt, record, state_dir)
}

pub(crate) fn teardown_on(
    rt: &Runtime,
    record: &NetworkRecord,
    state_dir: &Path,
) -> Result<(), NetError> {
    let errors = rt.block_on(remove_all(record, state_dir));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(NetError::Teardown {
            container_id: record.container_id.clone(),
            errors,
        })
    }
}

async fn remove_all(record: &NetworkRecord, state_dir: &Path) -> Vec<NetError> {
    let mut errors = Vec::new();
    // The bridge lock is held from the rules to the lease: while the lease is ours nobody else
    // can be handed the address, so the rules pointing at it are ours too.
    let lock = match BridgeLock::acquire(state_dir, &record.bridge) {
        Ok(l) => Some(l),
        Err(e) => {
            errors.push(e.into());
            None
        }
    };
    // A record written before setup finished (the caller died during it) does not know the
    // address: the lease, which names its holder and what was built for it, does.
    let recovered;
    let record = match (&lock, record.address) {
        (Some(l), None) => match l.held_by(&record.container_id) {
            Some((ip, lease)) => {
                recovered = NetworkRecord {
                    address: Some(ip),
                    rules_installed: true,
                    ports: lease.ports,
                    masquerade: lease.masquerade,
                    host_veth: Some(lease.host_veth),
                    resolv_conf: lease.resolv_conf,
                    ..record.clone()
                };
                &recovered
            }
            None => record,
        },
        _ => record,
    };
    // The address went to another container (ours was reclaimed after a death): its rules and
    // lease are that container's now.
    let lease = match (&lock, record.address) {
        (Some(l), Some(ip)) => l.read(ip).ok(),
        _ => None,
    };
    let reassigned = lease
        .as_ref()
        .is_some_and(|l| l.container_id != record.container_id);
    let owned = lease
        .as_ref()
        .is_some_and(|l| l.container_id == record.container_id);
    // Rules first: nothing may still be forwarded to the address once its lease is released.
    if record.rules_installed
        && !reassigned
        && let Some(ip) = record.address
        && let Err(e) = firewall::remove_container(ip, record.masquerade, &record.ports, owned)
    {
        errors.push(e.into());
    }
    let host = match netlink::connect() {
        Ok(h) => Some(h),
        Err(e) => {
            errors.push(e.into());
            None
        }
    };
    // Deleting the host end deletes the peer; if the namespace died, both are gone already.
    if let (Some(h), Some(name)) = (&host, &record.host_veth)
        && let Err(e) = netlink::delete_link(h, name).await
    {
        errors.push(e.into());
    }
    if let Some(lock) = &lock {
        if let Some(ip) = record.address
            && !reassigned
            && let Err(e) = lock.release(ip, &record.container_id)
        {
            errors.push(e.into());
        }
        match lock.has_leases() {
            Ok(false) => last_user_left(lock, host.as_ref(), &record.bridge, &mut errors).await,
            Ok(true) => {}
            Err(e) => errors.push(e.into()),
        }
    }
    drop(lock);
    if let Some(p) = &record.resolv_conf
        && let Err(e) = dns::remove_file(p)
    {
        errors.push(e.into());
    }
    errors
}

/// The bridge's last lease is gone (we hold its lock): drop its firewall membership and
/// iptables accept rules, and the bridge itself if husk created it.
async fn last_user_left(
    lock: &BridgeLock,
    host: Option<&Handle>,
    bridge: &str,
    errors: &mut Vec<NetError>,
) {
    if let Err(e) = firewall::remove_bridge(bridge) {
        errors.push(e.into());
    }
    if lock.marker(ipam::MARKER_IPTABLES) {
        match iptables::forget_bridge(bridge) {
            Ok(()) => {
                if let Err(e) = lock.clear_marker(ipam::MARKER_IPTABLES) {
                    errors.push(e.into());
                }
            }
            Err(e) => errors.push(e.into()),
        }
    }
    if lock.marker(ipam::MARKER_GATEWAY_ADDED)
        && let (Some(h), Some(net)) = (host, lock.network())
    {
        match netlink::delete_address(h, bridge, net.gateway).await {
            Ok(()) => {
                if let Err(e) = lock.clear_marker(ipam::MARKER_GATEWAY_ADDED) {
                    errors.push(e.into());
                }
            }
            Err(e) => errors.push(e.into()),
        }
    }
    // The guard rules no longer cover this bridge: route_localnet must not stay on.
    if lock.marker(ipam::MARKER_ROUTE_LOCALNET) {
        match sysctl::disable_route_localnet(bridge) {
            Ok(()) => {
                if let Err(e) = lock.clear_marker(ipam::MARKER_ROUTE_LOCALNET) {
                    errors.push(e.into());
                }
            }
            Err(e) => errors.push(e.into()),
        }
    }
    if lock.marker(ipam::MARKER_BRIDGE_CREATED)
        && let Some(h) = host
    {
        match netlink::delete_link(h, bridge).await {
            Ok(_) => {
                if let Err(e) = lock.clear_marker(ipam::MARKER_BRIDGE_CREATED) {
                    errors.push(e.into());
                }
            }
            Err(e) => errors.push(e.into()),
        }
    }
    if let Err(e) = lock.forget_network() {
        errors.push(e.into());
    }
}
