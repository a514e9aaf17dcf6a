//! Process-wide readiness: the flags the watch, the Kubernetes calls and the shutdown sequence
//! set, and the one reason `/readyz` gives when the gateway is not ready. The HTTP probe
//! handler (`api::probes`) only reads them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Readiness flags.
#[derive(Debug)]
pub struct Health {
    index_synced: AtomicBool,
    /// Set by the owner cache once every one of its watches has tried its first list (true
    /// when there is no cache).
    owners_listed: AtomicBool,
    /// Set by the watch: its stream failed and has not delivered (or probed) since.
    kube_unreachable: AtomicBool,
    /// Set by the Kubernetes calls: until when (ms after `started`) the circuit breaker is
    /// open. Isolated failed calls do not count; `kubernetes.breaker_failures` consecutive ones
    /// do. Once the cooldown ends the next call probes, so readiness comes back with it (and
    /// leaves again for another cooldown if the probe fails).
    breaker_open_until_ms: AtomicU64,
    shutting_down: AtomicBool,
    started: Instant,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            index_synced: AtomicBool::new(false),
            owners_listed: AtomicBool::new(true),
            kube_unreachable: AtomicBool::new(false),
            breaker_open_until_ms: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
            started: Instant::now(),
        }
    }
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

    /// The owner cache has tried (or not yet) the first list of each of its watches.
    pub fn set_owners_listed(&self, listed: bool) {
        self.owners_listed.store(listed, Ordering::Release);
    }

    /// The watch lost the API (or reached it again).
    pub fn set_kube_reachable(&self, reachable: bool) {
        self.kube_unreachable.store(!reachable, Ordering::Release);
    }

    /// Whether the watch reached the API last time it tried.
    pub fn is_kube_reachable(&self) -> bool {
        !self.kube_unreachable.load(Ordering::Acquire)
    }

    /// The Kubernetes calls' circuit breaker is open until `until` (`None`: closed).
    pub fn set_breaker_open_until(&self, until: Option<Instant>) {
        let ms = until.map_or(0, |until| self.ms(until).max(1));
        self.breaker_open_until_ms.store(ms, Ordering::Release);
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.started).as_millis()).unwrap_or(u64::MAX)
    }

    fn breaker_open(&self) -> bool {
        self.breaker_open_until_ms.load(Ordering::Acquire) > self.ms(Instant::now())
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
        } else if !self.owners_listed.load(Ordering::Acquire) {
            Some("owner cache has not finished its first lists")
        } else if self.kube_unreachable.load(Ordering::Acquire) || self.breaker_open() {
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
        health.set_breaker_open_until(None);
        assert!(
            health.not_ready_reason().is_some(),
            "a good call does not hide a lost watch"
        );
        health.set_kube_reachable(true);
        let soon = Instant::now() + std::time::Duration::from_millis(50);
        health.set_breaker_open_until(Some(soon));
        assert!(health.not_ready_reason().is_some(), "open breaker");
        std::thread::sleep(std::time::Duration::from_millis(60));
        assert_eq!(
            health.not_ready_reason(),
            None,
            "cooldown over: the next call probes"
        );
        health.set_breaker_open_until(Some(Instant::now() + std::time::Duration::from_secs(60)));
        health.set_breaker_open_until(None);
        assert_eq!(health.not_ready_reason(), None, "closed");
    }
}
