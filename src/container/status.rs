//! The status users see, derived from what husk recorded and what the kernel says now.
//! Pure predicates decide which operation each status allows.

use serde::Serialize;

use crate::state::Phase;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// What the kernel says about the container right now.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed {
    /// Init (same pid, same start time) exists and is not a zombie.
    pub init_alive: bool,
    /// The exec fifo still exists: `start` has not consumed it.
    pub fifo_present: bool,
    pub frozen: bool,
    /// An init pid was ever recorded.
    pub init_started: bool,
}

pub fn derive(phase: Phase, seen: Observed) -> Status {
    match (phase, seen.init_alive) {
        (Phase::Creating, true) => Status::Creating,
        // No init yet: `create` is still setting up (a create that died here is `delete
        // --force`d).
        (Phase::Creating, false) if !seen.init_started => Status::Creating,
        (_, false) => Status::Stopped,
        (Phase::Created, true) if seen.frozen => Status::Paused,
        (Phase::Created, true) if seen.fifo_present => Status::Created,
        (Phase::Created, true) => Status::Running,
    }
}

pub fn can_start(s: Status) -> bool {
    s == Status::Created
}

pub fn can_kill(s: Status) -> bool {
    matches!(
        s,
        Status::Created | Status::Running | Status::Paused | Status::Creating
    )
}

/// `delete` without --force takes stopped containers and, like runc, created ones (init has
/// not run user code yet, so stopping it loses nothing).
pub fn can_delete(s: Status, force: bool) -> bool {
    force || matches!(s, Status::Stopped | Status::Created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(init_alive: bool, fifo_present: bool, frozen: bool) -> Observed {
        Observed {
            init_alive,
            fifo_present,
            frozen,
            init_started: true,
        }
    }

    #[test]
    fn derivation() {
        let no_init = Observed {
            init_started: false,
            ..Observed::default()
        };
        assert_eq!(derive(Phase::Creating, no_init), Status::Creating);
        assert_eq!(
            derive(Phase::Creating, seen(true, true, false)),
            Status::Creating
        );
        assert_eq!(
            derive(Phase::Creating, seen(false, true, false)),
            Status::Stopped
        );
        assert_eq!(
            derive(Phase::Created, seen(true, true, false)),
            Status::Created
        );
        assert_eq!(
            derive(Phase::Created, seen(true, false, false)),
            Status::Running
        );
        assert_eq!(
            derive(Phase::Created, seen(true, false, true)),
            Status::Paused
        );
        assert_eq!(
            derive(Phase::Created, seen(false, false, false)),
            Status::Stopped
        );
    }

    #[test]
    fn permissions() {
        assert!(can_start(Status::Created));
        assert!(!can_start(Status::Running) && !can_start(Status::Stopped));
        assert!(!can_kill(Status::Stopped));
        assert!(can_delete(Status::Stopped, false) && can_delete(Status::Created, false));
        assert!(!can_delete(Status::Running, false) && can_delete(Status::Running, true));
    }
}
