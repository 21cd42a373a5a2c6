//! Planning the cgroup v1 file writes for `linux.resources` (pure).

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources, LinuxThrottleDevice};

use crate::cgroups::convert::hugepage_size_name;
use crate::cgroups::devices::parse_rules;
use crate::cgroups::error::CgroupError;
use crate::cgroups::write_plan::{FileWrite, Verify};

/// What the planner needs to know about the live cgroup.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct V1Facts {
    /// Current `memory.limit_in_bytes`, read when both a memory and a swap limit are set:
    /// the kernel requires memory <= memory+swap at every step, so it decides the order.
    pub memory_limit: Option<u64>,
    /// Current `memory.usage_in_bytes`, read when `checkBeforeUpdate` is set.
    pub memory_usage: Option<u64>,
}

/// The writes, in order, that apply `resources` on cgroup v1.
pub(crate) fn plan(
    resources: &LinuxResources,
    facts: &V1Facts,
) -> Result<Vec<FileWrite>, CgroupError> {
    let mut writes = Vec::new();
    if let Some(cpu) = resources.cpu() {
        cpuset(cpu, &mut writes);
    }
    if let Some(rules) = resources.devices() {
        // Deny everything, then replay the rules in order: the kernel list then ends up
        // as "last matching rule wins".
        let rules = parse_rules(rules)?;
        writes.push(FileWrite::new(
            "devices",
            "linux.resources.devices",
            "devices.deny",
            "a",
        ));
        for rule in rules {
            let file = if rule.allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            writes.push(FileWrite::new(
                "devices",
                "linux.resources.devices",
                file,
                rule.v1_line(),
            ));
        }
    }
    if let Some(memory) = resources.memory() {
        memory_writes(memory, facts, &mut writes)?;
    }
    if let Some(cpu) = resources.cpu() {
        cpu_writes(cpu, &mut writes)?;
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
        blkio_writes(blkio, &mut writes);
    }
    for limit in resources.hugepage_limits().iter().flatten() {
        let size = hugepage_size_name(limit.page_size())?;
        let field = "linux.resources.hugepageLimits";
        let value = limit.limit().to_string();
        writes.push(FileWrite::new(
            "hugetlb",
            field,
            format!("hugetlb.{size}.limit_in_bytes"),
            value.clone(),
        ));
        writes.push(
            FileWrite::new(
                "hugetlb",
                field,
                format!("hugetlb.{size}.rsvd.limit_in_bytes"),
                value,
            )
            .optional(),
        );
    }
    if let Some(network) = resources.network() {
        if let Some(class_id) = network.class_id() {
            writes.push(FileWrite::new(
                "net_cls",
                "linux.resources.network.classID",
                "net_cls.classid",
                class_id.to_string(),
            ));
        }
        for priority in network.priorities().iter().flatten() {
            if priority.name().is_empty() || priority.name().contains(char::is_whitespace) {
                return Err(CgroupError::InvalidValue {
                    field: "linux.resources.network.priorities.name",
                    value: priority.name().clone(),
                    reason: "must be an interface name".to_string(),
                });
            }
            writes.push(FileWrite::new(
                "net_prio",
                "linux.resources.network.priorities",
                "net_prio.ifpriomap",
                format!("{} {}", priority.name(), priority.priority()),
            ));
        }
    }
    if let Some(rdma) = resources.rdma() {
        rdma_writes(rdma, &mut writes)?;
    }
    if let Some(unified) = resources.unified()
        && let Some(key) = unified.keys().next()
    {
        return Err(CgroupError::Unsupported {
            field: "linux.resources.unified",
            value: key.clone(),
            hierarchy: "v1",
            reason: "unified keys need a cgroup v2 host",
        });
    }
    Ok(writes)
}

