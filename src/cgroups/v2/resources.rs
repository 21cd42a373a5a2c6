//! Planning the cgroup v2 file writes for `linux.resources` (pure). Devices are not file
//! writes on v2: they become an eBPF program (see `bpf_program`).

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources, LinuxThrottleDevice};

use crate::cgroups::convert::{
    blkio_weight_to_io_weight, cpu_shares_to_weight, hugepage_size_name, memory_swap_to_v2,
    v2_limit,
};
use crate::cgroups::error::CgroupError;
use crate::cgroups::v1::resources::rdma_writes;
use crate::cgroups::write_plan::FileWrite;

/// What the planner needs to know about the live cgroup.
#[derive(Clone, Debug, Default)]
pub(crate) struct V2Facts {
    /// The quota part of the current `cpu.max`, read when only a period is given (writing
    /// a period alone must keep the quota in force).
    pub cpu_max_quota: Option<String>,
    /// Current `memory.current`, read when `checkBeforeUpdate` is set.
    pub memory_usage: Option<u64>,
}

fn unsupported(field: &'static str, value: impl ToString, reason: &'static str) -> CgroupError {
    CgroupError::Unsupported {
        field,
        value: value.to_string(),
        hierarchy: "v2",
        reason,
    }
}

/// The writes, in order, that apply `resources` on cgroup v2 (`unified` last, so its
/// values win).
pub(crate) fn plan(
    resources: &LinuxResources,
    facts: &V2Facts,
) -> Result<Vec<FileWrite>, CgroupError> {
    let mut writes = Vec::new();
    if let Some(cpu) = resources.cpu() {
        if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
            writes.push(FileWrite::new(
                "cpuset",
                "linux.resources.cpu.cpus",
                "cpuset.cpus",
                cpus,
            ));
        }
        if let Some(mems) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
            writes.push(FileWrite::new(
                "cpuset",
                "linux.resources.cpu.mems",
                "cpuset.mems",
                mems,
            ));
        }
    }
    if let Some(memory) = resources.memory() {
        memory_writes(memory, facts, &mut writes)?;
    }
    if let Some(cpu) = resources.cpu() {
        cpu_writes(cpu, facts, &mut writes)?;
    }
    if let Some(pids) = resources.pids() {
        let value = if pids.limit() > 0 {
            pids.limit().to_string()
        } else {
            "max".to_string()
        };
        writes.push(FileWrite::new(
            "pids",
            "linux.resources.pids.limit",
            "pids.max",
            value,
        ));
    }
    if let Some(blkio) = resources.block_io() {
        io_writes(blkio, &mut writes)?;
    }
    for limit in resources.hugepage_limits().iter().flatten() {
        let size = hugepage_size_name(limit.page_size())?;
        let field = "linux.resources.hugepageLimits";
        let value = v2_limit(limit.limit());
        writes.push(FileWrite::new(
            "hugetlb",
            field,
            format!("hugetlb.{size}.max"),
            value.clone(),
        ));
        writes.push(
            FileWrite::new("hugetlb", field, format!("hugetlb.{size}.rsvd.max"), value).optional(),
        );
    }
    if let Some(network) = resources.network() {
        if let Some(class_id) = network.class_id() {
            return Err(unsupported(
                "linux.resources.network.classID",
                class_id,
                "net_cls exists only on cgroup v1",
            ));
        }
        if let Some(p) = network.priorities().iter().flatten().next() {
            return Err(unsupported(
                "linux.resources.network.priorities",
                format!("{} {}", p.name(), p.priority()),
                "net_prio exists only on cgroup v1",
            ));
        }
    }
    if let Some(rdma) = resources.rdma() {
        rdma_writes(rdma, &mut writes)?;
    }
    if let Some(unified) = resources.unified() {
        let mut entries: Vec<_> = unified.iter().collect();
        entries.sort();
        for (key, value) in entries {
            let controller = unified_controller(key)?;
            writes.push(FileWrite::new(
                controller,
                "linux.resources.unified",
                key.clone(),
                value.clone(),
            ));
        }
    }
    Ok(writes)
}

