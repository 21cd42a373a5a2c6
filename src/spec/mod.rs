//! config.json: load it, check every field before any side effect, and turn it into a
//! [`ContainerPlan`] that the rest of husk executes without second-guessing.

mod load;
mod mounts;
mod plan;

pub use load::{load_bundle, LoadedBundle, SpecError};
pub use mounts::{plan_mount, MountKind, MountOp};
pub use plan::{
    build_plan, plan_exec_process, ContainerPlan, DeviceNode, IdMap, NamespacePlan, PlanOptions, ProcessPlan, Problems,
};
