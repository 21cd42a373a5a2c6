//! Interface names derived from a container id.

/// The container's end of the veth pair, inside its network namespace.
pub const CONTAINER_IFNAME: &str = "eth0";

/// The host end: `vh` + 12 hex digits of a 64-bit FNV-1a hash of the id (14 bytes, under the
/// kernel's 15). Stable, so a teardown without a record could find it again.
pub fn host_veth(container_id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("vh{:012x}", h >> 16)
}

/// OCI ids name files under the state dir: refuse anything that is not a plain file name.
pub fn valid_container_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '=' | '@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_short_distinct_and_stable() {
        let a = host_veth("a");
        assert_eq!(a.len(), 14);
        assert_eq!(a, host_veth("a"));
        let names: std::collections::HashSet<String> = (0..10_000)
            .map(|i| host_veth(&format!("ctr-{i}")))
            .collect();
        assert_eq!(names.len(), 10_000);
    }

    #[test]
    fn container_ids() {
        assert!(valid_container_id("abc-123_x.y"));
        for bad in ["", ".", "..", "a/b", "a b", "a\0b"] {
            assert!(!valid_container_id(bad), "{bad:?}");
        }
    }
}
