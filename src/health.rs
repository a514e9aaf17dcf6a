//! Process-wide readiness: the flags the watch, the Kubernetes calls and the shutdown sequence
//! set, and the one reason `/readyz` gives when the gateway is not ready. The HTTP probe
//! handler (`api::probes`) only reads them.

use std::sync::atomic::{AtomicBool, Ordering};

/// Readiness flags.
#[derive(Debug, Default)]
pub struct Health {
    index_synced: AtomicBool,
    kube_unreachable: AtomicBool,
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

    /// The last Kubernetes call failed for lack of a connection (or succeeded again).
    pub fn set_kube_reachable(&self, reachable: bool) {
        self.kube_unreachable.store(!reachable, Ordering::Release);
    }

    /// Whether the Kubernetes API answered last time it was asked.
    pub fn is_kube_reachable(&self) -> bool {
        !self.kube_unreachable.load(Ordering::Acquire)
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
        } else if self.kube_unreachable.load(Ordering::Acquire) {
            Some("Kubernetes API unreachable")
        } else {
            None
        }
    }
}