fn cpuset(cpu: &LinuxCpu, writes: &mut Vec<FileWrite>) {
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

fn bytes(field: &'static str, value: i64) -> Result<String, CgroupError> {
    if value < -1 {
        return Err(CgroupError::InvalidValue {
            field,
            value: value.to_string(),
            reason: "must be -1 (unlimited) or a byte count".to_string(),
        });
    }
    Ok(value.to_string())
}

/// Zero means "not set" for byte limits, as in runc.
fn set(value: Option<i64>) -> Option<i64> {
    value.filter(|v| *v != 0)
}

fn memory_writes(
    memory: &LinuxMemory,
    facts: &V1Facts,
    writes: &mut Vec<FileWrite>,
) -> Result<(), CgroupError> {
    const LIMIT: &str = "linux.resources.memory.limit";
    const SWAP: &str = "linux.resources.memory.swap";
    let limit = set(memory.limit());
    // An unlimited memory limit with no swap given means unlimited memory+swap too.
    let swap = set(memory.swap()).or(if limit == Some(-1) { Some(-1) } else { None });
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
    let limit_write = limit
        .map(|l| bytes(LIMIT, l))
        .transpose()?
        .map(|v| FileWrite::new("memory", LIMIT, "memory.limit_in_bytes", v));
    let swap_write = swap
        .map(|s| bytes(SWAP, s))
        .transpose()?
        .map(|v| FileWrite::new("memory", SWAP, "memory.memsw.limit_in_bytes", v));
    let swap_first = match (limit, swap) {
        (Some(_), Some(swap)) => {
            swap == -1
                || facts
                    .memory_limit
                    .is_some_and(|current| current < swap.unsigned_abs())
        }
        _ => false,
    };
    if swap_first {
        writes.extend(swap_write);
        writes.extend(limit_write);
    } else {
        writes.extend(limit_write);
        writes.extend(swap_write);
    }
    if let Some(reservation) = set(memory.reservation()) {
        writes.push(FileWrite::new(
            "memory",
            "linux.resources.memory.reservation",
            "memory.soft_limit_in_bytes",
            bytes("linux.resources.memory.reservation", reservation)?,
        ));
    }
    #[allow(deprecated)]
    let kernel = set(memory.kernel());
    if let Some(kernel) = kernel {
        writes.push(
            FileWrite::new(
                "memory",
                "linux.resources.memory.kernel",
                "memory.kmem.limit_in_bytes",
                bytes("linux.resources.memory.kernel", kernel)?,
            )
            .verified(Verify::PageRounded),
        );
    }
    if let Some(tcp) = set(memory.kernel_tcp()) {
        writes.push(FileWrite::new(
            "memory",
            "linux.resources.memory.kernelTCP",
            "memory.kmem.tcp.limit_in_bytes",
            bytes("linux.resources.memory.kernelTCP", tcp)?,
        ));
    }
    if let Some(swappiness) = memory.swappiness() {
        if swappiness > 100 {
            return Err(CgroupError::InvalidValue {
                field: "linux.resources.memory.swappiness",
                value: swappiness.to_string(),
                reason: "must be between 0 and 100".to_string(),
            });
        }
        writes.push(FileWrite::new(
            "memory",
            "linux.resources.memory.swappiness",
            "memory.swappiness",
            swappiness.to_string(),
        ));
    }
    if let Some(disable) = memory.disable_oom_killer() {
        writes.push(FileWrite::new(
            "memory",
            "linux.resources.memory.disableOOMKiller",
            "memory.oom_control",
            if disable { "1" } else { "0" },
        ));
    }
    if let Some(hierarchy) = memory.use_hierarchy() {
        writes.push(FileWrite::new(
            "memory",
            "linux.resources.memory.useHierarchy",
            "memory.use_hierarchy",
            if hierarchy { "1" } else { "0" },
        ));
    }
    Ok(())
}

fn cpu_writes(cpu: &LinuxCpu, writes: &mut Vec<FileWrite>) -> Result<(), CgroupError> {
    if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
        // The kernel clamps out-of-range shares silently; the read-back turns that into an error.
        writes.push(
            FileWrite::new(
                "cpu",
                "linux.resources.cpu.shares",
                "cpu.shares",
                shares.to_string(),
            )
            .verified(Verify::Exact),
        );
    }
    if let Some(period) = cpu.period().filter(|p| *p != 0) {
        writes.push(FileWrite::new(
            "cpu",
            "linux.resources.cpu.period",
            "cpu.cfs_period_us",
            period.to_string(),
        ));
    }
    if let Some(quota) = cpu.quota().filter(|q| *q != 0) {
        let value = if quota < 0 { -1 } else { quota };
        writes.push(FileWrite::new(
            "cpu",
            "linux.resources.cpu.quota",
            "cpu.cfs_quota_us",
            value.to_string(),
        ));
    }
    if let Some(burst) = cpu.burst() {
        writes.push(FileWrite::new(
            "cpu",
            "linux.resources.cpu.burst",
            "cpu.cfs_burst_us",
            burst.to_string(),
        ));
    }
    if let Some(idle) = cpu.idle() {
        writes.push(FileWrite::cpu_idle(idle)?);
    }
    // The period first: a runtime is validated against the period in force.
    if let Some(period) = cpu.realtime_period().filter(|p| *p != 0) {
        writes.push(FileWrite::new(
            "cpu",
            "linux.resources.cpu.realtimePeriod",
            "cpu.rt_period_us",
            period.to_string(),
        ));
    }
    if let Some(runtime) = cpu.realtime_runtime().filter(|r| *r != 0) {
        writes.push(FileWrite::new(
            "cpu",
            "linux.resources.cpu.realtimeRuntime",
            "cpu.rt_runtime_us",
            runtime.to_string(),
        ));
    }
    Ok(())
}

