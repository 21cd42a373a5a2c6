//! rtnetlink operations: bridge, addresses, veth, routes, links.
//!
//! Everything runs on a tokio current-thread runtime created for one setup or teardown and dropped
//! after it: no thread is ever started (husk forks after calling us). A socket in the container's
//! network namespace is made by switching this thread into it just for the socket() call.

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use nix::sched::{CloneFlags, setns};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};

use crate::cidr::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("create the netlink runtime")]
    Runtime {
        #[source]
        source: std::io::Error,
    },
    #[error("open a netlink socket")]
    Connect {
        #[source]
        source: std::io::Error,
    },
    #[error("open network namespace {path}")]
    OpenNetns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("enter network namespace {path}")]
    EnterNetns {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("return to our own network namespace")]
    ReturnNetns {
        #[source]
        source: nix::Error,
    },
    #[error("look up link {name}")]
    GetLink {
        name: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("create bridge {name}")]
    CreateBridge {
        name: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("link {name} exists and is not a bridge")]
    NotABridge { name: String },
    #[error("link {name} vanished while being set up")]
    LinkVanished { name: String },
    #[error("add address {addr} to {link}")]
    AddAddress {
        link: String,
        addr: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("bring up {link}")]
    LinkUp {
        link: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("list routes")]
    ListRoutes {
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("create veth {host} (peer {peer} in the container)")]
    CreateVeth {
        host: String,
        peer: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("turn on hairpin mode of {link}")]
    SetHairpin {
        link: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("add default route via {gateway}")]
    AddRoute {
        gateway: Ipv4Addr,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("delete link {name}")]
    DeleteLink {
        name: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
}

/// A current-thread tokio runtime: no worker threads, no blocking pool used.
pub struct Runtime(tokio::runtime::Runtime);

impl Runtime {
    pub fn new() -> Result<Runtime, NetlinkError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map(Runtime)
            .map_err(|source| NetlinkError::Runtime { source })
    }

    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.0.block_on(f)
    }
}

/// A handle on a socket in our current network namespace. Must run inside the runtime.
pub fn connect() -> Result<Handle, NetlinkError> {
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|source| NetlinkError::Connect { source })?;
    // A task on the current-thread runtime, not a thread: it runs while block_on polls.
    tokio::spawn(conn);
    Ok(handle)
}

/// A handle on a socket in the network namespace `ns` (opened from `path`). The thread enters the
/// namespace only for the socket() call; a socket stays in the namespace it was created in.
pub fn connect_in(ns: &File, path: &Path) -> Result<Handle, NetlinkError> {
    let own = File::open("/proc/thread-self/ns/net").map_err(|source| NetlinkError::OpenNetns {
        path: "/proc/thread-self/ns/net".into(),
        source,
    })?;
    setns(ns, CloneFlags::CLONE_NEWNET).map_err(|source| NetlinkError::EnterNetns {
        path: path.into(),
        source,
    })?;
    let made = rtnetlink::new_connection();
    // Back before anything else can run on this thread.
    setns(&own, CloneFlags::CLONE_NEWNET).map_err(|source| NetlinkError::ReturnNetns { source })?;
    let (conn, handle, _) = made.map_err(|source| NetlinkError::Connect { source })?;
    tokio::spawn(conn);
    Ok(handle)
}

pub fn open_netns(pid: i32) -> Result<(File, PathBuf), NetlinkError> {
    let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let f = File::open(&path).map_err(|source| NetlinkError::OpenNetns {
        path: path.clone(),
        source,
    })?;
    Ok((f, path))
}

/// True when `ns` is the calling thread's own network namespace.
pub fn is_own_netns(ns: &File) -> Result<bool, NetlinkError> {
    use std::os::unix::fs::MetadataExt;
    let own_path = Path::new("/proc/thread-self/ns/net");
    let own = std::fs::metadata(own_path).map_err(|source| NetlinkError::OpenNetns {
        path: own_path.into(),
        source,
    })?;
    let theirs = ns.metadata().map_err(|source| NetlinkError::OpenNetns {
        path: "container netns".into(),
        source,
    })?;
    Ok(own.dev() == theirs.dev() && own.ino() == theirs.ino())
}