/// Checks a `unified` key names a plain file of this cgroup and returns the controller
/// it belongs to (`""` for core `cgroup.*` files).
pub(crate) fn unified_controller(key: &str) -> Result<&'static str, CgroupError> {
    let reject = |reason| CgroupError::UnifiedKey {
        key: key.to_string(),
        reason,
    };
    if key.is_empty() || key.contains('/') || key.contains('\0') || key.starts_with('.') {
        return Err(reject("must be a file name of the container's cgroup"));
    }
    let Some((prefix, _)) = key.split_once('.') else {
        return Err(reject("must look like <controller>.<file>"));
    };
    if matches!(
        key,
        "cgroup.procs" | "cgroup.threads" | "cgroup.subtree_control" | "cgroup.kill"
    ) {
        return Err(reject(
            "moves processes or changes the tree; not a resource limit",
        ));
    }
    Ok(match prefix {
        "cgroup" => "",
        "cpu" => "cpu",
        "cpuset" => "cpuset",
        "memory" => "memory",
        "io" => "io",
        "pids" => "pids",
        "hugetlb" => "hugetlb",
        "rdma" => "rdma",
        "misc" => "misc",
        "perf_event" => "perf_event",
        _ => return Err(reject("names no cgroup v2 controller")),
    })
}

fn memory_writes(
    memory: &LinuxMemory,
    facts: &V2Facts,
    writes: &mut Vec<FileWrite>,
) -> Result<(), CgroupError> {
    const LIMIT: &str = "linux.resources.memory.limit";
    let limit = memory.limit().filter(|l| *l != 0);
    if let Some(l) = limit.filter(|l| *l < -1) {
        return Err(CgroupError::InvalidValue {
            field: LIMIT,
            value: l.to_string(),
            reason: "must be -1 (unlimited) or a byte count".to_string(),
        });
    }
    if memory.check_before_update() == Some(true)
        && let (Some(limit), Some(usage)) = (limit, facts.memory_usage)
        && limit > 0
        && usage > limit.unsigned_abs()
    {
        return Err(CgroupError::InvalidValue {
            field: LIMIT,
            value: limit.to_string(),
            reason: format!("below the current usage {usage} (checkBeforeUpdate)"),
        });
    }
    // Swap first: memory.swap.max has no ordering constraint against memory.max, but
    // its value is derived from both, so validate it before writing anything.
    let swap = memory_swap_to_v2(memory.swap().filter(|s| *s != 0), limit)?;
    if let Some(limit) = limit {
        writes.push(FileWrite::new(
            "memory",
            LIMIT,
            "memory.max",
            v2_limit(limit),
        ));
    }
    if let Some(swap) = swap {
        writes.push(FileWrite::new(
            "memory",
            "linux.resources.memory.swap",
            "memory.swap.max",
            swap,
        ));
    }
    if let Some(reservation) = memory.reservation().filter(|r| *r != 0) {
        writes.push(FileWrite::new(
            "memory",
            "linux.resources.memory.reservation",
            "memory.low",
            v2_limit(reservation),
        ));
    }
    #[allow(deprecated)]
    let kernel = memory.kernel();
    if let Some(kernel) = kernel.filter(|k| *k != 0) {
        return Err(unsupported(
            "linux.resources.memory.kernel",
            kernel,
            "kernel memory is accounted with all memory on cgroup v2",
        ));
    }
    if let Some(tcp) = memory.kernel_tcp().filter(|k| *k != 0) {
        return Err(unsupported(
            "linux.resources.memory.kernelTCP",
            tcp,
            "kernel memory is accounted with all memory on cgroup v2",
        ));
    }
    if let Some(swappiness) = memory.swappiness() {
        return Err(unsupported(
            "linux.resources.memory.swappiness",
            swappiness,
            "cgroup v2 has no per-cgroup swappiness",
        ));
    }
    if memory.disable_oom_killer() == Some(true) {
        return Err(unsupported(
            "linux.resources.memory.disableOOMKiller",
            true,
            "cgroup v2 cannot disable the OOM killer",
        ));
    }
    if memory.use_hierarchy() == Some(false) {
        return Err(unsupported(
            "linux.resources.memory.useHierarchy",
            false,
            "accounting is always hierarchical on cgroup v2",
        ));
    }
    Ok(())
}

