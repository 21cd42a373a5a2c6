//! Process capabilities (`process.capabilities`).
//!
//! `plan` turns the spec's five sets into kernel capability sets, skipping (with a warning)
//! any capability the running kernel does not know, as runc does. Init then calls
//! `drop_bounding` while it is still root with every capability (dropping from the bounding
//! set needs CAP_SETPCAP), switches user with PR_SET_KEEPCAPS set, and calls `apply`.

use caps::errors::CapsError;
use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{Capabilities, Capability as OciCapability, LinuxCapabilities};

#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    #[error("effective capability {cap} is not in the permitted set")]
    EffectiveNotPermitted { cap: Capability },
    #[error("read the bounding capability set")]
    ReadBounding {
        #[source]
        source: CapsError,
    },
    #[error("drop {cap} from the bounding set")]
    DropBounding {
        cap: Capability,
        #[source]
        source: CapsError,
    },
    #[error(
        "capset effective={effective:#x} permitted={permitted:#x} inheritable={inheritable:#x}"
    )]
    SetCapabilities {
        effective: u64,
        permitted: u64,
        inheritable: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("clear the ambient capability set")]
    ClearAmbient {
        #[source]
        source: CapsError,
    },
    #[error("raise ambient capability {cap}")]
    RaiseAmbient {
        cap: Capability,
        #[source]
        source: CapsError,
    },
}

/// The five capability sets of the container process, restricted to what the kernel knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilityPlan {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

/// Plans the capability sets for the running kernel. An absent set means an empty set.
pub fn plan(spec: &LinuxCapabilities) -> Result<CapabilityPlan, CapabilityError> {
    plan_for_kernel(spec, &caps::runtime::thread_all_supported())
}

/// Names of every capability the running kernel supports, lowest number first
/// (for `husk features`).
pub fn all_known() -> Vec<String> {
    let mut known: Vec<Capability> = caps::runtime::thread_all_supported().into_iter().collect();
    known.sort_by_key(|c| c.index());
    known.into_iter().map(|c| c.to_string()).collect()
}

/// `plan` against an explicit set of kernel-supported capabilities.
fn plan_for_kernel(
    spec: &LinuxCapabilities,
    supported: &CapsHashSet,
) -> Result<CapabilityPlan, CapabilityError> {
    let resolve = |set_name: &str, set: &Option<Capabilities>| -> CapsHashSet {
        let mut out = CapsHashSet::new();
        for oci in set.iter().flatten() {
            let cap = to_kernel(*oci);
            if supported.contains(&cap) {
                out.insert(cap);
            } else {
                log::warn!(
                    "capability {cap} ({set_name}) is unknown to the running kernel; skipped"
                );
            }
        }
        out
    };
    let mut plan = CapabilityPlan {
        bounding: resolve("bounding", spec.bounding()),
        effective: resolve("effective", spec.effective()),
        permitted: resolve("permitted", spec.permitted()),
        inheritable: resolve("inheritable", spec.inheritable()),
        ambient: resolve("ambient", spec.ambient()),
    };
    // The kernel refuses an effective set that is not a subset of the permitted one; say so
    // before any process is created.
    if let Some(cap) = lowest(plan.effective.difference(&plan.permitted).copied()) {
        return Err(CapabilityError::EffectiveNotPermitted { cap });
    }
    // Raising an ambient capability needs it permitted and inheritable; like runc, warn and
    // leave it out rather than fail.
    let (permitted, inheritable) = (&plan.permitted, &plan.inheritable);
    plan.ambient.retain(|cap| {
        let ok = permitted.contains(cap) && inheritable.contains(cap);
        if !ok {
            log::debug!("ambient capability {cap} is not both permitted and inheritable; skipped");
        }
        ok
    });
    Ok(plan)
}

fn lowest(caps: impl Iterator<Item = Capability>) -> Option<Capability> {
    caps.min_by_key(|c| c.index())
}

/// Drops from the calling thread's bounding set every capability not in `plan.bounding`.
/// Call while still root with CAP_SETPCAP, before changing user.
pub fn drop_bounding(plan: &CapabilityPlan) -> Result<(), CapabilityError> {
    let current = caps::read(None, CapSet::Bounding)
        .map_err(|source| CapabilityError::ReadBounding { source })?;
    let mut to_drop: Vec<Capability> = current.difference(&plan.bounding).copied().collect();
    to_drop.sort_by_key(|c| c.index());
    for cap in to_drop {
        caps::drop(None, CapSet::Bounding, cap)
            .map_err(|source| CapabilityError::DropBounding { cap, source })?;
    }
    Ok(())
}

