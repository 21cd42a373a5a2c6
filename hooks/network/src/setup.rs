//! Build a container's network. Every step records what it built in the [`NetworkRecord`]; on a
//! failure the record's teardown removes exactly that, so a failed setup leaves nothing.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;

use rtnetlink::Handle;

use crate::annotations::NetworkRequest;
use crate::cidr::Ipv4Net;
use crate::ipam::{self, BridgeLock, BridgeNetwork, IpamError, Lease};
use crate::netlink::{self, Runtime, VethSpec};
use crate::owner::Owner;
use crate::record::NetworkRecord;
use crate::{NetError, Target, dns, firewall, iptables, names, resolv_mount, sysctl, teardown};

pub fn setup(
    req: &NetworkRequest,
    target: &Target,
    state_dir: &Path,
) -> Result<NetworkRecord, NetError> {
    if !names::valid_container_id(&target.container_id) {
        return Err(NetError::InvalidContainerId(target.container_id.clone()));
    }
    let owner = Owner::for_target(target.pid, target.owner_dir.as_deref())?;
    let (netns, netns_path) = netlink::open_netns(target.pid)?;
    // Without a network namespace of its own the container would get our eth0 and routes.
    if netlink::is_own_netns(&netns)? {
        return Err(NetError::SharedNetns { pid: target.pid });
    }
    let rt = Runtime::new()?;
    let mut record = NetworkRecord::empty(req, &target.container_id);
    let built = rt.block_on(build(
        &mut record,
        req,
        target,
        state_dir,
        owner,
        &netns,
        &netns_path,
    ));
    match built {
        Ok(()) => Ok(record),
        Err(failure) => match teardown::teardown_on(&rt, &record, state_dir) {
            Ok(()) => Err(failure),
            Err(NetError::Teardown { errors, .. }) => Err(NetError::Rollback {
                failure: Box::new(failure),
                leftovers: errors,
            }),
            Err(other) => Err(NetError::Rollback {
                failure: Box::new(failure),
                leftovers: vec![other],
            }),
        },
    }
}

async fn build(
    record: &mut NetworkRecord,
    req: &NetworkRequest,
    target: &Target,
    state_dir: &Path,
    owner: Owner,
    netns: &File,
    netns_path: &Path,
) -> Result<(), NetError> {
    let host = netlink::connect()?;
    let host_veth = names::host_veth(&target.container_id);
    let resolv_path = dns::file_path(state_dir, &target.container_id);

    let (bridge_index, ip) = {
        // Bridge creation and the lease happen under one lock: the last container of a bridge
        // deletes it under the same lock, so we never lease on a bridge being deleted.
        let lock = BridgeLock::acquire(state_dir, &req.bridge)?;
        let net = BridgeNetwork {
            subnet: req.subnet,
            gateway: req.gateway,
        };
        lock.check_network(&req.bridge, net)?;
        let existing = netlink::bridge_index(&host, &req.bridge).await?;
        check_overlap(&host, req.subnet, existing).await?;
        let (index, created, address_added) =
            netlink::ensure_bridge(&host, &req.bridge, req.subnet, req.gateway).await?;
        if created {
            lock.set_marker(ipam::MARKER_BRIDGE_CREATED)?;
            record.bridge_created = true;
        } else if address_added {
            // Someone else's bridge: the gateway address is ours to remove with the last user.
            lock.set_marker(ipam::MARKER_GATEWAY_ADDED)?;
        }
        sysctl::enable_ip_forward()?;
        if !created && !sysctl::route_localnet(&req.bridge)? {
            // Someone else's bridge: remember that the setting was ours to undo.
            lock.set_marker(ipam::MARKER_ROUTE_LOCALNET)?;
        }
        sysctl::enable_route_localnet(&req.bridge)?;
        // Checked by a bridge's first user only: later ones find the rules (or no need) in place.
        if !lock.has_leases()?
            && !lock.marker(ipam::MARKER_IPTABLES)
            && iptables::allow_bridge(&req.bridge)?
        {
            lock.set_marker(ipam::MARKER_IPTABLES)?;
        }
        let lease = Lease {
            container_id: target.container_id.clone(),
            owner,
            host_veth: host_veth.clone(),
            ports: req.ports.clone(),
            masquerade: req.nat,
            resolv_conf: Some(resolv_path.clone()),
        };
        let ip = allocate(&lock, &host, net, req.ip, &lease).await?;
        record.address = Some(ip);
        (index, ip)
    };

    // Forwards before links: a host port someone else holds fails the setup before anything
    // heavier is built.
    firewall::add_container(&req.bridge, ip, req.nat, &req.ports)?;
    record.rules_installed = true;
    record.ports = req.ports.clone();
    record.masquerade = req.nat;

    let spec = VethSpec {
        host: &host_veth,
        peer: names::CONTAINER_IFNAME,
        bridge_index,
        mtu: req.mtu,
        mac: req.mac,
    };
    let host_index = netlink::create_veth(&host, &spec, netns).await?;
    record.host_veth = Some(host_veth.clone());
    netlink::set_hairpin(&host, host_index, &host_veth).await?;

    let inside = netlink::connect_in(netns, netns_path)?;
    netlink::configure_container(
        &inside,
        names::CONTAINER_IFNAME,
        ip,
        req.subnet,
        req.gateway,
    )
    .await?;

    let conf = match &req.dns {
        Some(servers) => dns::explicit(servers),
        None => dns::from_host(&std::fs::read_to_string(dns::HOST_RESOLV_CONF).unwrap_or_default()),
    };
    dns::write_file(&resolv_path, &dns::render(&conf))?;
    record.resolv_conf = Some(resolv_path.clone());
    record.nameservers = conf.nameservers;
    // Last: nothing after it can fail, and a mount in the container's namespace has no undo.
    resolv_mount::bind_resolv_conf(target.pid, &target.rootfs, &resolv_path)?;
    if req.ip.is_none() {
        // Where the next allocation starts; written only now so a failed setup leaves no trace.
        let _ = BridgeLock::set_last_allocated_in(state_dir, &req.bridge, ip);
    }
    Ok(())
}