fn cpu_writes(
    cpu: &LinuxCpu,
    facts: &V2Facts,
    writes: &mut Vec<FileWrite>,
) -> Result<(), CgroupError> {
    if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
        writes.push(FileWrite::new(
            "cpu",
            "linux.resources.cpu.shares",
            "cpu.weight",
            cpu_shares_to_weight(shares).to_string(),
        ));
    }
    let quota = cpu.quota().filter(|q| *q != 0);
    let period = cpu.period().filter(|p| *p != 0);
    let quota_text = |q: i64| {
        if q < 0 {
            "max".to_string()
        } else {
            q.to_string()
        }
    };
    let cpu_max = match (quota, period) {
        (Some(q), Some(p)) => Some(format!("{} {p}", quota_text(q))),
        (Some(q), None) => Some(quota_text(q)),
        (None, Some(p)) => {
            let current = facts
                .cpu_max_quota
                .clone()
                .unwrap_or_else(|| "max".to_string());
            Some(format!("{current} {p}"))
        }
        (None, None) => None,
    };
    if let Some(value) = cpu_max {
        writes.push(FileWrite::new(
            "cpu",
            "linux.resources.cpu.quota",
            "cpu.max",
            value,
        ));
    }
    if let Some(burst) = cpu.burst() {
        writes.push(FileWrite::new(
            "cpu",
            "linux.resources.cpu.burst",
            "cpu.max.burst",
            burst.to_string(),
        ));
    }
    if let Some(idle) = cpu.idle() {
        writes.push(FileWrite::cpu_idle(idle)?);
    }
    if let Some(runtime) = cpu.realtime_runtime().filter(|r| *r != 0) {
        return Err(unsupported(
            "linux.resources.cpu.realtimeRuntime",
            runtime,
            "cgroup v2 has no realtime group scheduling interface",
        ));
    }
    if let Some(period) = cpu.realtime_period().filter(|p| *p != 0) {
        return Err(unsupported(
            "linux.resources.cpu.realtimePeriod",
            period,
            "cgroup v2 has no realtime group scheduling interface",
        ));
    }
    Ok(())
}

