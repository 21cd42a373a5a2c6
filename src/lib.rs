//! husk: an OCI runtime with the runc command line and built-in container networking.

pub mod cgroups;
pub mod hooks;
pub mod linux;
