//! Reading cgroup v1 statistics into [`Stats`]. Files of controllers that are not mounted,
//! or that this kernel lacks, leave their fields at zero.

use std::path::Path;

use crate::cgroups::convert::parse_cpu_list;
use crate::cgroups::error::CgroupError;
use crate::cgroups::files::{self, parse_error, read_flat_keyed, read_optional, read_u64_optional};
use crate::cgroups::stats::{
    BlkioEntry, CpuSet, CpuUsage, Hugetlb, MemoryEntry, Stats, Throttling,
};

/// Nanoseconds per USER_HZ tick (`cpuacct.stat` is in ticks; USER_HZ is 100 on Linux).
const NANOS_PER_TICK: u64 = 1_000_000_000 / 100;

pub(crate) fn cpuacct(dir: &Path, usage: &mut CpuUsage) -> Result<(), CgroupError> {
    usage.total = read_u64_optional(dir, "cpuacct.usage")?.unwrap_or(0);
    if let Some(text) = read_optional(dir, "cpuacct.usage_percpu")? {
        usage.percpu =
            parse_numbers(&text).ok_or_else(|| parse_error(dir, "cpuacct.usage_percpu", &text))?;
    }
    if let Some(text) = read_optional(dir, "cpuacct.usage_all")? {
        let (user, kernel) =
            parse_usage_all(&text).ok_or_else(|| parse_error(dir, "cpuacct.usage_all", &text))?;
        usage.percpu_user = user;
        usage.percpu_kernel = kernel;
    }
    match (
        read_u64_optional(dir, "cpuacct.usage_user")?,
        read_u64_optional(dir, "cpuacct.usage_sys")?,
    ) {
        (Some(user), Some(kernel)) => {
            usage.user = user;
            usage.kernel = kernel;
        }
        _ => {
            let ticks = read_flat_keyed(dir, "cpuacct.stat")?;
            usage.user = ticks.get("user").copied().unwrap_or(0) * NANOS_PER_TICK;
            usage.kernel = ticks.get("system").copied().unwrap_or(0) * NANOS_PER_TICK;
        }
    }
    Ok(())
}

fn parse_numbers(text: &str) -> Option<Vec<u64>> {
    text.split_whitespace().map(|n| n.parse().ok()).collect()
}

/// `cpuacct.usage_all`: a `cpu user system` header, then one row per cpu.
fn parse_usage_all(text: &str) -> Option<(Vec<u64>, Vec<u64>)> {
    let mut user = Vec::new();
    let mut kernel = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let fields = parse_numbers(line)?;
        let [_, u, s] = fields.as_slice() else {
            return None;
        };
        user.push(*u);
        kernel.push(*s);
    }
    Some((user, kernel))
}

pub(crate) fn cpu(dir: &Path, throttling: &mut Throttling) -> Result<(), CgroupError> {
    let stat = read_flat_keyed(dir, "cpu.stat")?;
    throttling.periods = stat.get("nr_periods").copied().unwrap_or(0);
    throttling.throttled_periods = stat.get("nr_throttled").copied().unwrap_or(0);
    throttling.throttled_time = stat.get("throttled_time").copied().unwrap_or(0);
    Ok(())
}

pub(crate) fn memory(dir: &Path, stats: &mut Stats) -> Result<(), CgroupError> {
    let memory = &mut stats.memory;
    for (prefix, entry) in [
        ("memory", &mut memory.usage),
        ("memory.memsw", &mut memory.swap),
        ("memory.kmem", &mut memory.kernel),
        ("memory.kmem.tcp", &mut memory.kernel_tcp),
    ] {
        *entry = MemoryEntry {
            limit: read_u64_optional(dir, &format!("{prefix}.limit_in_bytes"))?.unwrap_or(0),
            usage: read_u64_optional(dir, &format!("{prefix}.usage_in_bytes"))?.unwrap_or(0),
            max: read_u64_optional(dir, &format!("{prefix}.max_usage_in_bytes"))?.unwrap_or(0),
            failcnt: read_u64_optional(dir, &format!("{prefix}.failcnt"))?.unwrap_or(0),
        };
    }
    memory.raw = read_flat_keyed(dir, "memory.stat")?;
    memory.cache = memory.raw.get("cache").copied().unwrap_or(0);
    Ok(())
}

pub(crate) fn pids(dir: &Path, stats: &mut Stats) -> Result<(), CgroupError> {
    stats.pids.current = read_u64_optional(dir, "pids.current")?.unwrap_or(0);
    stats.pids.limit = match read_u64_optional(dir, "pids.max")? {
        Some(u64::MAX) | None => 0,
        Some(limit) => limit,
    };
    Ok(())
}

/// `8:0 Read 4096` lines; `Total` lines are skipped.
pub(crate) fn parse_blkio(text: &str) -> Option<Vec<BlkioEntry>> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (device, op, value) = match fields.as_slice() {
            [] | ["Total", _] => continue,
            [device, value] => (*device, "", *value),
            [device, op, value] => (*device, *op, *value),
            _ => return None,
        };
        let (major, minor) = device.split_once(':')?;
        entries.push(BlkioEntry {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
            op: op.to_string(),
            value: value.parse().ok()?,
        });
    }
    Some(entries)
}