fn io_writes(blkio: &LinuxBlockIo, writes: &mut Vec<FileWrite>) -> Result<(), CgroupError> {
    // BFQ takes the v1 weight scale as is; io.weight needs the converted value.
    if let Some(weight) = blkio.weight() {
        writes.push(FileWrite::first_existing(
            "io",
            "linux.resources.blockIO.weight",
            vec![
                ("io.bfq.weight".into(), weight.to_string()),
                (
                    "io.weight".into(),
                    format!("default {}", blkio_weight_to_io_weight(weight)?),
                ),
            ],
        ));
    }
    if let Some(leaf) = blkio.leaf_weight() {
        return Err(unsupported(
            "linux.resources.blockIO.leafWeight",
            leaf,
            "leaf weights were a CFQ feature of cgroup v1",
        ));
    }
    for dev in blkio.weight_device().iter().flatten() {
        let device = format!("{}:{}", dev.major(), dev.minor());
        if let Some(leaf) = dev.leaf_weight() {
            return Err(unsupported(
                "linux.resources.blockIO.weightDevice.leafWeight",
                format!("{device} {leaf}"),
                "leaf weights were a CFQ feature of cgroup v1",
            ));
        }
        if let Some(weight) = dev.weight() {
            writes.push(FileWrite::first_existing(
                "io",
                "linux.resources.blockIO.weightDevice",
                vec![
                    ("io.bfq.weight".into(), format!("{device} {weight}")),
                    (
                        "io.weight".into(),
                        format!("{device} {}", blkio_weight_to_io_weight(weight)?),
                    ),
                ],
            ));
        }
    }
    let throttles: [(
        &'static str,
        &'static str,
        &Option<Vec<LinuxThrottleDevice>>,
    ); 4] = [
        (
            "linux.resources.blockIO.throttleReadBpsDevice",
            "rbps",
            blkio.throttle_read_bps_device(),
        ),
        (
            "linux.resources.blockIO.throttleWriteBpsDevice",
            "wbps",
            blkio.throttle_write_bps_device(),
        ),
        (
            "linux.resources.blockIO.throttleReadIOPSDevice",
            "riops",
            blkio.throttle_read_iops_device(),
        ),
        (
            "linux.resources.blockIO.throttleWriteIOPSDevice",
            "wiops",
            blkio.throttle_write_iops_device(),
        ),
    ];
    for (field, key, list) in throttles {
        for dev in list.iter().flatten() {
            // A rate of 0 means "no limit" in the OCI spec and in runc.
            let rate = if dev.rate() == 0 {
                "max".to_string()
            } else {
                dev.rate().to_string()
            };
            writes.push(FileWrite::new(
                "io",
                field,
                "io.max",
                format!("{}:{} {key}={rate}", dev.major(), dev.minor()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn resources(json: serde_json::Value) -> LinuxResources {
        serde_json::from_value(json).unwrap()
    }

    fn lines(writes: &[FileWrite]) -> Vec<String> {
        writes
            .iter()
            .map(|w| {
                let (file, value) = w.first();
                format!("{}/{file}={value}", w.controller)
            })
            .collect()
    }

    #[test]
    fn plans_every_supported_field() {
        let r = resources(serde_json::json!({
            "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                       "useHierarchy": true, "disableOOMKiller": false},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000, "idle": 0,
                    "cpus": "0-1", "mems": "0"},
            "pids": {"limit": -1},
            "blockIO": {"weight": 500,
                        "weightDevice": [{"major": 8, "minor": 0, "weight": 1000}],
                        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
                        "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 0}],
                        "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 30}],
                        "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 40}]},
            "hugepageLimits": [{"pageSize": "1GB", "limit": -1}],
            "rdma": {"mlx5_0": {"hcaHandles": 3}},
            "unified": {"memory.high": "50000000", "cgroup.freeze": "0"}
        }));
        let writes = plan(&r, &V2Facts::default()).unwrap();
        assert_eq!(
            lines(&writes),
            [
                "cpuset/cpuset.cpus=0-1",
                "cpuset/cpuset.mems=0",
                "memory/memory.max=67108864",
                "memory/memory.swap.max=67108864",
                "memory/memory.low=33554432",
                "cpu/cpu.weight=100",
                "cpu/cpu.max=50000 100000",
                "cpu/cpu.max.burst=1000",
                "cpu/cpu.idle=0",
                "pids/pids.max=max",
                "io/io.bfq.weight=500",
                "io/io.bfq.weight=8:0 1000",
                "io/io.max=8:0 rbps=1000",
                "io/io.max=8:0 wbps=max",
                "io/io.max=8:0 riops=30",
                "io/io.max=8:0 wiops=40",
                "hugetlb/hugetlb.1GB.max=max",
                "hugetlb/hugetlb.1GB.rsvd.max=max",
                "rdma/rdma.max=mlx5_0 hca_handle=3",
                "/cgroup.freeze=0",
                "memory/memory.high=50000000",
            ]
        );
        assert_eq!(
            writes[10].candidates[1],
            ("io.weight".to_string(), "default 4950".to_string())
        );
        assert_eq!(
            writes[11].candidates[1],
            ("io.weight".to_string(), "8:0 10000".to_string())
        );
    }

    #[test]
    fn cpu_max_keeps_quota_when_only_period_changes() {
        let r = resources(serde_json::json!({"cpu": {"period": 50000}}));
        let facts = V2Facts {
            cpu_max_quota: Some("20000".into()),
            memory_usage: None,
        };
        assert_eq!(
            lines(&plan(&r, &facts).unwrap()),
            ["cpu/cpu.max=20000 50000"]
        );
        assert_eq!(
            lines(&plan(&r, &V2Facts::default()).unwrap()),
            ["cpu/cpu.max=max 50000"]
        );
        let r = resources(serde_json::json!({"cpu": {"quota": -1}}));
        assert_eq!(
            lines(&plan(&r, &V2Facts::default()).unwrap()),
            ["cpu/cpu.max=max"]
        );
    }

    #[test]
    fn rejects_what_v2_cannot_honour() {
        for bad in [
            serde_json::json!({"memory": {"kernel": 1048576}}),
            serde_json::json!({"memory": {"kernelTCP": 1048576}}),
            serde_json::json!({"memory": {"swappiness": 10}}),
            serde_json::json!({"memory": {"disableOOMKiller": true}}),
            serde_json::json!({"memory": {"useHierarchy": false}}),
            serde_json::json!({"memory": {"swap": 1048576}}),
            serde_json::json!({"cpu": {"realtimeRuntime": 100}}),
            serde_json::json!({"cpu": {"realtimePeriod": 100}}),
            serde_json::json!({"blockIO": {"leafWeight": 100}}),
            serde_json::json!({"blockIO": {"weight": 5}}),
            serde_json::json!({"network": {"classID": 1}}),
            serde_json::json!({"network": {"priorities": [{"name": "eth0", "priority": 1}]}}),
        ] {
            assert!(
                plan(&resources(bad.clone()), &V2Facts::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn unified_keys_are_plain_files() {
        assert_eq!(unified_controller("memory.high").unwrap(), "memory");
        assert_eq!(unified_controller("cgroup.max.depth").unwrap(), "");
        for bad in [
            "../memory.max",
            "memory.max/x",
            "",
            ".hidden",
            "nodot",
            "cgroup.procs",
            "cgroup.kill",
            "cgroup.subtree_control",
            "bogus.file",
        ] {
            assert!(
                matches!(unified_controller(bad), Err(CgroupError::UnifiedKey { .. })),
                "{bad}"
            );
        }
    }
}
