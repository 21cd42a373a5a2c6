//! Reading cgroup v2 statistics into [`Stats`]. Files of controllers not enabled for the
//! cgroup are absent and leave their fields at zero.

use std::path::Path;

use crate::cgroups::convert::parse_cpu_list;
use crate::cgroups::error::CgroupError;
use crate::cgroups::files::{self, parse_error, read_flat_keyed, read_optional, read_u64_optional};
use crate::cgroups::stats::{BlkioEntry, Hugetlb, MemoryEntry, Stats, parse_psi};

fn psi(dir: &Path, file: &str) -> Result<Option<crate::cgroups::stats::PsiStats>, CgroupError> {
    match read_optional(dir, file)? {
        None => Ok(None),
        Some(text) => parse_psi(&text)
            .map(Some)
            .ok_or_else(|| parse_error(dir, file, &text)),
    }
}

/// Everything, from the files present in `dir`.
pub(crate) fn read_all(dir: &Path, hugepage_sizes: &[String]) -> Result<Stats, CgroupError> {
    let mut stats = Stats::default();
    cpu(dir, &mut stats)?;
    memory(dir, &mut stats)?;
    pids(dir, &mut stats)?;
    io(dir, &mut stats)?;
    hugetlb(dir, hugepage_sizes, &mut stats)?;
    cpuset(dir, &mut stats)?;
    Ok(stats)
}

/// `cpu.stat` is a core file (present without the cpu controller); times are in µs.
fn cpu(dir: &Path, stats: &mut Stats) -> Result<(), CgroupError> {
    let stat = read_flat_keyed(dir, "cpu.stat")?;
    let micros = |key: &str| stat.get(key).copied().unwrap_or(0).saturating_mul(1000);
    stats.cpu.usage.total = micros("usage_usec");
    stats.cpu.usage.user = micros("user_usec");
    stats.cpu.usage.kernel = micros("system_usec");
    stats.cpu.throttling.periods = stat.get("nr_periods").copied().unwrap_or(0);
    stats.cpu.throttling.throttled_periods = stat.get("nr_throttled").copied().unwrap_or(0);
    stats.cpu.throttling.throttled_time = micros("throttled_usec");
    stats.cpu.psi = psi(dir, "cpu.pressure")?;
    Ok(())
}

fn memory(dir: &Path, stats: &mut Stats) -> Result<(), CgroupError> {
    let Some(usage) = read_u64_optional(dir, "memory.current")? else {
        stats.memory.psi = psi(dir, "memory.pressure")?;
        return Ok(());
    };
    let events = read_flat_keyed(dir, "memory.events")?;
    let memory = &mut stats.memory;
    memory.usage = MemoryEntry {
        limit: read_u64_optional(dir, "memory.max")?.unwrap_or(u64::MAX),
        usage,
        max: read_u64_optional(dir, "memory.peak")?.unwrap_or(0),
        failcnt: events.get("max").copied().unwrap_or(0),
    };
    // cgroup v1 reports memory+swap; report the same sums so both hierarchies read alike.
    if let Some(swap) = read_u64_optional(dir, "memory.swap.current")? {
        let swap_limit = read_u64_optional(dir, "memory.swap.max")?.unwrap_or(u64::MAX);
        let swap_events = read_flat_keyed(dir, "memory.swap.events")?;
        memory.swap = MemoryEntry {
            limit: if swap_limit == u64::MAX {
                u64::MAX
            } else {
                swap_limit.saturating_add(memory.usage.limit)
            },
            usage: swap.saturating_add(usage),
            max: 0,
            failcnt: swap_events.get("max").copied().unwrap_or(0),
        };
    }
    memory.raw = read_flat_keyed(dir, "memory.stat")?;
    memory.cache = memory.raw.get("file").copied().unwrap_or(0);
    memory.psi = psi(dir, "memory.pressure")?;
    Ok(())
}

fn pids(dir: &Path, stats: &mut Stats) -> Result<(), CgroupError> {
    stats.pids.current = read_u64_optional(dir, "pids.current")?.unwrap_or(0);
    stats.pids.limit = match read_u64_optional(dir, "pids.max")? {
        Some(u64::MAX) | None => 0,
        Some(limit) => limit,
    };
    Ok(())
}

/// `io.stat`: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0` per device.
pub(crate) fn parse_io_stat(text: &str) -> Option<(Vec<BlkioEntry>, Vec<BlkioEntry>)> {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let (major, minor) = words.next()?.split_once(':')?;
        let (major, minor): (u64, u64) = (major.parse().ok()?, minor.parse().ok()?);
        for word in words {
            let (key, value) = word.split_once('=')?;
            let (target, op) = match key {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "dbytes" => (&mut bytes, "Discard"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                "dios" => (&mut ios, "Discard"),
                _ => continue,
            };
            target.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value: value.parse().ok()?,
            });
        }
    }
    Some((bytes, ios))
}

fn io(dir: &Path, stats: &mut Stats) -> Result<(), CgroupError> {
    if let Some(text) = read_optional(dir, "io.stat")? {
        let (bytes, ios) =
            parse_io_stat(&text).ok_or_else(|| parse_error(dir, "io.stat", &text))?;
        stats.blkio.io_service_bytes_recursive = bytes;
        stats.blkio.io_serviced_recursive = ios;
    }
    stats.blkio.psi = psi(dir, "io.pressure")?;
    Ok(())
}