fn blkio_file(dir: &Path, file: &str) -> Result<Vec<BlkioEntry>, CgroupError> {
    match read_optional(dir, file)? {
        None => Ok(Vec::new()),
        Some(text) => parse_blkio(&text).ok_or_else(|| parse_error(dir, file, &text)),
    }
}

/// CFQ statistics where the kernel has them, else BFQ's, else the throttle layer's
/// (which counts I/O for every scheduler).
pub(crate) fn blkio(dir: &Path, stats: &mut Stats) -> Result<(), CgroupError> {
    let b = &mut stats.blkio;
    let cfq = [
        (
            "blkio.io_service_bytes_recursive",
            &mut b.io_service_bytes_recursive,
        ),
        ("blkio.io_serviced_recursive", &mut b.io_serviced_recursive),
        ("blkio.io_queued_recursive", &mut b.io_queued_recursive),
        (
            "blkio.io_service_time_recursive",
            &mut b.io_service_time_recursive,
        ),
        (
            "blkio.io_wait_time_recursive",
            &mut b.io_wait_time_recursive,
        ),
        ("blkio.io_merged_recursive", &mut b.io_merged_recursive),
        ("blkio.time_recursive", &mut b.io_time_recursive),
        ("blkio.sectors_recursive", &mut b.sectors_recursive),
    ];
    let mut found = false;
    for (file, target) in cfq {
        *target = blkio_file(dir, file)?;
        found |= !target.is_empty();
    }
    if found {
        return Ok(());
    }
    for prefix in ["blkio.bfq", "blkio.throttle"] {
        b.io_service_bytes_recursive =
            blkio_file(dir, &format!("{prefix}.io_service_bytes_recursive"))?;
        b.io_serviced_recursive = blkio_file(dir, &format!("{prefix}.io_serviced_recursive"))?;
        if !b.io_service_bytes_recursive.is_empty() || !b.io_serviced_recursive.is_empty() {
            return Ok(());
        }
    }
    Ok(())
}

pub(crate) fn hugetlb(dir: &Path, sizes: &[String], stats: &mut Stats) -> Result<(), CgroupError> {
    for size in sizes {
        let usage = read_u64_optional(dir, &format!("hugetlb.{size}.usage_in_bytes"))?;
        let Some(usage) = usage else { continue };
        stats.hugetlb.insert(
            size.clone(),
            Hugetlb {
                usage,
                max: read_u64_optional(dir, &format!("hugetlb.{size}.max_usage_in_bytes"))?
                    .unwrap_or(0),
                failcnt: read_u64_optional(dir, &format!("hugetlb.{size}.failcnt"))?.unwrap_or(0),
            },
        );
    }
    Ok(())
}

pub(crate) fn cpuset(dir: &Path, out: &mut CpuSet) -> Result<(), CgroupError> {
    let list = |file: &str| -> Result<Vec<u16>, CgroupError> {
        match read_optional(dir, file)? {
            None => Ok(Vec::new()),
            Some(text) => parse_cpu_list(&text).ok_or_else(|| parse_error(dir, file, &text)),
        }
    };
    let flag =
        |file: &str| -> Result<u64, CgroupError> { Ok(read_u64_optional(dir, file)?.unwrap_or(0)) };
    out.cpus = list("cpuset.cpus")?;
    out.mems = list("cpuset.mems")?;
    out.cpu_exclusive = flag("cpuset.cpu_exclusive")?;
    out.mem_exclusive = flag("cpuset.mem_exclusive")?;
    out.mem_hardwall = flag("cpuset.mem_hardwall")?;
    out.memory_migrate = flag("cpuset.memory_migrate")?;
    out.memory_pressure = flag("cpuset.memory_pressure")?;
    out.memory_spread_page = flag("cpuset.memory_spread_page")?;
    out.memory_spread_slab = flag("cpuset.memory_spread_slab")?;
    out.sched_load_balance = flag("cpuset.sched_load_balance")?;
    out.sched_relax_domain_level = match read_optional(dir, "cpuset.sched_relax_domain_level")? {
        None => 0,
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| parse_error(dir, "cpuset.sched_relax_domain_level", &text))?,
    };
    Ok(())
}