/// Sets the effective, permitted and inheritable sets of the calling thread, then the
/// ambient set. Call after setuid/setgid (with PR_SET_KEEPCAPS set before setuid, so the
/// permitted set survives the switch).
///
/// The three base sets go to the kernel in one capset(2) call: setting them one at a time
/// can fail depending on the order (lowering permitted first fails while effective still
/// holds more; raising effective after setuid needs permitted to be kept).
pub fn apply(plan: &CapabilityPlan) -> Result<(), CapabilityError> {
    let (effective, permitted, inheritable) = (
        mask(&plan.effective),
        mask(&plan.permitted),
        mask(&plan.inheritable),
    );
    capset(effective, permitted, inheritable).map_err(|source| {
        CapabilityError::SetCapabilities {
            effective,
            permitted,
            inheritable,
            source,
        }
    })?;
    // Ambient last: raising needs the capability permitted and inheritable already.
    caps::clear(None, CapSet::Ambient)
        .map_err(|source| CapabilityError::ClearAmbient { source })?;
    let mut ambient: Vec<Capability> = plan.ambient.iter().copied().collect();
    ambient.sort_by_key(|c| c.index());
    for cap in ambient {
        caps::raise(None, CapSet::Ambient, cap)
            .map_err(|source| CapabilityError::RaiseAmbient { cap, source })?;
    }
    Ok(())
}

fn mask(set: &CapsHashSet) -> u64 {
    set.iter().fold(0, |acc, cap| acc | cap.bitmask())
}