fn errno_of(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

pub async fn link_by_name(h: &Handle, name: &str) -> Result<Option<LinkMessage>, NetlinkError> {
    match h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(found) => Ok(found),
        Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
        Err(source) => Err(NetlinkError::GetLink {
            name: name.to_string(),
            source: Box::new(source),
        }),
    }
}

fn is_bridge(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge))),
        _ => false,
    })
}

/// The bridge's index if it exists (and is a bridge).
pub async fn bridge_index(h: &Handle, name: &str) -> Result<Option<u32>, NetlinkError> {
    match link_by_name(h, name).await? {
        Some(link) if is_bridge(&link) => Ok(Some(link.header.index)),
        Some(_) => Err(NetlinkError::NotABridge {
            name: name.to_string(),
        }),
        None => Ok(None),
    }
}

/// Create the bridge unless it exists (a concurrent creator winning is fine), address and up.
/// Returns its index and whether this call created it.
/// The bridge, created if missing, with the gateway address, up. Returns its index, whether
/// it was created now, and whether the address was added now.
pub async fn ensure_bridge(
    h: &Handle,
    name: &str,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
) -> Result<(u32, bool, bool), NetlinkError> {
    let created = match h.link().add(LinkBridge::new(name).build()).execute().await {
        Ok(()) => true,
        Err(e) if errno_of(&e) == Some(libc::EEXIST) => false,
        Err(source) => {
            return Err(NetlinkError::CreateBridge {
                name: name.to_string(),
                source: Box::new(source),
            });
        }
    };
    let index = bridge_index(h, name)
        .await?
        .ok_or_else(|| NetlinkError::LinkVanished {
            name: name.to_string(),
        })?;
    let address_added = match h
        .address()
        .add(index, IpAddr::V4(gateway), subnet.prefix())
        .execute()
        .await
    {
        Ok(()) => true,
        Err(e) if errno_of(&e) == Some(libc::EEXIST) => false,
        Err(source) => {
            return Err(NetlinkError::AddAddress {
                link: name.to_string(),
                addr: format!("{gateway}/{}", subnet.prefix()),
                source: Box::new(source),
            });
        }
    };
    link_up(h, index, name).await?;
    Ok((index, created, address_added))
}

/// Removes `gateway` from the link `name` (a bridge husk did not create). Absent is fine.
pub async fn delete_address(h: &Handle, name: &str, gateway: Ipv4Addr) -> Result<(), NetlinkError> {
    let Some(index) = bridge_index(h, name).await? else {
        return Ok(());
    };
    let mut addrs = h.address().get().set_link_index_filter(index).execute();
    let list_err = |source: rtnetlink::Error| NetlinkError::ListRoutes {
        source: Box::new(source),
    };
    while let Some(msg) = addrs.try_next().await.map_err(list_err)? {
        let ours = msg.attributes.iter().any(|a| {
            matches!(a, rtnetlink::packet_route::address::AddressAttribute::Local(IpAddr::V4(ip)) if *ip == gateway)
        });
        if ours {
            return h.address().del(msg).execute().await.map_err(|source| {
                NetlinkError::AddAddress {
                    link: name.to_string(),
                    addr: format!("del {gateway}"),
                    source: Box::new(source),
                }
            });
        }
    }
    Ok(())
}

pub async fn link_up(h: &Handle, index: u32, name: &str) -> Result<(), NetlinkError> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|source| NetlinkError::LinkUp {
            link: name.to_string(),
            source: Box::new(source),
        })
}

/// IPv4 routes of the main table: destination network and output interface.
pub async fn main_routes(h: &Handle) -> Result<Vec<(Ipv4Net, Option<u32>)>, NetlinkError> {
    let mut routes = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    let mut out = Vec::new();
    while let Some(r) = routes
        .try_next()
        .await
        .map_err(|source| NetlinkError::ListRoutes {
            source: Box::new(source),
        })?
    {
        if let Some(route) = main_route(&r) {
            out.push(route);
        }
    }
    Ok(out)
}

