//! The coalescing storm-status queue: at most one pending state per RR (a newer one replaces
//! it), written by one flusher every `storm.flush_interval` with at most one patch in flight
//! per RR. Memory is bounded by `storm.queue_capacity` distinct RRs, whatever the signal rate;
//! offering never blocks and never fails the request that caused it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::index::Index;
use crate::k8s::store::RrStore;
use crate::k8s::types::StormAggregationStatus;
use crate::telemetry::Metrics;

/// One RR's latest storm state.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    /// `status.deduplication.occurrenceCount` the state was derived at; the patch only
    /// applies while the RR still has that count, so a stale state never overwrites a newer
    /// one written by another replica.
    pub count: i64,
    /// The block to write.
    pub status: StormAggregationStatus,
}

/// The queue; shared between the engine (offer) and the flusher.
pub struct Queue {
    pending: Mutex<HashMap<Arc<str>, Write, ahash::RandomState>>,
    capacity: usize,
    metrics: Metrics,
}

impl Queue {
    /// A queue holding at most `capacity` RRs.
    pub fn new(capacity: usize, metrics: Metrics) -> Self {
        Queue {
            pending: Mutex::new(HashMap::default()),
            capacity,
            metrics,
        }
    }

    /// Offers a state; replaces an older pending one of the same RR.
    pub fn offer(&self, rr: Arc<str>, write: Write) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let len = pending.len();
        match pending.get_mut(&rr) {
            Some(queued) => {
                self.metrics.storm_coalesced.increment(1);
                if write.count > queued.count {
                    *queued = write;
                }
            }
            None if len >= self.capacity => self.metrics.storm_queue_overflow.increment(1),
            None => {
                pending.insert(rr, write);
                self.metrics.storm_queue_pending.set((len + 1) as f64);
            }
        }
    }

    /// Takes everything pending.
    fn take(&self) -> Vec<(Arc<str>, Write)> {
        let Ok(mut pending) = self.pending.lock() else {
            return Vec::new();
        };
        self.metrics.storm_queue_pending.set(0.0);
        pending.drain().collect()
    }

    /// RRs with a pending state.
    pub fn len(&self) -> usize {
        self.pending.lock().map_or(0, |p| p.len())
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes one storm state; returns whether the apiserver took it.
///
/// The RR the write returns goes into the index: the write moved its `resourceVersion`, and
/// the next duplicate's conditional patch must carry the new one instead of losing a 409.
pub async fn write<S: RrStore>(
    store: &S,
    index: &Index,
    metrics: &Metrics,
    rr: &str,
    write: &Write,
) -> bool {
    match store.patch_storm(rr, write.count, &write.status).await {
        Ok(stored) => {
            index.apply(&stored);
            metrics.storm_patches_ok.increment(1);
            true
        }
        Err(error) => {
            // Stale (the count moved on: a newer state follows), the RR is gone, or the API is
            // down: storm status is informational, so it is logged and dropped.
            metrics.storm_patches_error.increment(1);
            tracing::debug!(rr, %error, "storm status not written");
            false
        }
    }
}

/// The flusher: every `interval`, writes what is pending, `concurrency` patches at a time.
/// When `stop` turns true it writes what is left once and returns.
pub async fn run<S: RrStore>(
    queue: Arc<Queue>,
    store: Arc<S>,
    index: Arc<Index>,
    metrics: Metrics,
    interval: Duration,
    concurrency: usize,
    stop: CancellationToken,
) {
    // The first tick one interval from now (not immediately), so a state offered right after
    // start-up waits like any other.
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.cancelled() => true,
        };
        flush(&queue, &*store, &index, &metrics, concurrency).await;
        if stopping {
            return;
        }
    }
}

/// Writes everything pending now.
pub async fn flush<S: RrStore>(
    queue: &Queue,
    store: &S,
    index: &Index,
    metrics: &Metrics,
    concurrency: usize,
) {
    let batch = queue.take();
    futures::stream::iter(batch)
        .for_each_concurrent(concurrency, |(rr, state)| async move {
            write(store, index, metrics, &rr, &state).await;
        })
        .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn state(count: i64) -> Write {
        Write {
            count,
            status: StormAggregationStatus {
                is_part_of_storm: true,
                storm_id: None,
                storm_detected_at: None,
                aggregated_count: count,
                window_occurrences: 0,
            },
        }
    }

    #[test]
    fn newer_state_replaces_pending_and_older_does_not() {
        let queue = Queue::new(10, Metrics::new());
        queue.offer("a".into(), state(5));
        queue.offer("a".into(), state(7));
        queue.offer("a".into(), state(6));
        let taken = queue.take();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].1.count, 7);
        assert!(queue.is_empty());
    }

    #[test]
    fn bounded_by_distinct_rrs() {
        let queue = Queue::new(2, Metrics::new());
        for rr in ["a", "b", "c"] {
            queue.offer(rr.into(), state(1));
        }
        assert_eq!(queue.len(), 2);
        queue.offer("a".into(), state(2));
        assert_eq!(queue.len(), 2, "an RR already queued still coalesces");
    }
}
