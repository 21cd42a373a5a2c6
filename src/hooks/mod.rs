//! OCI hooks: the runner for hooks listed in config.json.
//!
//! The runner serves both the runtime process (createRuntime, poststart, poststop) and the
//! container's init (createContainer, startContainer, inside the container's namespaces), so
//! it uses only std, nix and libc, starts no threads and keeps no state.

mod runner;

pub use runner::{HookError, HookOutput, run_hook, run_hooks, run_hooks_best_effort};