fn device(d: &LinuxThrottleDevice) -> String {
    format!("{}:{} {}", d.major(), d.minor(), d.rate())
}

fn blkio_writes(blkio: &LinuxBlockIo, writes: &mut Vec<FileWrite>) {
    if let Some(weight) = blkio.weight() {
        // CFQ's file where it exists, otherwise BFQ's.
        writes.push(FileWrite::first_existing(
            "blkio",
            "linux.resources.blockIO.weight",
            vec![
                ("blkio.weight".into(), weight.to_string()),
                ("blkio.bfq.weight".into(), weight.to_string()),
            ],
        ));
    }
    if let Some(leaf) = blkio.leaf_weight() {
        writes.push(FileWrite::new(
            "blkio",
            "linux.resources.blockIO.leafWeight",
            "blkio.leaf_weight",
            leaf.to_string(),
        ));
    }
    for dev in blkio.weight_device().iter().flatten() {
        if let Some(weight) = dev.weight() {
            let line = format!("{}:{} {weight}", dev.major(), dev.minor());
            writes.push(FileWrite::first_existing(
                "blkio",
                "linux.resources.blockIO.weightDevice",
                vec![
                    ("blkio.weight_device".into(), line.clone()),
                    ("blkio.bfq.weight_device".into(), line),
                ],
            ));
        }
        if let Some(leaf) = dev.leaf_weight() {
            writes.push(FileWrite::new(
                "blkio",
                "linux.resources.blockIO.weightDevice.leafWeight",
                "blkio.leaf_weight_device",
                format!("{}:{} {leaf}", dev.major(), dev.minor()),
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
            "blkio.throttle.read_bps_device",
            blkio.throttle_read_bps_device(),
        ),
        (
            "linux.resources.blockIO.throttleWriteBpsDevice",
            "blkio.throttle.write_bps_device",
            blkio.throttle_write_bps_device(),
        ),
        (
            "linux.resources.blockIO.throttleReadIOPSDevice",
            "blkio.throttle.read_iops_device",
            blkio.throttle_read_iops_device(),
        ),
        (
            "linux.resources.blockIO.throttleWriteIOPSDevice",
            "blkio.throttle.write_iops_device",
            blkio.throttle_write_iops_device(),
        ),
    ];
    for (field, file, list) in throttles {
        for dev in list.iter().flatten() {
            writes.push(FileWrite::new("blkio", field, file, device(dev)));
        }
    }
}

/// `rdma.max` lines: `<device> hca_handle=<n> hca_object=<n>` (same on v1 and v2).
pub(crate) fn rdma_writes(
    rdma: &std::collections::HashMap<String, oci_spec::runtime::LinuxRdma>,
    writes: &mut Vec<FileWrite>,
) -> Result<(), CgroupError> {
    let mut devices: Vec<_> = rdma.iter().collect();
    devices.sort_by(|a, b| a.0.cmp(b.0));
    for (name, limits) in devices {
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(CgroupError::InvalidValue {
                field: "linux.resources.rdma",
                value: name.clone(),
                reason: "must be an RDMA device name".to_string(),
            });
        }
        let mut line = name.clone();
        if let Some(handles) = limits.hca_handles() {
            line.push_str(&format!(" hca_handle={handles}"));
        }
        if let Some(objects) = limits.hca_objects() {
            line.push_str(&format!(" hca_object={objects}"));
        }
        if line != *name {
            writes.push(FileWrite::new(
                "rdma",
                "linux.resources.rdma",
                "rdma.max",
                line,
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
    fn plans_every_field_in_order() {
        let r = resources(serde_json::json!({
            "devices": [{"allow": false, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}],
            "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                       "kernel": 16777216, "kernelTCP": 8388608, "swappiness": 10,
                       "disableOOMKiller": true, "useHierarchy": true},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000, "idle": 1,
                    "realtimeRuntime": 900, "realtimePeriod": 1000, "cpus": "0-1", "mems": "0"},
            "pids": {"limit": 32},
            "blockIO": {"weight": 500, "leafWeight": 300,
                        "weightDevice": [{"major": 8, "minor": 0, "weight": 600, "leafWeight": 200}],
                        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
                        "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2000}],
                        "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 30}],
                        "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 40}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
            "rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": 1000}}
        }));
        let writes = plan(
            &r,
            &V1Facts {
                memory_limit: Some(u64::MAX >> 1),
                memory_usage: None,
            },
        )
        .unwrap();
        assert_eq!(
            lines(&writes),
            [
                "cpuset/cpuset.cpus=0-1",
                "cpuset/cpuset.mems=0",
                "devices/devices.deny=a",
                "devices/devices.deny=a *:* rwm",
                "devices/devices.allow=c 1:3 rw",
                "memory/memory.limit_in_bytes=67108864",
                "memory/memory.memsw.limit_in_bytes=134217728",
                "memory/memory.soft_limit_in_bytes=33554432",
                "memory/memory.kmem.limit_in_bytes=16777216",
                "memory/memory.kmem.tcp.limit_in_bytes=8388608",
                "memory/memory.swappiness=10",
                "memory/memory.oom_control=1",
                "memory/memory.use_hierarchy=1",
                "cpu/cpu.shares=512",
                "cpu/cpu.cfs_period_us=100000",
                "cpu/cpu.cfs_quota_us=50000",
                "cpu/cpu.cfs_burst_us=1000",
                "cpu/cpu.idle=1",
                "cpu/cpu.rt_period_us=1000",
                "cpu/cpu.rt_runtime_us=900",
                "pids/pids.max=32",
                "blkio/blkio.weight=500",
                "blkio/blkio.leaf_weight=300",
                "blkio/blkio.weight_device=8:0 600",
                "blkio/blkio.leaf_weight_device=8:0 200",
                "blkio/blkio.throttle.read_bps_device=8:0 1000",
                "blkio/blkio.throttle.write_bps_device=8:0 2000",
                "blkio/blkio.throttle.read_iops_device=8:0 30",
                "blkio/blkio.throttle.write_iops_device=8:0 40",
                "hugetlb/hugetlb.2MB.limit_in_bytes=4194304",
                "hugetlb/hugetlb.2MB.rsvd.limit_in_bytes=4194304",
                "net_cls/net_cls.classid=1048577",
                "net_prio/net_prio.ifpriomap=eth0 5",
                "rdma/rdma.max=mlx5_0 hca_handle=3 hca_object=1000",
            ]
        );
        assert_eq!(writes[8].verify, Verify::PageRounded);
        assert_eq!(writes[13].verify, Verify::Exact);
        assert!(writes[30].optional);
        assert_eq!(writes[21].candidates[1].0, "blkio.bfq.weight");
    }

    #[test]
    fn memory_and_swap_order_follows_current_limit() {
        let r = resources(serde_json::json!({"memory": {"limit": 100 << 20, "swap": 200 << 20}}));
        // Raising above the current limit: memory+swap first.
        let writes = plan(
            &r,
            &V1Facts {
                memory_limit: Some(50 << 20),
                memory_usage: None,
            },
        )
        .unwrap();
        assert_eq!(writes[0].first().0, "memory.memsw.limit_in_bytes");
        // Lowering: memory first.
        let writes = plan(
            &r,
            &V1Facts {
                memory_limit: Some(500 << 20),
                memory_usage: None,
            },
        )
        .unwrap();
        assert_eq!(writes[0].first().0, "memory.limit_in_bytes");
        // Unlimited memory implies unlimited memory+swap, written first.
        let r = resources(serde_json::json!({"memory": {"limit": -1}}));
        let writes = plan(&r, &V1Facts::default()).unwrap();
        assert_eq!(
            lines(&writes),
            [
                "memory/memory.memsw.limit_in_bytes=-1",
                "memory/memory.limit_in_bytes=-1"
            ]
        );
    }

    #[test]
    fn rejects_bad_values_and_unified() {
        for bad in [
            serde_json::json!({"memory": {"limit": -2}}),
            serde_json::json!({"memory": {"swappiness": 101}}),
            serde_json::json!({"cpu": {"idle": 2}}),
            serde_json::json!({"hugepageLimits": [{"pageSize": "2XB", "limit": 1}]}),
            serde_json::json!({"unified": {"memory.high": "1"}}),
            serde_json::json!({"devices": [{"allow": true, "type": "p", "access": "r"}]}),
            serde_json::json!({"network": {"priorities": [{"name": "", "priority": 1}]}}),
        ] {
            assert!(
                plan(&resources(bad.clone()), &V1Facts::default()).is_err(),
                "{bad}"
            );
        }
        let r =
            resources(serde_json::json!({"memory": {"limit": 1000, "checkBeforeUpdate": true}}));
        assert!(
            plan(
                &r,
                &V1Facts {
                    memory_limit: None,
                    memory_usage: Some(5000)
                }
            )
            .is_err()
        );
        assert!(
            plan(
                &r,
                &V1Facts {
                    memory_limit: None,
                    memory_usage: Some(500)
                }
            )
            .is_ok()
        );
    }

    #[test]
    fn zero_means_unset_and_pids_unlimited() {
        let r = resources(serde_json::json!({
            "memory": {"limit": 0, "swap": 0}, "cpu": {"shares": 0, "quota": 0, "period": 0},
            "pids": {"limit": 0}}));
        assert_eq!(
            lines(&plan(&r, &V1Facts::default()).unwrap()),
            ["pids/pids.max=max"]
        );
        let r = resources(serde_json::json!({"cpu": {"quota": -5}}));
        assert_eq!(
            lines(&plan(&r, &V1Facts::default()).unwrap()),
            ["cpu/cpu.cfs_quota_us=-1"]
        );
    }
}
