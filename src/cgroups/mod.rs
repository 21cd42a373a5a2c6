//! placeholder: the cgroup manager
