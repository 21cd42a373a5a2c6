//! Thin wrappers over kernel interfaces.

pub mod capabilities;
pub mod rlimits;
pub mod seccomp;
