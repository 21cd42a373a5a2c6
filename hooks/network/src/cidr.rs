//! IPv4 networks in CIDR notation: parsing and the address arithmetic IPAM and validation need.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    #[error("expected ADDRESS/PREFIX")]
    MissingPrefix,
    #[error("{0:?} is not an IPv4 address")]
    Address(String),
    #[error("{0:?} is not a prefix length between 0 and 32")]
    Prefix(String),
    #[error("host bits are set (did you mean {0}?)")]
    HostBits(Ipv4Net),
}

/// An IPv4 network: the network address (host bits zero) and its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Net {
    network: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// `network` must have its host bits clear.
    pub fn new(network: Ipv4Addr, prefix: u8) -> Result<Self, CidrError> {
        if prefix > 32 {
            return Err(CidrError::Prefix(prefix.to_string()));
        }
        let net = Ipv4Net {
            network: Ipv4Addr::from(u32::from(network) & mask(prefix)),
            prefix,
        };
        if net.network != network {
            return Err(CidrError::HostBits(net));
        }
        Ok(net)
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network)
    }

    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// Usable host addresses: everything but the network and broadcast addresses.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let first = u32::from(self.network).saturating_add(1);
        let last = u32::from(self.broadcast()).saturating_sub(1);
        (first..=last).map(Ipv4Addr::from)
    }

    /// The n-th address of the network (0 is the network address itself).
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        let ip = u32::from(self.network).checked_add(n)?;
        let ip = Ipv4Addr::from(ip);
        self.contains(ip).then_some(ip)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl FromStr for Ipv4Net {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s.split_once('/').ok_or(CidrError::MissingPrefix)?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| CidrError::Address(addr.to_string()))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| CidrError::Prefix(prefix.to_string()))?;
        Ipv4Net::new(addr, prefix)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl TryFrom<String> for Ipv4Net {
    type Error = CidrError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Ipv4Net> for String {
    fn from(n: Ipv4Net) -> String {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let n: Ipv4Net = "10.0.0.0/24".parse().unwrap();
        assert_eq!(n.to_string(), "10.0.0.0/24");
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 0, 0, 255));
        assert_eq!(n.nth(1), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(n.nth(256), None);
        assert_eq!(n.hosts().count(), 254);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!("10.0.0.0".parse::<Ipv4Net>(), Err(CidrError::MissingPrefix));
        assert!(matches!(
            "10.0.0/24".parse::<Ipv4Net>(),
            Err(CidrError::Address(_))
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<Ipv4Net>(),
            Err(CidrError::Prefix(_))
        ));
        assert!(matches!(
            "10.0.0.0/x".parse::<Ipv4Net>(),
            Err(CidrError::Prefix(_))
        ));
        assert!(matches!(
            "10.0.0.5/24".parse::<Ipv4Net>(),
            Err(CidrError::HostBits(_))
        ));
    }

    #[test]
    fn overlap_and_contains() {
        let a: Ipv4Net = "10.0.0.0/16".parse().unwrap();
        let b: Ipv4Net = "10.0.5.0/24".parse().unwrap();
        let c: Ipv4Net = "10.1.0.0/24".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert!(a.contains(Ipv4Addr::new(10, 0, 200, 1)));
        let all: Ipv4Net = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
    }

    #[test]
    fn serde_roundtrip() {
        let n: Ipv4Net = "172.16.0.0/12".parse().unwrap();
        let s = serde_json::to_string(&n).unwrap();
        assert_eq!(s, "\"172.16.0.0/12\"");
        assert_eq!(serde_json::from_str::<Ipv4Net>(&s).unwrap(), n);
    }
}
