//! Device access rules (`linux.resources.devices`), validated once and rendered for the
//! cgroup v1 `devices` controller or compiled to eBPF for cgroup v2 (see `bpf_program`).
//!
//! Semantics (both hierarchies): rules are evaluated in order and, for each access bit
//! (read, write, mknod) the request needs, the last rule that matches the device and names
//! that bit decides; nothing matching means deny. A rule of type `a` matches every device
//! whatever its numbers, as in the v1 kernel controller.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::error::CgroupError;

/// Which devices a rule covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    All,
    Char,
    Block,
}

/// Access bits, with the kernel's BPF encoding (`BPF_DEVCG_ACC_*`).
pub const ACCESS_MKNOD: u32 = 1;
pub const ACCESS_READ: u32 = 2;
pub const ACCESS_WRITE: u32 = 4;
pub const ACCESS_ALL: u32 = ACCESS_MKNOD | ACCESS_READ | ACCESS_WRITE;

/// One validated rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: DeviceKind,
    /// `None` = any major.
    pub major: Option<u32>,
    /// `None` = any minor.
    pub minor: Option<u32>,
    /// Bits of [`ACCESS_MKNOD`], [`ACCESS_READ`], [`ACCESS_WRITE`]; never 0.
    pub access: u32,
}

/// Largest device number accepted (the kernel uses 12-bit majors and 20-bit minors; we
/// only need the value to fit a signed 32-bit eBPF immediate).
const MAX_DEVICE_NUMBER: i64 = i32::MAX as i64;

impl DeviceRule {
    pub fn from_oci(rule: &LinuxDeviceCgroup) -> Result<Self, CgroupError> {
        let invalid = |reason: &str| CgroupError::DeviceRule {
            rule: rule.to_string(),
            reason: reason.to_string(),
        };
        let kind = match rule.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => DeviceKind::All,
            LinuxDeviceType::C | LinuxDeviceType::U => DeviceKind::Char,
            LinuxDeviceType::B => DeviceKind::Block,
            LinuxDeviceType::P => {
                return Err(invalid(
                    "type \"p\" (fifo) is not a device the cgroup device controller can govern",
                ));
            }
        };
        let number = |value: Option<i64>, what: &str| -> Result<Option<u32>, CgroupError> {
            match value {
                None => Ok(None),
                Some(n) if n < 0 => Ok(None),
                Some(n) if n > MAX_DEVICE_NUMBER => {
                    Err(invalid(&format!("the {what} number is too large")))
                }
                Some(n) => Ok(u32::try_from(n).ok()),
            }
        };
        let major = number(rule.major(), "major")?;
        let minor = number(rule.minor(), "minor")?;
        let access = parse_access(rule.access().as_deref().unwrap_or(""))
            .ok_or_else(|| invalid("access may only contain the letters r, w and m"))?;
        Ok(Self {
            allow: rule.allow(),
            kind,
            major,
            minor,
            access,
        })
    }

    /// The line the v1 `devices.allow`/`devices.deny` files take: `c 1:3 rwm`.
    pub fn v1_line(&self) -> String {
        let kind = match self.kind {
            DeviceKind::All => "a",
            DeviceKind::Char => "c",
            DeviceKind::Block => "b",
        };
        let number = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        let mut access = String::new();
        for (bit, letter) in [(ACCESS_READ, 'r'), (ACCESS_WRITE, 'w'), (ACCESS_MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(letter);
            }
        }
        format!(
            "{kind} {}:{} {access}",
            number(self.major),
            number(self.minor)
        )
    }

    /// Whether this rule covers `kind major:minor` for the access `bit`.
    pub fn matches(&self, kind: DeviceKind, major: u32, minor: u32, bit: u32) -> bool {
        if self.access & bit == 0 {
            return false;
        }
        if self.kind == DeviceKind::All {
            return true;
        }
        self.kind == kind
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
    }
}

