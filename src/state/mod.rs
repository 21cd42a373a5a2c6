//! The state store under `--root`: one directory per container id, a lock per container,
//! and `state.json` written atomically (temp file + rename) so a reader never sees half a file.

mod record;
mod store;
mod timestamp;

pub use record::{ContainerRecord, Phase};
pub use store::{ContainerLock, StateError, Store, validate_id};
pub use timestamp::rfc3339_now;
