//! Process-wide readiness: the flags the watch, the Kubernetes calls and the shutdown sequence
//! set, and the one reason `/readyz` gives when the gateway is not ready. The HTTP probe
//! handler (`api::probes`) only reads them.

use std::sync::atomic::{AtomicBool, Ordering};

/// Readiness flags.
#[derive(Debug, Default)]
pub struct Health {
    index_synced: AtomicBool,
    /// Set by the watch: its stream failed and has not delivered (or probed) since.
    kube_unreachable: AtomicBool,
    /// Set by the Kubernetes calls: the circuit breaker is open. Isolated failed calls do not
    /// count; `kubernetes.breaker_failures` consecutive ones do.
    breaker_open: AtomicBool,
    shutting_down: AtomicBool,
}

impl Health {
    /// A fresh state: not ready until the index is synced.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index finished (or lost) a full list.
    pub fn set_index_synced(&self, synced: bool) {
        self.index_synced.store(synced, Ordering::Release);
    }

    /// The watch lost the API (or reached it again).
    pub fn set_kube_reachable(&self, reachable: bool) {
        self.kube_unreachable.store(!reachable, Ordering::Release);
    }

    /// Whether the watch reached the API last time it tried.
    pub fn is_kube_reachable(&self) -> bool {
        !self.kube_unreachable.load(Ordering::Acquire)
    }

    /// The Kubernetes calls' circuit breaker opened (or closed).
    pub fn set_breaker_open(&self, open: bool) {
        self.breaker_open.store(open, Ordering::Release);
    }

    /// Shutdown started: readiness turns false for good.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// True once shutdown started.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Why the gateway is not ready, if it is not.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.shutting_down.load(Ordering::Acquire) {
            Some("shutting down")
        } else if !self.index_synced.load(Ordering::Acquire) {
            Some("RemediationRequest index has not finished its list")
        } else if self.kube_unreachable.load(Ordering::Acquire)
            || self.breaker_open.load(Ordering::Acquire)
        {
            Some("Kubernetes API unreachable")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_and_the_breaker_each_take_readiness_away() {
        let health = Health::new();
        health.set_index_synced(true);
        assert_eq!(health.not_ready_reason(), None);
        health.set_kube_reachable(false);
        health.set_breaker_open(false);
        assert!(
            health.not_ready_reason().is_some(),
            "a good call does not hide a lost watch"
        );
        health.set_kube_reachable(true);
        health.set_breaker_open(true);
        assert!(health.not_ready_reason().is_some());
        health.set_breaker_open(false);
        assert_eq!(health.not_ready_reason(), None);
    }
}
