//! iptables' filter FORWARD chain: when its policy is DROP (Docker sets that, for one), traffic
//! to and from our bridge would die there whatever our own table says, so we insert accept rules
//! for the bridge, and remove them with the bridge's last container. Nothing to do when iptables
//! is not installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    #[error("run {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("iptables {args} failed: {stderr}")]
    Failed { args: String, stderr: String },
}

const COMMENT: &str = "husk bridge";

fn binary() -> Option<PathBuf> {
    [
        "/usr/sbin/iptables",
        "/sbin/iptables",
        "/usr/bin/iptables",
        "/bin/iptables",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

fn run(bin: &Path, args: &[&str]) -> Result<Result<String, String>, IptablesError> {
    let out = Command::new(bin)
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| IptablesError::Spawn {
            program: bin.to_path_buf(),
            source,
        })?;
    if out.status.success() {
        Ok(Ok(String::from_utf8_lossy(&out.stdout).into_owned()))
    } else {
        Ok(Err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

/// The two rules, as `-C`/`-I`/`-D` argument tails.
fn rules(bridge: &str) -> [Vec<&str>; 2] {
    [
        vec![
            "FORWARD",
            "-i",
            bridge,
            "-m",
            "comment",
            "--comment",
            COMMENT,
            "-j",
            "ACCEPT",
        ],
        vec![
            "FORWARD",
            "-o",
            bridge,
            "-m",
            "comment",
            "--comment",
            COMMENT,
            "-j",
            "ACCEPT",
        ],
    ]
}

/// `-P FORWARD DROP` in `iptables -S FORWARD` output.
pub fn policy_is_drop(listing: &str) -> bool {
    listing.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.len() == 3 && w[0] == "-P" && w[1] == "FORWARD" && w[2] == "DROP"
    })
}

/// Insert the accept rules if iptables exists and FORWARD drops by default.
/// Ok(true) when the rules are (now) in place and ours to remove later.
pub fn allow_bridge(bridge: &str) -> Result<bool, IptablesError> {
    let Some(bin) = binary() else {
        return Ok(false);
    };
    let listing = match run(&bin, &["-S", "FORWARD"])? {
        Ok(l) => l,
        // No filter table in this netns (or no kernel support): nothing can drop.
        Err(_) => return Ok(false),
    };
    if !policy_is_drop(&listing) {
        return Ok(false);
    }
    for rule in rules(bridge) {
        let mut check = vec!["-C"];
        check.extend(&rule);
        if run(&bin, &check)?.is_ok() {
            continue;
        }
        let mut insert = vec!["-I"];
        insert.extend(&rule);
        run(&bin, &insert)?.map_err(|stderr| IptablesError::Failed {
            args: insert.join(" "),
            stderr,
        })?;
    }
    Ok(true)
}

/// Remove the accept rules (every copy). Absent is fine.
pub fn forget_bridge(bridge: &str) -> Result<(), IptablesError> {
    let Some(bin) = binary() else { return Ok(()) };
    for rule in rules(bridge) {
        let mut check = vec!["-C"];
        check.extend(&rule);
        let mut delete = vec!["-D"];
        delete.extend(&rule);
        // Bounded: a rule appears at most a few times.
        for _ in 0..16 {
            if run(&bin, &check)?.is_err() {
                break;
            }
            run(&bin, &delete)?.map_err(|stderr| IptablesError::Failed {
                args: delete.join(" "),
                stderr,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_drop_policy() {
        assert!(policy_is_drop("-P FORWARD DROP\n-A FORWARD -j DOCKER\n"));
        assert!(!policy_is_drop("-P FORWARD ACCEPT\n"));
        assert!(!policy_is_drop("-A FORWARD -j DROP\n"));
    }
}
