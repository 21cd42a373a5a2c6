//! Pure conversions between OCI (cgroup v1 flavoured) values and cgroup v2 values.

use super::error::CgroupError;

/// Lowest and highest `cpu.weight` on cgroup v2.
pub const CPU_WEIGHT_MIN: u64 = 1;
pub const CPU_WEIGHT_MAX: u64 = 10_000;
/// Lowest and highest `cpu.shares` the kernel accepts on cgroup v1.
pub const CPU_SHARES_MIN: u64 = 2;
pub const CPU_SHARES_MAX: u64 = 262_144;

/// cgroup v1 `cpu.shares` -> cgroup v2 `cpu.weight`.
///
/// The same curve current runc and crun use: a quadratic in log2(shares) chosen so that
/// the ends (2 -> 1, 262144 -> 10000) and the defaults (1024 -> 100) line up.
/// Returns 0 for 0 ("unset").
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= CPU_SHARES_MIN {
        return CPU_WEIGHT_MIN;
    }
    if shares >= CPU_SHARES_MAX {
        return CPU_WEIGHT_MAX;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    // The float result lies in (1, 10000); the cast cannot truncate meaningfully.
    let weight = 10f64.powf(exponent).ceil() as u64;
    weight.clamp(CPU_WEIGHT_MIN, CPU_WEIGHT_MAX)
}

/// cgroup v2 `cpu.weight` -> the `cpu.shares` that maps to it (inverse of
/// [`cpu_shares_to_weight`], up to rounding). Returns 0 for 0.
pub fn cpu_weight_to_shares(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    if weight <= CPU_WEIGHT_MIN {
        return CPU_SHARES_MIN;
    }
    if weight >= CPU_WEIGHT_MAX {
        return CPU_SHARES_MAX;
    }
    // Solve l^2 + 125 l - 612 (log10(w) + 7/34) = 0 for the positive root.
    let c = 612.0 * ((weight as f64).log10() + 7.0 / 34.0);
    let l = (-125.0 + (125.0f64 * 125.0 + 4.0 * c).sqrt()) / 2.0;
    let shares = 2f64.powf(l).round() as u64;
    shares.clamp(CPU_SHARES_MIN, CPU_SHARES_MAX)
}

/// cgroup v1 `blkio.weight` (10..=1000) -> cgroup v2 `io.weight` (1..=10000), linearly.
pub fn blkio_weight_to_io_weight(weight: u16) -> Result<u64, CgroupError> {
    if !(10..=1000).contains(&weight) {
        return Err(CgroupError::InvalidValue {
            field: "linux.resources.blockIO.weight",
            value: weight.to_string(),
            reason: "must be between 10 and 1000".to_string(),
        });
    }
    Ok(1 + (u64::from(weight) - 10) * 9999 / 990)
}

/// OCI `memory.swap` is memory+swap (v1 `memsw`); cgroup v2 `memory.swap.max` is swap
/// alone. Returns the v2 value (`"max"` or bytes), or `None` to leave it unset.
pub fn memory_swap_to_v2(
    swap: Option<i64>,
    limit: Option<i64>,
) -> Result<Option<String>, CgroupError> {
    let swap = swap.unwrap_or(0);
    let limit = limit.unwrap_or(0);
    let invalid = |reason: &str| CgroupError::InvalidValue {
        field: "linux.resources.memory.swap",
        value: swap.to_string(),
        reason: reason.to_string(),
    };
    // An unlimited memory limit with no swap given means unlimited swap too.
    if swap == -1 || (limit == -1 && swap == 0) {
        return Ok(Some("max".to_string()));
    }
    if swap == 0 {
        return Ok(None);
    }
    if swap < -1 {
        return Err(invalid("must be -1 (unlimited) or a byte count"));
    }
    if limit == 0 {
        return Err(invalid("a swap limit needs a memory limit on cgroup v2"));
    }
    if limit == -1 {
        return Err(invalid(
            "a finite memory+swap limit cannot go with an unlimited memory limit",
        ));
    }
    if swap < limit {
        return Err(CgroupError::InvalidValue {
            field: "linux.resources.memory.swap",
            value: swap.to_string(),
            reason: format!("memory+swap must be at least the memory limit {limit}"),
        });
    }
    Ok(Some((swap - limit).to_string()))
}

/// A memory-style limit for cgroup v2: negative means `max`.
pub fn v2_limit(value: i64) -> String {
    if value < 0 {
        "max".to_string()
    } else {
        value.to_string()
    }
}

/// Validates an OCI hugepage size (`2MB`, `1GB`, `64KB`) and returns it in the spelling
/// the kernel uses in hugetlb file names.
pub fn hugepage_size_name(page_size: &str) -> Result<String, CgroupError> {
    let invalid = |reason: &str| CgroupError::InvalidValue {
        field: "linux.resources.hugepageLimits.pageSize",
        value: page_size.to_string(),
        reason: reason.to_string(),
    };
    let split = page_size
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| invalid("needs a unit: KB, MB or GB"))?;
    let (number, unit) = page_size.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| invalid("must start with a number"))?;
    if number == 0 {
        return Err(invalid("must not be zero"));
    }
    let unit = match unit {
        "KB" | "kB" | "K" | "k" => "KB",
        "MB" | "M" => "MB",
        "GB" | "G" => "GB",
        _ => return Err(invalid("the unit must be KB, MB or GB")),
    };
    Ok(format!("{number}{unit}"))
}

