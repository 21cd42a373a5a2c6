//! The container's resolv.conf: its content (pure) and the file under `<state_dir>/dns/`.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("create {path}")]
    CreateDir {
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
}

pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// What the container's resolv.conf says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    /// `search`, `domain` and `options` lines carried over from the host.
    pub other_lines: Vec<String>,
}

/// From the host's resolv.conf: its nameservers that are reachable from a container (not
/// loopback: a resolver on the host's 127.0.0.x is not in the container's network namespace),
/// and its search/domain/options lines.
pub fn from_host(host: &str) -> ResolvConf {
    let mut nameservers = Vec::new();
    let mut other_lines = Vec::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // A scoped IPv6 address (fe80::1%eth0) names a host interface: not usable either.
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok())
                    && !ip.is_loopback()
                    && !ip.is_unspecified()
                {
                    nameservers.push(ip);
                }
            }
            Some("search" | "domain" | "options") => other_lines.push(line.trim().to_string()),
            _ => {}
        }
    }
    ResolvConf {
        nameservers,
        other_lines,
    }
}

/// Explicit nameservers (the `io.husk.net.dns` annotation) replace the host's entirely.
pub fn explicit(nameservers: &[IpAddr]) -> ResolvConf {
    ResolvConf {
        nameservers: nameservers.to_vec(),
        other_lines: Vec::new(),
    }
}

/// The file's text. With no usable nameserver it is still written (and mounted) with a comment
/// only: the container must not inherit an image resolv.conf pointing at a loopback resolver.
pub fn render(conf: &ResolvConf) -> String {
    let mut s = String::from("# written by husk\n");
    if conf.nameservers.is_empty() {
        s.push_str("# no nameserver: the host has none reachable from a container\n");
    }
    for ns in &conf.nameservers {
        let _ = writeln!(s, "nameserver {ns}");
    }
    for line in &conf.other_lines {
        let _ = writeln!(s, "{line}");
    }
    s
}

pub fn file_path(state_dir: &Path, container_id: &str) -> PathBuf {
    state_dir
        .join("dns")
        .join(format!("{container_id}.resolv.conf"))
}

pub fn write_file(path: &Path, text: &str) -> Result<(), DnsError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| DnsError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| DnsError::Write {
            path: path.to_path_buf(),
            source,
        })
}

pub fn remove_file(path: &Path) -> Result<(), DnsError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DnsError::Remove {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_loopback_servers_are_dropped() {
        let c = from_host(
            "# comment\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 198.51.100.53\n\
             nameserver 2001:db8::53\nnameserver fe80::1%eth0\nsearch example.com\noptions edns0\n",
        );
        assert_eq!(
            c.nameservers,
            vec![
                "198.51.100.53".parse::<IpAddr>().unwrap(),
                "2001:db8::53".parse().unwrap()
            ]
        );
        assert_eq!(c.other_lines, vec!["search example.com", "options edns0"]);
        let text = render(&c);
        assert!(
            text.contains(
                "nameserver 198.51.100.53\nnameserver 2001:db8::53\nsearch example.com\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn no_server_still_renders_a_file() {
        let text = render(&from_host("nameserver 127.0.0.1\n"));
        assert!(!text.contains("nameserver "), "{text}");
        assert!(text.starts_with("# written by husk"));
    }

    #[test]
    fn explicit_servers() {
        let text = render(&explicit(&["1.1.1.1".parse().unwrap()]));
        assert_eq!(text, "# written by husk\nnameserver 1.1.1.1\n");
    }
}