/// `rwm` letters -> bits. Empty means all access (as runc does).
fn parse_access(access: &str) -> Option<u32> {
    if access.is_empty() {
        return Some(ACCESS_ALL);
    }
    access.chars().try_fold(0, |bits, c| match c {
        'r' => Some(bits | ACCESS_READ),
        'w' => Some(bits | ACCESS_WRITE),
        'm' => Some(bits | ACCESS_MKNOD),
        _ => None,
    })
}

/// Validates all rules of a spec.
pub fn parse_rules(rules: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>, CgroupError> {
    rules.iter().map(DeviceRule::from_oci).collect()
}

/// The reference evaluation of the rules (what the kernel ends up enforcing): every
/// requested access bit must be allowed by the last rule that matches it.
pub fn allowed(
    rules: &[DeviceRule],
    kind: DeviceKind,
    major: u32,
    minor: u32,
    access: u32,
) -> bool {
    [ACCESS_MKNOD, ACCESS_READ, ACCESS_WRITE]
        .into_iter()
        .filter(|bit| access & bit != 0)
        .all(|bit| {
            rules
                .iter()
                .rev()
                .find(|r| r.matches(kind, major, minor, bit))
                .is_some_and(|r| r.allow)
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
pub(crate) mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    pub(crate) fn oci(
        allow: bool,
        typ: Option<LinuxDeviceType>,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .access(access.to_string());
        if let Some(t) = typ {
            b = b.typ(t);
        }
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    #[test]
    fn parses_and_renders_v1_lines() {
        let rule = DeviceRule::from_oci(&oci(
            true,
            Some(LinuxDeviceType::C),
            Some(1),
            Some(3),
            "rwm",
        ))
        .unwrap();
        assert_eq!(rule.v1_line(), "c 1:3 rwm");
        let rule = DeviceRule::from_oci(&oci(false, None, None, None, "")).unwrap();
        assert_eq!(rule.v1_line(), "a *:* rwm");
        let rule = DeviceRule::from_oci(&oci(
            true,
            Some(LinuxDeviceType::B),
            Some(8),
            Some(-1),
            "mr",
        ))
        .unwrap();
        assert_eq!(rule.v1_line(), "b 8:* rm");
        let rule =
            DeviceRule::from_oci(&oci(true, Some(LinuxDeviceType::U), Some(5), None, "w")).unwrap();
        assert_eq!(rule.v1_line(), "c 5:* w");
    }

    #[test]
    fn rejects_bad_rules() {
        assert!(
            DeviceRule::from_oci(&oci(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rx"))
                .is_err()
        );
        assert!(
            DeviceRule::from_oci(&oci(true, Some(LinuxDeviceType::P), None, None, "r")).is_err()
        );
        assert!(
            DeviceRule::from_oci(&oci(
                true,
                Some(LinuxDeviceType::C),
                Some(1 << 40),
                None,
                "r"
            ))
            .is_err()
        );
    }

    #[test]
    fn last_matching_rule_wins_per_access_bit() {
        let rules = parse_rules(&[
            oci(false, None, None, None, "rwm"),
            oci(true, Some(LinuxDeviceType::C), Some(1), None, "rw"),
            oci(false, Some(LinuxDeviceType::C), Some(1), Some(5), "w"),
        ])
        .unwrap();
        let c = DeviceKind::Char;
        assert!(allowed(&rules, c, 1, 3, ACCESS_READ | ACCESS_WRITE));
        assert!(!allowed(&rules, c, 1, 3, ACCESS_MKNOD));
        assert!(allowed(&rules, c, 1, 5, ACCESS_READ));
        assert!(!allowed(&rules, c, 1, 5, ACCESS_READ | ACCESS_WRITE));
        assert!(!allowed(&rules, DeviceKind::Block, 1, 3, ACCESS_READ));
        assert!(!allowed(&[], c, 1, 3, ACCESS_READ));
        // Split grants add up, as with the v1 controller.
        let split = parse_rules(&[
            oci(true, Some(LinuxDeviceType::C), Some(1), Some(3), "r"),
            oci(true, Some(LinuxDeviceType::C), Some(1), Some(3), "w"),
        ])
        .unwrap();
        assert!(allowed(&split, c, 1, 3, ACCESS_READ | ACCESS_WRITE));
    }
}
