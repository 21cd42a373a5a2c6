//! Keep SIGTERM and SIGINT pending while a teardown runs, so it is never cut half-way.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

/// Blocks SIGTERM and SIGINT for the calling thread until dropped; then the previous mask
/// returns and a signal that arrived meanwhile is delivered.
pub struct TerminationBlocked {
    previous: Option<SigSet>,
}

impl TerminationBlocked {
    pub fn new() -> TerminationBlocked {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        let mut previous = SigSet::empty();
        // Cannot fail with a valid `how`; if it ever did, teardown still runs, just interruptible.
        let ok = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut previous)).is_ok();
        TerminationBlocked {
            previous: ok.then_some(previous),
        }
    }
}

impl Default for TerminationBlocked {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TerminationBlocked {
    fn drop(&mut self) {
        if let Some(previous) = &self.previous {
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(previous), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_then_restores() {
        let blocked = |s: Signal| SigSet::thread_get_mask().unwrap().contains(s);
        assert!(!blocked(Signal::SIGTERM));
        {
            let _g = TerminationBlocked::new();
            assert!(blocked(Signal::SIGTERM) && blocked(Signal::SIGINT));
        }
        assert!(!blocked(Signal::SIGTERM) && !blocked(Signal::SIGINT));
    }
}