/// `oom_kill` from `memory.oom_control`.
pub(crate) fn oom_kills(dir: &Path) -> Result<u64, CgroupError> {
    let text = files::read(dir, "memory.oom_control")?;
    files::parse_flat_keyed(&text)
        .get("oom_kill")
        .copied()
        .ok_or_else(|| parse_error(dir, "memory.oom_control", &text))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::cgroups::files::tests::tempdir;
    use std::fs;

    #[test]
    fn parses_blkio_lines() {
        let entries = parse_blkio("8:0 Read 10\n8:0 Write 20\n8:0 Total 30\nTotal 30\n").unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1].op, "Write");
        assert_eq!(entries[1].value, 20);
        assert_eq!(parse_blkio("8:16 7\n").unwrap()[0].minor, 16);
        assert!(parse_blkio("garbage line here too\n").is_none());
    }

    #[test]
    fn reads_a_fixture_cgroup() {
        let cpu = tempdir("v1stats-cpu");
        fs::write(cpu.join("cpuacct.usage"), "3000\n").unwrap();
        fs::write(cpu.join("cpuacct.usage_percpu"), "1000 2000 \n").unwrap();
        fs::write(
            cpu.join("cpuacct.usage_all"),
            "cpu user system\n0 600 400\n1 1500 500\n",
        )
        .unwrap();
        fs::write(cpu.join("cpuacct.stat"), "user 2\nsystem 1\n").unwrap();
        fs::write(
            cpu.join("cpu.stat"),
            "nr_periods 4\nnr_throttled 2\nthrottled_time 99\n",
        )
        .unwrap();
        let mut stats = Stats::default();
        cpuacct(&cpu, &mut stats.cpu.usage).unwrap();
        cpu_throttling(&cpu, &mut stats);
        assert_eq!(stats.cpu.usage.total, 3000);
        assert_eq!(stats.cpu.usage.percpu, [1000, 2000]);
        assert_eq!(stats.cpu.usage.percpu_user, [600, 1500]);
        assert_eq!(stats.cpu.usage.percpu_kernel, [400, 500]);
        assert_eq!(stats.cpu.usage.user, 2 * NANOS_PER_TICK);
        assert_eq!(stats.cpu.usage.kernel, NANOS_PER_TICK);
        assert_eq!(stats.cpu.throttling.throttled_time, 99);
        fs::write(cpu.join("cpuacct.usage_user"), "777\n").unwrap();
        fs::write(cpu.join("cpuacct.usage_sys"), "333\n").unwrap();
        cpuacct(&cpu, &mut stats.cpu.usage).unwrap();
        assert_eq!((stats.cpu.usage.user, stats.cpu.usage.kernel), (777, 333));

        let mem = tempdir("v1stats-mem");
        for (file, value) in [
            ("memory.limit_in_bytes", "9223372036854771712"),
            ("memory.usage_in_bytes", "8192"),
            ("memory.max_usage_in_bytes", "16384"),
            ("memory.failcnt", "3"),
            ("memory.memsw.usage_in_bytes", "8192"),
            ("memory.stat", "cache 4096\nrss 4096\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            ),
            ("pids.current", "4"),
            ("pids.max", "max"),
        ] {
            fs::write(mem.join(file), value).unwrap();
        }
        memory(&mem, &mut stats).unwrap();
        pids(&mem, &mut stats).unwrap();
        assert_eq!(stats.memory.usage.usage, 8192);
        assert_eq!(stats.memory.usage.max, 16384);
        assert_eq!(stats.memory.usage.failcnt, 3);
        assert_eq!(stats.memory.swap.usage, 8192);
        assert_eq!(stats.memory.kernel, MemoryEntry::default());
        assert_eq!(stats.memory.cache, 4096);
        assert_eq!(stats.memory.raw["rss"], 4096);
        assert_eq!(oom_kills(&mem).unwrap(), 2);
        assert_eq!((stats.pids.current, stats.pids.limit), (4, 0));

        let blk = tempdir("v1stats-blk");
        fs::write(
            blk.join("blkio.bfq.io_service_bytes_recursive"),
            "Total 0\n",
        )
        .unwrap();
        fs::write(
            blk.join("blkio.throttle.io_service_bytes_recursive"),
            "254:0 Read 512\n254:0 Write 0\nTotal 512\n",
        )
        .unwrap();
        fs::write(
            blk.join("blkio.throttle.io_serviced_recursive"),
            "254:0 Read 1\n",
        )
        .unwrap();
        fs::write(blk.join("hugetlb.2MB.usage_in_bytes"), "2097152").unwrap();
        fs::write(blk.join("hugetlb.2MB.failcnt"), "1").unwrap();
        fs::write(blk.join("cpuset.cpus"), "0-1\n").unwrap();
        fs::write(blk.join("cpuset.mems"), "0\n").unwrap();
        fs::write(blk.join("cpuset.sched_relax_domain_level"), "-1\n").unwrap();
        blkio(&blk, &mut stats).unwrap();
        hugetlb(&blk, &["2MB".to_string(), "1GB".to_string()], &mut stats).unwrap();
        cpuset(&blk, &mut stats.cpuset).unwrap();
        assert_eq!(stats.blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(stats.blkio.io_serviced_recursive[0].value, 1);
        assert_eq!(stats.hugetlb["2MB"].usage, 2097152);
        assert!(!stats.hugetlb.contains_key("1GB"));
        assert_eq!(stats.cpuset.cpus, [0, 1]);
        assert_eq!(stats.cpuset.sched_relax_domain_level, -1);
        for d in [cpu, mem, blk] {
            fs::remove_dir_all(d).unwrap();
        }
    }

    fn cpu_throttling(dir: &Path, stats: &mut Stats) {
        super::cpu(dir, &mut stats.cpu.throttling).unwrap();
    }
}
