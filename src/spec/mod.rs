//! config.json: load it, check every field before any side effect, and turn it into a
//! [`ContainerPlan`] that the rest of husk executes without second-guessing.

mod load;
mod mounts;
mod plan;

pub use load::{LoadedBundle, SpecError, load_bundle};
pub use mounts::{MountKind, MountOp, plan_mount};
pub use plan::{
    ContainerPlan, DeviceNode, IdMap, NamespacePlan, PlanOptions, Problems, ProcessPlan,
    build_plan, plan_exec_process,
};
