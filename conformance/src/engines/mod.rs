//! Real container engines (podman, containerd) driving the runtime under test
//! end to end: private engine instances, an offline busybox image, a terminal
//! for `-t`, the packages they need, and leftover scans.

pub mod containerd;
pub mod image;
pub mod packages;
pub mod podman;
pub mod pty;
pub mod run;
pub mod scan;

pub use containerd::Containerd;
pub use podman::Podman;
pub use pty::PtySession;
pub use run::{Cmd, Ran};
