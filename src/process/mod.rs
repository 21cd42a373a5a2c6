//! The container's first processes: the channel between husk and init, the clone sequence
//! that puts init into its namespaces, and the steps init takes before it execs.

pub mod channel;
pub mod exec;
pub mod init;
pub mod spawn;
