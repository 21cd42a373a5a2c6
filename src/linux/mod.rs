//! Thin wrappers over kernel interfaces.

pub mod capabilities;
pub mod in_root;
pub mod loopback;
pub mod namespaces;
pub mod process_attrs;
pub mod procfs;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod signals;
pub mod tty;
