//! husk: an OCI runtime with the runc command line and built-in container networking.

pub mod cgroups;
pub mod cli;
pub mod commands;
pub mod container;
pub mod hooks;
pub mod linux;
pub mod logging;
pub mod process;
pub mod spec;
pub mod state;