fn hugetlb(dir: &Path, sizes: &[String], stats: &mut Stats) -> Result<(), CgroupError> {
    for size in sizes {
        let Some(usage) = read_u64_optional(dir, &format!("hugetlb.{size}.current"))? else {
            continue;
        };
        let events = read_flat_keyed(dir, &format!("hugetlb.{size}.events"))?;
        stats.hugetlb.insert(
            size.clone(),
            Hugetlb {
                usage,
                max: 0,
                failcnt: events.get("max").copied().unwrap_or(0),
            },
        );
    }
    Ok(())
}

fn cpuset(dir: &Path, stats: &mut Stats) -> Result<(), CgroupError> {
    for (file, target) in [
        ("cpuset.cpus.effective", &mut stats.cpuset.cpus),
        ("cpuset.mems.effective", &mut stats.cpuset.mems),
    ] {
        if let Some(text) = read_optional(dir, file)? {
            *target = parse_cpu_list(&text).ok_or_else(|| parse_error(dir, file, &text))?;
        }
    }
    Ok(())
}

/// `oom_kill` from `memory.events` (needs the memory controller).
pub(crate) fn oom_kills(dir: &Path) -> Result<u64, CgroupError> {
    let text = files::read(dir, "memory.events")?;
    files::parse_flat_keyed(&text)
        .get("oom_kill")
        .copied()
        .ok_or_else(|| parse_error(dir, "memory.events", &text))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::cgroups::files::tests::tempdir;
    use std::fs;

    #[test]
    fn parses_io_stat() {
        let (bytes, ios) =
            parse_io_stat("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n").unwrap();
        assert_eq!(bytes.len(), 3);
        assert_eq!(bytes[1].op, "Write");
        assert_eq!(bytes[1].value, 8192);
        assert_eq!(ios[0].value, 1);
        assert!(parse_io_stat("8:0 rbytes\n").is_none());
        assert!(parse_io_stat("x rbytes=1\n").is_none());
    }

    #[test]
    fn reads_a_fixture_cgroup() {
        let dir = tempdir("v2stats");
        for (file, value) in [
            (
                "cpu.stat",
                "usage_usec 30\nuser_usec 20\nsystem_usec 10\nnr_periods 5\nnr_throttled 1\nthrottled_usec 7\n",
            ),
            (
                "cpu.pressure",
                "some avg10=0.50 avg60=0.00 avg300=0.00 total=9\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
            ),
            ("memory.current", "8192\n"),
            ("memory.max", "max\n"),
            ("memory.peak", "12288\n"),
            ("memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n"),
            ("memory.swap.current", "4096\n"),
            ("memory.swap.max", "1048576\n"),
            ("memory.stat", "anon 4096\nfile 4096\n"),
            ("pids.current", "3\n"),
            ("pids.max", "64\n"),
            (
                "io.stat",
                "254:0 rbytes=512 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
            ),
            ("hugetlb.2MB.current", "0\n"),
            ("hugetlb.2MB.events", "max 2\n"),
            ("cpuset.cpus.effective", "0-1\n"),
        ] {
            fs::write(dir.join(file), value).unwrap();
        }
        let stats = read_all(&dir, &["2MB".to_string(), "1GB".to_string()]).unwrap();
        assert_eq!(stats.cpu.usage.total, 30_000);
        assert_eq!(stats.cpu.usage.user, 20_000);
        assert_eq!(stats.cpu.usage.kernel, 10_000);
        assert_eq!(stats.cpu.throttling.throttled_time, 7_000);
        assert_eq!(stats.cpu.psi.as_ref().unwrap().some.total, 9);
        assert_eq!(stats.memory.usage.usage, 8192);
        assert_eq!(stats.memory.usage.limit, u64::MAX);
        assert_eq!(stats.memory.usage.max, 12288);
        assert_eq!(stats.memory.usage.failcnt, 4);
        assert_eq!(stats.memory.swap.usage, 8192 + 4096);
        assert_eq!(stats.memory.swap.limit, u64::MAX);
        assert_eq!(stats.memory.cache, 4096);
        assert_eq!((stats.pids.current, stats.pids.limit), (3, 64));
        assert_eq!(stats.blkio.io_service_bytes_recursive[0].value, 512);
        assert_eq!(stats.hugetlb["2MB"].failcnt, 2);
        assert!(!stats.hugetlb.contains_key("1GB"));
        assert_eq!(stats.cpuset.cpus, [0, 1]);
        assert_eq!(oom_kills(&dir).unwrap(), 1);

        fs::write(dir.join("memory.max"), "1000000\n").unwrap();
        let stats = read_all(&dir, &[]).unwrap();
        assert_eq!(stats.memory.swap.limit, 1_048_576 + 1_000_000);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_controllers_leave_zeros() {
        let dir = tempdir("v2stats-empty");
        fs::write(
            dir.join("cpu.stat"),
            "usage_usec 1\nuser_usec 1\nsystem_usec 0\n",
        )
        .unwrap();
        let stats = read_all(&dir, &["2MB".to_string()]).unwrap();
        assert_eq!(stats.cpu.usage.total, 1000);
        assert_eq!(stats.memory.usage, MemoryEntry::default());
        assert!(stats.hugetlb.is_empty());
        assert!(oom_kills(&dir).is_err());
        fs::remove_dir_all(dir).unwrap();
    }
}
