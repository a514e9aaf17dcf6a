//! Process-wide shutdown in the order STYLE.md gives: first stop taking work in (the listeners
//! stop accepting, the watch ends), then, once in-flight requests drained, stop the background
//! work that must run last (the storm queue's final flush). One root token; intake is its child,
//! so cancelling the root also ends anything still waiting on intake.

use tokio_util::sync::CancellationToken;

/// The shutdown tokens of one gateway.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    root: CancellationToken,
    intake: CancellationToken,
}

impl Shutdown {
    /// Nothing cancelled yet.
    pub fn new() -> Self {
        let root = CancellationToken::new();
        let intake = root.child_token();
        Shutdown { root, intake }
    }

    /// Cancelled at the first step: stop accepting and stop watching.
    pub fn intake(&self) -> CancellationToken {
        self.intake.clone()
    }

    /// Cancelled at the last step, after the requests drained.
    pub fn last(&self) -> CancellationToken {
        self.root.clone()
    }

    /// First step.
    pub fn stop_intake(&self) {
        self.intake.cancel();
    }

    /// Last step (also cancels intake).
    pub fn stop_all(&self) {
        self.root.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intake_stops_first_and_the_root_stops_everything() {
        let shutdown = Shutdown::new();
        shutdown.stop_intake();
        assert!(shutdown.intake().is_cancelled());
        assert!(!shutdown.last().is_cancelled());

        let shutdown = Shutdown::new();
        shutdown.stop_all();
        assert!(shutdown.intake().is_cancelled() && shutdown.last().is_cancelled());
    }
}