fn main_route(r: &RouteMessage) -> Option<(Ipv4Net, Option<u32>)> {
    let mut table = u32::from(r.header.table);
    let mut dst = None;
    let mut oif = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(*ip),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let prefix = r.header.destination_prefix_length;
    let dst = dst.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let masked = Ipv4Addr::from(if prefix == 0 {
        0
    } else {
        u32::from(dst) & (u32::MAX << (32 - u32::from(prefix)))
    });
    Some((Ipv4Net::new(masked, prefix).ok()?, oif))
}

pub struct VethSpec<'a> {
    pub host: &'a str,
    pub peer: &'a str,
    pub bridge_index: u32,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
}

/// One request creates both ends: the host end on the bridge and up, the peer directly in the
/// container's namespace (`netns`), with its MTU and MAC. Returns the host end's index.
pub async fn create_veth(
    h: &Handle,
    spec: &VethSpec<'_>,
    netns: &File,
) -> Result<u32, NetlinkError> {
    let mut peer = LinkMessageBuilder::<LinkUnspec>::default()
        .name(spec.peer.to_string())
        .setns_by_fd(netns.as_raw_fd());
    if let Some(mtu) = spec.mtu {
        peer = peer.mtu(mtu);
    }
    if let Some(mac) = spec.mac {
        peer = peer.address(mac.to_vec());
    }
    let mut host = LinkVeth::new(spec.host, spec.peer)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
        .controller(spec.bridge_index)
        .up();
    if let Some(mtu) = spec.mtu {
        host = host.mtu(mtu);
    }
    h.link()
        .add(host.build())
        .execute()
        .await
        .map_err(|source| NetlinkError::CreateVeth {
            host: spec.host.to_string(),
            peer: spec.peer.to_string(),
            source: Box::new(source),
        })?;
    let link = link_by_name(h, spec.host)
        .await?
        .ok_or_else(|| NetlinkError::LinkVanished {
            name: spec.host.to_string(),
        })?;
    Ok(link.header.index)
}

/// Let frames leave the port they came in on (a container reaching its own forwarded port).
pub async fn set_hairpin(h: &Handle, index: u32, name: &str) -> Result<(), NetlinkError> {
    h.link()
        .set_port(LinkBridgePort::new(index).hairpin(true).build())
        .execute()
        .await
        .map_err(|source| NetlinkError::SetHairpin {
            link: name.to_string(),
            source: Box::new(source),
        })
}

/// Delete a link by name. Ok(false) when it does not exist.
pub async fn delete_link(h: &Handle, name: &str) -> Result<bool, NetlinkError> {
    let Some(link) = link_by_name(h, name).await? else {
        return Ok(false);
    };
    match h.link().del(link.header.index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(false),
        Err(source) => Err(NetlinkError::DeleteLink {
            name: name.to_string(),
            source: Box::new(source),
        }),
    }
}

/// Inside the container's namespace: loopback up, address on `ifname`, up, default route.
pub async fn configure_container(
    h: &Handle,
    ifname: &str,
    ip: Ipv4Addr,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
) -> Result<(), NetlinkError> {
    if let Some(lo) = link_by_name(h, "lo").await? {
        link_up(h, lo.header.index, "lo").await?;
    }
    let link = link_by_name(h, ifname)
        .await?
        .ok_or_else(|| NetlinkError::LinkVanished {
            name: ifname.to_string(),
        })?;
    let index = link.header.index;
    h.address()
        .add(index, IpAddr::V4(ip), subnet.prefix())
        .execute()
        .await
        .map_err(|source| NetlinkError::AddAddress {
            link: ifname.to_string(),
            addr: format!("{ip}/{}", subnet.prefix()),
            source: Box::new(source),
        })?;
    link_up(h, index, ifname).await?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(index)
        .build();
    h.route()
        .add(route)
        .execute()
        .await
        .map_err(|source| NetlinkError::AddRoute {
            gateway,
            source: Box::new(source),
        })
}
