//! pause, resume, update, ps and events: the container observed and controlled through its cgroup.

use oci_spec::runtime::LinuxResources;

use super::{Container, ContainerError, Status, cgroup_manager, status};
use crate::cgroups::stats::Stats;
use crate::state::Store;

pub fn pause(store: &Store, id: &str) -> Result<(), ContainerError> {
    let _lock = store.lock(id)?;
    let c = Container::load(store, id)?;
    if !matches!(c.status, Status::Running | Status::Created) {
        return Err(ContainerError::NotRunning);
    }
    cgroup_manager(&c.record)?.freeze()?;
    Ok(())
}

pub fn resume(store: &Store, id: &str) -> Result<(), ContainerError> {
    let _lock = store.lock(id)?;
    let c = Container::load(store, id)?;
    if c.status != Status::Paused {
        return Err(ContainerError::NotPaused);
    }
    cgroup_manager(&c.record)?.thaw()?;
    Ok(())
}

/// Applies `resources` to the live cgroup and records them, merged into the saved config.
pub fn update(store: &Store, id: &str, resources: &LinuxResources) -> Result<(), ContainerError> {
    let _lock = store.lock(id)?;
    let mut c = Container::load(store, id)?;
    if c.status == Status::Stopped {
        return Err(ContainerError::NotRunning);
    }
    cgroup_manager(&c.record)?.apply(resources)?;
    let patch = serde_json::to_value(resources).unwrap_or_default();
    let config = &mut c.record.config;
    if !config
        .get("linux")
        .is_some_and(serde_json::Value::is_object)
    {
        config["linux"] = serde_json::json!({});
    }
    let current = config["linux"]
        .get("resources")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    config["linux"]["resources"] = merge(current, patch);
    store.save(&c.record)?;
    Ok(())
}

/// `patch` over `base`, objects merged key by key; nulls in the patch leave `base` alone.
pub fn merge(base: serde_json::Value, patch: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match (base, patch) {
        (Value::Object(mut b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    continue;
                }
                let old = b.remove(&k).unwrap_or(Value::Null);
                b.insert(k, merge(old, v));
            }
            Value::Object(b)
        }
        (b, Value::Null) => b,
        (_, p) => p,
    }
}

/// Every process in the container's cgroup, in pid order.
pub fn pids(store: &Store, id: &str) -> Result<Vec<i32>, ContainerError> {
    let c = Container::load(store, id)?;
    if c.status == Status::Stopped {
        return Err(ContainerError::NotRunning);
    }
    let mut pids = cgroup_manager(&c.record)?.pids()?;
    pids.sort_unstable();
    Ok(pids)
}

/// Stats and the OOM-kill count, or NotRunning once the container has stopped.
pub fn stats(store: &Store, id: &str) -> Result<(Stats, u64), ContainerError> {
    let c = Container::load(store, id)?;
    if !status::can_kill(c.status) {
        return Err(ContainerError::NotRunning);
    }
    let cg = cgroup_manager(&c.record)?;
    Ok((cg.stats()?, cg.oom_count().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_keeps_untouched_fields() {
        let base = json!({"memory": {"limit": 10, "swap": 20}, "pids": {"limit": 5}});
        let patch = json!({"memory": {"limit": 30, "swap": null}, "cpu": {"shares": 2}});
        assert_eq!(
            merge(base, patch),
            json!({"memory": {"limit": 30, "swap": 20}, "pids": {"limit": 5}, "cpu": {"shares": 2}})
        );
    }
}
