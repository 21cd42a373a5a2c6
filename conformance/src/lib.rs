//! Black-box conformance harness for husk (or any runc-compatible runtime).
//!
//! The runtime under test is the binary named by `HUSK_RUNTIME` (a path, or a
//! name looked up in `PATH`), or `<workspace>/target/debug/husk` by default.
//! Tests drive it exactly like an engine would: through its command line, with
//! a bundle directory holding `config.json` and a busybox rootfs.
//!
//! Every test owns a [`Sandbox`]: a temp dir with its own `--root`, bundle and
//! host-side directories. Dropping the sandbox force-deletes every container
//! the test used, then checks that nothing was left behind (state entries,
//! mounts under the sandbox, cgroups named after the container) and panics if
//! something was.

pub mod command;
pub mod config;
pub mod console;
pub mod engines;
pub mod mountinfo;
pub mod netns;
pub mod networld;
pub mod reaper;
pub mod rootfs;
pub mod runtime;
pub mod sandbox;
pub mod wait;

pub use command::Output;
pub use config::Config;
pub use console::{ConsoleSocket, Pty};
pub use netns::NamedNetns;
pub use sandbox::Sandbox;
pub use wait::{wait_for_file, wait_until};