/// Refuse a subnet that overlaps a route the host already has, other than our bridge's own.
async fn check_overlap(
    host: &Handle,
    subnet: Ipv4Net,
    bridge_index: Option<u32>,
) -> Result<(), NetError> {
    for (route, oif) in netlink::main_routes(host).await? {
        if route.prefix() == 0 || (oif.is_some() && oif == bridge_index) || !route.overlaps(&subnet)
        {
            continue;
        }
        let device = match oif {
            Some(i) => link_name(host, i)
                .await
                .unwrap_or_else(|| format!("interface {i}")),
            None => "no interface".to_string(),
        };
        return Err(NetError::SubnetOverlap {
            subnet,
            route,
            device,
        });
    }
    Ok(())
}

async fn link_name(host: &Handle, index: u32) -> Option<String> {
    use futures::TryStreamExt;
    use rtnetlink::packet_route::link::LinkAttribute;
    let link = host
        .link()
        .get()
        .match_index(index)
        .execute()
        .try_next()
        .await
        .ok()??;
    link.attributes.into_iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n),
        _ => None,
    })
}

/// Take the first free candidate address. A lease in the way whose owner is gone (a container
/// that died without a teardown) is reclaimed.
async fn allocate(
    lock: &BridgeLock,
    host: &Handle,
    net: BridgeNetwork,
    requested: Option<Ipv4Addr>,
    lease: &Lease,
) -> Result<Ipv4Addr, NetError> {
    for ip in ipam::candidates(net, requested, lock.last_allocated()) {
        match lock.create(ip, lease) {
            Ok(()) => return Ok(ip),
            Err(IpamError::AddressInUse { holder, .. }) => {
                if let Ok(old) = lock.read(ip)
                    && !old.owner.is_alive()
                    && reclaim(lock, host, ip, &old).await
                {
                    lock.create(ip, lease)?;
                    return Ok(ip);
                }
                if requested.is_some() {
                    return Err(IpamError::AddressInUse { ip, holder }.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(IpamError::Exhausted { subnet: net.subnet }.into())
}

/// Remove what a dead lease holder left in the firewall and on the host, then its lease.
/// False (and the lease stays) when that cleanup fails.
async fn reclaim(lock: &BridgeLock, host: &Handle, ip: Ipv4Addr, old: &Lease) -> bool {
    if firewall::remove_container(ip, old.masquerade, &old.ports, false).is_err() {
        return false;
    }
    if netlink::delete_link(host, &old.host_veth).await.is_err() {
        return false;
    }
    if let Some(p) = &old.resolv_conf {
        let _ = dns::remove_file(p);
    }
    lock.remove(ip).is_ok()
}
