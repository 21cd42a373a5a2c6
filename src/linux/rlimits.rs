//! POSIX resource limits (`process.rlimits`): validate the list once, then `setrlimit` each.
//!
//! Planning is pure: it maps each OCI type to its kernel resource, checks `soft <= hard` and
//! rejects a type listed twice. `apply` runs in the container's init; it changes the whole
//! process, so it must not run in the runtime itself.

use nix::errno::Errno;
use nix::sys::resource::{Resource, setrlimit};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

#[derive(Debug, thiserror::Error)]
pub enum RlimitError {
    #[error("rlimit {name}: soft limit {soft} is above the hard limit {hard}")]
    SoftAboveHard {
        name: &'static str,
        soft: u64,
        hard: u64,
    },
    #[error("rlimit {name} is listed more than once")]
    Duplicate { name: &'static str },
    #[error("setrlimit {name} soft={soft} hard={hard}")]
    Set {
        name: &'static str,
        soft: u64,
        hard: u64,
        #[source]
        source: Errno,
    },
}

/// One validated limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedRlimit {
    pub name: &'static str,
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

/// The limits to set, in the order the spec lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RlimitPlan(Vec<PlannedRlimit>);

impl RlimitPlan {
    pub fn entries(&self) -> &[PlannedRlimit] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Every rlimit type name husk accepts, as written in config.json (for `husk features`).
pub fn known_names() -> &'static [&'static str] {
    &[
        "RLIMIT_AS",
        "RLIMIT_CORE",
        "RLIMIT_CPU",
        "RLIMIT_DATA",
        "RLIMIT_FSIZE",
        "RLIMIT_LOCKS",
        "RLIMIT_MEMLOCK",
        "RLIMIT_MSGQUEUE",
        "RLIMIT_NICE",
        "RLIMIT_NOFILE",
        "RLIMIT_NPROC",
        "RLIMIT_RSS",
        "RLIMIT_RTPRIO",
        "RLIMIT_RTTIME",
        "RLIMIT_SIGPENDING",
        "RLIMIT_STACK",
    ]
}

/// The kernel resource and its name for an OCI rlimit type.
fn resource_of(typ: PosixRlimitType) -> (&'static str, Resource) {
    match typ {
        PosixRlimitType::RlimitAs => ("RLIMIT_AS", Resource::RLIMIT_AS),
        PosixRlimitType::RlimitCore => ("RLIMIT_CORE", Resource::RLIMIT_CORE),
        PosixRlimitType::RlimitCpu => ("RLIMIT_CPU", Resource::RLIMIT_CPU),
        PosixRlimitType::RlimitData => ("RLIMIT_DATA", Resource::RLIMIT_DATA),
        PosixRlimitType::RlimitFsize => ("RLIMIT_FSIZE", Resource::RLIMIT_FSIZE),
        PosixRlimitType::RlimitLocks => ("RLIMIT_LOCKS", Resource::RLIMIT_LOCKS),
        PosixRlimitType::RlimitMemlock => ("RLIMIT_MEMLOCK", Resource::RLIMIT_MEMLOCK),
        PosixRlimitType::RlimitMsgqueue => ("RLIMIT_MSGQUEUE", Resource::RLIMIT_MSGQUEUE),
        PosixRlimitType::RlimitNice => ("RLIMIT_NICE", Resource::RLIMIT_NICE),
        PosixRlimitType::RlimitNofile => ("RLIMIT_NOFILE", Resource::RLIMIT_NOFILE),
        PosixRlimitType::RlimitNproc => ("RLIMIT_NPROC", Resource::RLIMIT_NPROC),
        PosixRlimitType::RlimitRss => ("RLIMIT_RSS", Resource::RLIMIT_RSS),
        PosixRlimitType::RlimitRtprio => ("RLIMIT_RTPRIO", Resource::RLIMIT_RTPRIO),
        PosixRlimitType::RlimitRttime => ("RLIMIT_RTTIME", Resource::RLIMIT_RTTIME),
        PosixRlimitType::RlimitSigpending => ("RLIMIT_SIGPENDING", Resource::RLIMIT_SIGPENDING),
        PosixRlimitType::RlimitStack => ("RLIMIT_STACK", Resource::RLIMIT_STACK),
    }
}

/// Validates `process.rlimits` and resolves each type to its kernel resource.
pub fn plan(rlimits: &[PosixRlimit]) -> Result<RlimitPlan, RlimitError> {
    let mut planned: Vec<PlannedRlimit> = Vec::with_capacity(rlimits.len());
    for rlimit in rlimits {
        let (name, resource) = resource_of(rlimit.typ());
        let (soft, hard) = (rlimit.soft(), rlimit.hard());
        if soft > hard {
            return Err(RlimitError::SoftAboveHard { name, soft, hard });
        }
        if planned.iter().any(|p| p.resource == resource) {
            return Err(RlimitError::Duplicate { name });
        }
        planned.push(PlannedRlimit {
            name,
            resource,
            soft,
            hard,
        });
    }
    Ok(RlimitPlan(planned))
}

/// Sets every planned limit on the calling process.
pub fn apply(plan: &RlimitPlan) -> Result<(), RlimitError> {
    for p in plan.entries() {
        setrlimit(p.resource, p.soft, p.hard).map_err(|source| RlimitError::Set {
            name: p.name,
            soft: p.soft,
            hard: p.hard,
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::linux::seccomp::forked::in_child;
    use nix::sys::resource::getrlimit;
    use oci_spec::runtime::PosixRlimitBuilder;

    fn rlimit(typ: PosixRlimitType, soft: u64, hard: u64) -> PosixRlimit {
        PosixRlimitBuilder::default()
            .typ(typ)
            .soft(soft)
            .hard(hard)
            .build()
            .unwrap()
    }

    #[test]
    fn plan_keeps_order_and_maps_resources() {
        let plan = plan(&[
            rlimit(PosixRlimitType::RlimitNofile, 1024, 4096),
            rlimit(PosixRlimitType::RlimitCore, 0, 0),
        ])
        .unwrap();
        assert_eq!(
            plan.entries(),
            &[
                PlannedRlimit {
                    name: "RLIMIT_NOFILE",
                    resource: Resource::RLIMIT_NOFILE,
                    soft: 1024,
                    hard: 4096
                },
                PlannedRlimit {
                    name: "RLIMIT_CORE",
                    resource: Resource::RLIMIT_CORE,
                    soft: 0,
                    hard: 0
                },
            ]
        );
    }

    #[test]
    fn plan_of_nothing_is_empty() {
        assert!(plan(&[]).unwrap().is_empty());
    }

    #[test]
    fn plan_rejects_soft_above_hard() {
        let err = plan(&[rlimit(PosixRlimitType::RlimitNproc, 10, 5)]).unwrap_err();
        assert!(matches!(
            err,
            RlimitError::SoftAboveHard {
                name: "RLIMIT_NPROC",
                soft: 10,
                hard: 5
            }
        ));
        assert_eq!(
            err.to_string(),
            "rlimit RLIMIT_NPROC: soft limit 10 is above the hard limit 5"
        );
    }

    #[test]
    fn plan_rejects_duplicates() {
        let err = plan(&[
            rlimit(PosixRlimitType::RlimitNofile, 1, 2),
            rlimit(PosixRlimitType::RlimitCore, 0, 0),
            rlimit(PosixRlimitType::RlimitNofile, 3, 4),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "rlimit RLIMIT_NOFILE is listed more than once"
        );
    }

    #[test]
    fn every_type_maps_to_a_known_name_and_the_spec_spelling() {
        use std::str::FromStr;
        for name in known_names() {
            // oci-spec's own parser must accept each advertised name ...
            let typ: PosixRlimitType = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            // ... and our mapping must give the same name back.
            assert_eq!(resource_of(typ).0, *name);
            assert!(PosixRlimitType::from_str(name).is_ok(), "{name}");
        }
        assert_eq!(known_names().len(), 16);
    }

    #[test]
    fn apply_sets_limits_in_a_child() {
        let plan = plan(&[
            rlimit(PosixRlimitType::RlimitNofile, 512, 1000),
            rlimit(PosixRlimitType::RlimitCore, 0, 4096),
            rlimit(PosixRlimitType::RlimitRttime, 1_000_000, 2_000_000),
        ])
        .unwrap();
        in_child(|| {
            apply(&plan).map_err(|e| e.to_string())?;
            for (resource, want) in [
                (Resource::RLIMIT_NOFILE, (512, 1000)),
                (Resource::RLIMIT_CORE, (0, 4096)),
                (Resource::RLIMIT_RTTIME, (1_000_000, 2_000_000)),
            ] {
                let got = getrlimit(resource).map_err(|e| e.to_string())?;
                if got != want {
                    return Err(format!("{resource:?}: got {got:?}, want {want:?}"));
                }
            }
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn apply_above_the_hard_limit_names_the_limit() {
        // Without CAP_SYS_RESOURCE (root here lacks it; the child drops it to be sure),
        // raising the hard nofile limit fails with EPERM.
        let (_, hard_now) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let too_high = if hard_now < 1_048_576 {
            1_048_576
        } else {
            hard_now + 1
        };
        let plan = plan(&[rlimit(PosixRlimitType::RlimitNofile, too_high, too_high)]).unwrap();
        in_child(move || {
            caps::drop(
                None,
                caps::CapSet::Effective,
                caps::Capability::CAP_SYS_RESOURCE,
            )
            .map_err(|e| e.to_string())?;
            match apply(&plan) {
                Ok(()) => Err("raising the hard nofile limit unexpectedly worked".into()),
                Err(
                    err @ RlimitError::Set {
                        source: Errno::EPERM,
                        ..
                    },
                ) => {
                    let want = format!("setrlimit RLIMIT_NOFILE soft={too_high} hard={too_high}");
                    if err.to_string() == want {
                        Ok(())
                    } else {
                        Err(format!("message {err}"))
                    }
                }
                Err(err) => Err(format!("unexpected error {err:?}")),
            }
        })
        .unwrap();
    }
}