/// `struct __user_cap_header_struct` from linux/capability.h.
#[repr(C)]
struct CapUserHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct` from linux/capability.h.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapUserData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets passed as two 32-bit halves.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// capset(2) on the calling thread with all three base sets at once.
fn capset(effective: u64, permitted: u64, inheritable: u64) -> std::io::Result<()> {
    let mut header = CapUserHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |set: u64, high: bool| if high { (set >> 32) as u32 } else { set as u32 };
    let data = [false, true].map(|high| CapUserData {
        effective: half(effective, high),
        permitted: half(permitted, high),
        inheritable: half(inheritable, high),
    });
    // SAFETY: header and data are valid repr(C) kernel structures that outlive the call;
    // version 3 tells the kernel to read exactly two data elements, which is `data`'s length.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapUserHeader,
            data.as_ptr(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The kernel capability for an OCI capability name.
fn to_kernel(cap: OciCapability) -> Capability {
    match cap {
        OciCapability::AuditControl => Capability::CAP_AUDIT_CONTROL,
        OciCapability::AuditRead => Capability::CAP_AUDIT_READ,
        OciCapability::AuditWrite => Capability::CAP_AUDIT_WRITE,
        OciCapability::BlockSuspend => Capability::CAP_BLOCK_SUSPEND,
        OciCapability::Bpf => Capability::CAP_BPF,
        OciCapability::CheckpointRestore => Capability::CAP_CHECKPOINT_RESTORE,
        OciCapability::Chown => Capability::CAP_CHOWN,
        OciCapability::DacOverride => Capability::CAP_DAC_OVERRIDE,
        OciCapability::DacReadSearch => Capability::CAP_DAC_READ_SEARCH,
        OciCapability::Fowner => Capability::CAP_FOWNER,
        OciCapability::Fsetid => Capability::CAP_FSETID,
        OciCapability::IpcLock => Capability::CAP_IPC_LOCK,
        OciCapability::IpcOwner => Capability::CAP_IPC_OWNER,
        OciCapability::Kill => Capability::CAP_KILL,
        OciCapability::Lease => Capability::CAP_LEASE,
        OciCapability::LinuxImmutable => Capability::CAP_LINUX_IMMUTABLE,
        OciCapability::MacAdmin => Capability::CAP_MAC_ADMIN,
        OciCapability::MacOverride => Capability::CAP_MAC_OVERRIDE,
        OciCapability::Mknod => Capability::CAP_MKNOD,
        OciCapability::NetAdmin => Capability::CAP_NET_ADMIN,
        OciCapability::NetBindService => Capability::CAP_NET_BIND_SERVICE,
        OciCapability::NetBroadcast => Capability::CAP_NET_BROADCAST,
        OciCapability::NetRaw => Capability::CAP_NET_RAW,
        OciCapability::Perfmon => Capability::CAP_PERFMON,
        OciCapability::Setgid => Capability::CAP_SETGID,
        OciCapability::Setfcap => Capability::CAP_SETFCAP,
        OciCapability::Setpcap => Capability::CAP_SETPCAP,
        OciCapability::Setuid => Capability::CAP_SETUID,
        OciCapability::SysAdmin => Capability::CAP_SYS_ADMIN,
        OciCapability::SysBoot => Capability::CAP_SYS_BOOT,
        OciCapability::SysChroot => Capability::CAP_SYS_CHROOT,
        OciCapability::SysModule => Capability::CAP_SYS_MODULE,
        OciCapability::SysNice => Capability::CAP_SYS_NICE,
        OciCapability::SysPacct => Capability::CAP_SYS_PACCT,
        OciCapability::SysPtrace => Capability::CAP_SYS_PTRACE,
        OciCapability::SysRawio => Capability::CAP_SYS_RAWIO,
        OciCapability::SysResource => Capability::CAP_SYS_RESOURCE,
        OciCapability::SysTime => Capability::CAP_SYS_TIME,
        OciCapability::SysTtyConfig => Capability::CAP_SYS_TTY_CONFIG,
        OciCapability::Syslog => Capability::CAP_SYSLOG,
        OciCapability::WakeAlarm => Capability::CAP_WAKE_ALARM,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::linux::seccomp::forked::in_child;
    use oci_spec::runtime::LinuxCapabilitiesBuilder;

    fn oci(names: &[&str]) -> Capabilities {
        names
            .iter()
            .map(|n| serde_json::from_str::<OciCapability>(&format!("\"{n}\"")).unwrap())
            .collect()
    }

    fn kernel(names: &[&str]) -> CapsHashSet {
        names
            .iter()
            .map(|n| n.parse::<Capability>().unwrap())
            .collect()
    }

    fn spec(b: &[&str], e: &[&str], p: &[&str], i: &[&str], a: &[&str]) -> LinuxCapabilities {
        LinuxCapabilitiesBuilder::default()
            .bounding(oci(b))
            .effective(oci(e))
            .permitted(oci(p))
            .inheritable(oci(i))
            .ambient(oci(a))
            .build()
            .unwrap()
    }

    #[test]
    fn every_oci_capability_maps_to_the_kernel_capability_of_the_same_name() {
        for cap in caps::all() {
            let oci_cap: OciCapability = serde_json::from_str(&format!("\"{cap}\"")).unwrap();
            assert_eq!(to_kernel(oci_cap), cap);
        }
    }

    #[test]
    fn plan_copies_the_five_sets() {
        let s = spec(
            &["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            &["CAP_KILL"],
            &["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            &["CAP_NET_BIND_SERVICE"],
            &["CAP_NET_BIND_SERVICE"],
        );
        let plan = plan_for_kernel(&s, &caps::all()).unwrap();
        assert_eq!(
            plan.bounding,
            kernel(&["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"])
        );
        assert_eq!(plan.effective, kernel(&["CAP_KILL"]));
        assert_eq!(
            plan.permitted,
            kernel(&["CAP_KILL", "CAP_NET_BIND_SERVICE"])
        );
        assert_eq!(plan.inheritable, kernel(&["CAP_NET_BIND_SERVICE"]));
        assert_eq!(plan.ambient, kernel(&["CAP_NET_BIND_SERVICE"]));
    }

    #[test]
    fn absent_sets_are_empty() {
        let s = LinuxCapabilitiesBuilder::default().build().unwrap();
        // The builder's defaults fill the sets; clear them to model a config that omits them.
        let mut s = s;
        s.set_bounding(None);
        s.set_effective(None);
        s.set_permitted(None);
        s.set_inheritable(None);
        s.set_ambient(None);
        assert_eq!(
            plan_for_kernel(&s, &caps::all()).unwrap(),
            CapabilityPlan::default()
        );
    }

    #[test]
    fn capabilities_unknown_to_the_kernel_are_skipped() {
        let s = spec(
            &["CAP_CHOWN", "CAP_CHECKPOINT_RESTORE"],
            &["CAP_CHECKPOINT_RESTORE"],
            &["CAP_CHOWN", "CAP_CHECKPOINT_RESTORE"],
            &[],
            &[],
        );
        let mut old_kernel = caps::all();
        old_kernel.remove(&Capability::CAP_CHECKPOINT_RESTORE);
        let plan = plan_for_kernel(&s, &old_kernel).unwrap();
        assert_eq!(plan.bounding, kernel(&["CAP_CHOWN"]));
        assert!(plan.effective.is_empty());
        assert_eq!(plan.permitted, kernel(&["CAP_CHOWN"]));
    }

    #[test]
    fn effective_outside_permitted_is_an_error() {
        let s = spec(&[], &["CAP_KILL", "CAP_CHOWN"], &["CAP_KILL"], &[], &[]);
        let err = plan_for_kernel(&s, &caps::all()).unwrap_err();
        assert!(matches!(
            err,
            CapabilityError::EffectiveNotPermitted {
                cap: Capability::CAP_CHOWN
            }
        ));
        assert_eq!(
            err.to_string(),
            "effective capability CAP_CHOWN is not in the permitted set"
        );
    }

    #[test]
    fn ambient_needs_permitted_and_inheritable() {
        let s = spec(
            &[],
            &[],
            &["CAP_KILL", "CAP_CHOWN"],
            &["CAP_KILL", "CAP_NET_RAW"],
            &["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"],
        );
        let plan = plan_for_kernel(&s, &caps::all()).unwrap();
        assert_eq!(plan.ambient, kernel(&["CAP_KILL"]));
    }

    #[test]
    fn all_known_lists_the_kernels_capabilities_in_order() {
        let known = all_known();
        let last_cap: usize = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(known.len(), last_cap + 1);
        assert_eq!(known[0], "CAP_CHOWN");
        assert!(known.contains(&"CAP_SYS_ADMIN".to_string()));
    }

    #[test]
    fn mask_sets_the_capability_bits() {
        assert_eq!(mask(&kernel(&["CAP_CHOWN", "CAP_KILL"])), 1 | 1 << 5);
        assert_eq!(mask(&kernel(&["CAP_CHECKPOINT_RESTORE"])), 1 << 40);
    }

    /// The hexadecimal capability masks of the calling process from /proc/self/status.
    fn status_masks() -> Result<std::collections::HashMap<String, u64>, String> {
        let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
        status
            .lines()
            .filter(|l| l.starts_with("Cap"))
            .map(|l| {
                let (key, value) = l.split_once(':').ok_or("bad status line")?;
                let value = u64::from_str_radix(value.trim(), 16).map_err(|e| e.to_string())?;
                Ok((key.to_string(), value))
            })
            .collect()
    }

    fn expect_masks(want: &[(&str, u64)]) -> Result<(), String> {
        let got = status_masks()?;
        for (key, value) in want {
            if got.get(*key) != Some(value) {
                return Err(format!("{key}: got {:#x?}, want {value:#x}", got.get(*key)));
            }
        }
        Ok(())
    }

    #[test]
    fn apply_as_root_in_a_child() {
        let s = spec(
            &[
                "CAP_CHOWN",
                "CAP_KILL",
                "CAP_NET_BIND_SERVICE",
                "CAP_CHECKPOINT_RESTORE",
            ],
            &["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            &["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
            &["CAP_NET_BIND_SERVICE"],
            &["CAP_NET_BIND_SERVICE"],
        );
        let plan = plan(&s).unwrap();
        in_child(|| {
            drop_bounding(&plan).map_err(|e| e.to_string())?;
            apply(&plan).map_err(|e| e.to_string())?;
            let (chown, kill, bind, ckpt) = (1u64 << 0, 1u64 << 5, 1u64 << 10, 1u64 << 40);
            expect_masks(&[
                ("CapBnd", chown | kill | bind | ckpt),
                ("CapEff", kill | bind),
                ("CapPrm", kill | bind | chown),
                ("CapInh", bind),
                ("CapAmb", bind),
            ])
        })
        .unwrap();
    }

    #[test]
    fn apply_after_setuid_with_keepcaps_in_a_child() {
        let s = spec(
            &["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            &["CAP_NET_BIND_SERVICE"],
            &["CAP_NET_BIND_SERVICE", "CAP_KILL"],
            &[],
            &[],
        );
        let plan = plan(&s).unwrap();
        in_child(|| {
            drop_bounding(&plan).map_err(|e| e.to_string())?;
            caps::securebits::set_keepcaps(true).map_err(|e| e.to_string())?;
            let uid = nix::unistd::Uid::from_raw(65534);
            nix::unistd::setresuid(uid, uid, uid).map_err(|e| e.to_string())?;
            // setuid away from 0 clears the effective set; permitted survives thanks to keepcaps.
            expect_masks(&[("CapEff", 0)])?;
            apply(&plan).map_err(|e| e.to_string())?;
            let (kill, bind) = (1u64 << 5, 1u64 << 10);
            expect_masks(&[
                ("CapBnd", kill | bind),
                ("CapEff", bind),
                ("CapPrm", kill | bind),
                ("CapInh", 0),
                ("CapAmb", 0),
            ])
        })
        .unwrap();
    }

    #[test]
    fn apply_cannot_raise_beyond_the_current_permitted_set() {
        let s = spec(&[], &[], &["CAP_SYS_ADMIN"], &[], &[]);
        let plan = plan(&s).unwrap();
        in_child(|| {
            capset(0, 1 << 5, 0).map_err(|e| e.to_string())?; // keep only CAP_KILL
            match apply(&plan) {
                Err(err @ CapabilityError::SetCapabilities { .. }) => {
                    let want = "capset effective=0x0 permitted=0x200000 inheritable=0x0";
                    if err.to_string() == want {
                        Ok(())
                    } else {
                        Err(format!("message {err}"))
                    }
                }
                other => Err(format!("unexpected result {other:?}")),
            }
        })
        .unwrap();
    }
}