/// `/sys/kernel/mm/hugepages/hugepages-2048kB` directory suffix (in kB) -> `2MB`.
pub fn hugepage_name_from_kb(kb: u64) -> String {
    if kb >= 1 << 20 && kb.is_multiple_of(1 << 20) {
        format!("{}GB", kb >> 20)
    } else if kb >= 1 << 10 && kb.is_multiple_of(1 << 10) {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
    }
}

/// Parses a kernel cpu/node list (`0-3,5,7-8`) into numbers.
pub fn parse_cpu_list(list: &str) -> Option<Vec<u16>> {
    let list = list.trim();
    let mut out = Vec::new();
    if list.is_empty() {
        return Some(out);
    }
    for part in list.split(',') {
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (u16, u16) = (lo.parse().ok()?, hi.parse().ok()?);
                if lo > hi {
                    return None;
                }
                out.extend(lo..=hi);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn shares_to_weight_matches_known_points() {
        assert_eq!(cpu_shares_to_weight(0), 0);
        assert_eq!(cpu_shares_to_weight(1), 1);
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(cpu_shares_to_weight(3), 2);
        assert_eq!(cpu_shares_to_weight(512), 59);
        assert_eq!(cpu_shares_to_weight(1024), 100);
        assert_eq!(cpu_shares_to_weight(2048), 174);
        assert_eq!(cpu_shares_to_weight(262_143), 10_000);
        assert_eq!(cpu_shares_to_weight(262_144), 10_000);
        assert_eq!(cpu_shares_to_weight(u64::MAX), 10_000);
    }

    #[test]
    fn shares_to_weight_is_monotonic() {
        let mut last = 0;
        for shares in (2..=262_144).step_by(97) {
            let weight = cpu_shares_to_weight(shares);
            assert!(weight >= last, "{shares}");
            assert!((1..=10_000).contains(&weight));
            last = weight;
        }
    }

    #[test]
    fn weight_to_shares_inverts() {
        assert_eq!(cpu_weight_to_shares(0), 0);
        assert_eq!(cpu_weight_to_shares(1), 2);
        assert_eq!(cpu_weight_to_shares(100), 1024);
        assert_eq!(cpu_weight_to_shares(10_000), 262_144);
        for weight in [2, 7, 50, 100, 174, 303, 999, 4340, 9999] {
            let back = cpu_shares_to_weight(cpu_weight_to_shares(weight));
            assert!(back.abs_diff(weight) <= 1, "{weight} -> {back}");
        }
    }

    #[test]
    fn blkio_weight_conversion() {
        assert_eq!(blkio_weight_to_io_weight(10).unwrap(), 1);
        assert_eq!(blkio_weight_to_io_weight(500).unwrap(), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000).unwrap(), 10_000);
        assert!(blkio_weight_to_io_weight(5).is_err());
        assert!(blkio_weight_to_io_weight(1001).is_err());
    }

    #[test]
    fn swap_conversion() {
        let mb = 1 << 20;
        assert_eq!(memory_swap_to_v2(None, None).unwrap(), None);
        assert_eq!(memory_swap_to_v2(None, Some(mb)).unwrap(), None);
        assert_eq!(
            memory_swap_to_v2(Some(-1), Some(mb)).unwrap().unwrap(),
            "max"
        );
        assert_eq!(memory_swap_to_v2(None, Some(-1)).unwrap().unwrap(), "max");
        assert_eq!(
            memory_swap_to_v2(Some(3 * mb), Some(mb)).unwrap().unwrap(),
            (2 * mb).to_string()
        );
        assert_eq!(memory_swap_to_v2(Some(mb), Some(mb)).unwrap().unwrap(), "0");
        assert!(memory_swap_to_v2(Some(mb), None).is_err());
        assert!(memory_swap_to_v2(Some(mb), Some(2 * mb)).is_err());
        assert!(memory_swap_to_v2(Some(mb), Some(-1)).is_err());
        assert!(memory_swap_to_v2(Some(-5), Some(mb)).is_err());
    }

    #[test]
    fn hugepage_names() {
        assert_eq!(hugepage_size_name("2MB").unwrap(), "2MB");
        assert_eq!(hugepage_size_name("1GB").unwrap(), "1GB");
        assert_eq!(hugepage_size_name("64kB").unwrap(), "64KB");
        for bad in ["", "MB", "2", "2TB", "0MB", "2 MB", "../2MB"] {
            assert!(hugepage_size_name(bad).is_err(), "{bad}");
        }
        assert_eq!(hugepage_name_from_kb(2048), "2MB");
        assert_eq!(hugepage_name_from_kb(1_048_576), "1GB");
        assert_eq!(hugepage_name_from_kb(64), "64KB");
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,5\n").unwrap(), [0, 1, 2, 3, 5]);
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<u16>::new());
        assert!(parse_cpu_list("3-1").is_none());
        assert!(parse_cpu_list("a").is_none());
    }
}
