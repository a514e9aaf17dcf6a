//! The coalescing storm-status queue: at most one pending state per RR (a newer one replaces
//! it), written by one flusher every `storm.flush_interval` with at most one patch in flight
//! per RR. Memory is bounded by `storm.queue_capacity` distinct RRs, whatever the signal rate;
//! offering never blocks and never fails the request that caused it.
//!
//! A write that failed for a reason a retry can fix (a timeout, the API unreachable, the
//! breaker open) goes back into the queue with a backoff (the flush interval, doubling up to
//! [`MAX_BACKOFF`]) and is retried until it lands or a newer state supersedes it; a stale write
//! (the count moved on) or one for a deleted RR is dropped. At shutdown the flusher keeps
//! retrying what is left for its own share of the grace period (`storm.final_flush_timeout`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::index::Index;
use crate::k8s::store::{RrStore, StoreError};
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

/// Longest wait between retries of a failed write.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A pending write and when it may go out.
#[derive(Clone, Debug)]
struct Pending {
    write: Write,
    /// Failed attempts so far.
    failures: u32,
    not_before: Option<Instant>,
}

/// The queue; shared between the engine (offer) and the flusher.
pub struct Queue {
    pending: Mutex<HashMap<Arc<str>, Pending, ahash::RandomState>>,
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
        self.put(
            rr,
            Pending {
                write,
                failures: 0,
                not_before: None,
            },
            true,
        );
    }

    /// Puts a failed write back, unless a newer state of its RR is already pending.
    fn retry(&self, rr: Arc<str>, pending: Pending) {
        self.put(rr, pending, false);
    }

    fn put(&self, rr: Arc<str>, new: Pending, fresh: bool) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let len = pending.len();
        match pending.get_mut(&rr) {
            Some(queued) => {
                if fresh {
                    self.metrics.storm_coalesced.increment(1);
                }
                if new.write.count > queued.write.count {
                    *queued = new;
                }
            }
            None if len >= self.capacity => self.metrics.storm_queue_overflow.increment(1),
            None => {
                pending.insert(rr, new);
                self.metrics.storm_queue_pending.set((len + 1) as f64);
            }
        }
    }

    /// Takes everything pending that is due at `now`.
    fn take(&self, now: Instant) -> Vec<(Arc<str>, Pending)> {
        let Ok(mut pending) = self.pending.lock() else {
            return Vec::new();
        };
        let due: Vec<Arc<str>> = pending
            .iter()
            .filter(|(_, p)| p.not_before.is_none_or(|at| at <= now))
            .map(|(rr, _)| rr.clone())
            .collect();
        let taken = due
            .into_iter()
            .filter_map(|rr| pending.remove_entry(&rr))
            .collect();
        self.metrics.storm_queue_pending.set(pending.len() as f64);
        taken
    }

    /// Takes everything pending, due or not (the final flush).
    fn take_all(&self) -> Vec<(Arc<str>, Pending)> {
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

/// What became of one storm write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The apiserver took it.
    Yes,
    /// It will never apply: stale (the count moved on, a newer state follows), or the RR is
    /// gone.
    Never,
    /// It failed for a reason a retry can fix.
    Retry,
}

/// Writes one storm state.
///
/// The RR the write returns goes into the index: the write moved its `resourceVersion`, and
/// the next duplicate's conditional patch must carry the new one instead of losing a 409.
pub async fn write<S: RrStore>(
    store: &S,
    index: &Index,
    metrics: &Metrics,
    rr: &str,
    write: &Write,
) -> Written {
    match store.patch_storm(rr, write.count, &write.status).await {
        Ok(stored) => {
            index.apply(&stored);
            metrics.storm_patches_ok.increment(1);
            Written::Yes
        }
        Err(error) => {
            metrics.storm_patches_error.increment(1);
            tracing::debug!(rr, %error, "storm status not written");
            match error {
                StoreError::Timeout(_) | StoreError::Unavailable(_) | StoreError::BreakerOpen => {
                    Written::Retry
                }
                _ => Written::Never,
            }
        }
    }
}

/// The flusher: every `interval`, writes what is due, `concurrency` patches at a time. When
/// `stop` is cancelled it keeps writing what is left, failed writes included, for at most
/// `final_flush` and returns.
#[allow(clippy::too_many_arguments)]
pub async fn run<S: RrStore>(
    queue: Arc<Queue>,
    store: Arc<S>,
    index: Arc<Index>,
    metrics: Metrics,
    interval: Duration,
    concurrency: usize,
    final_flush: Duration,
    stop: CancellationToken,
) {
    // The first tick one interval from now (not immediately), so a state offered right after
    // start-up waits like any other.
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => break,
        };
        flush(&queue, &*store, &index, &metrics, concurrency, interval).await;
    }
    // Last step of shutdown: everything pending goes out now, retried until the budget ends.
    let deadline = Instant::now() + final_flush;
    let retry_every = interval.min(Duration::from_millis(200));
    loop {
        let batch = queue.take_all();
        let left = write_all(
            batch,
            &queue,
            &*store,
            &index,
            &metrics,
            concurrency,
            retry_every,
        )
        .await;
        if left == 0 || Instant::now() + retry_every >= deadline {
            if left > 0 {
                tracing::warn!(rrs = left, "storm status not written before shutdown");
            }
            return;
        }
        tokio::time::sleep(retry_every).await;
    }
}

/// Writes everything due now; failed writes that a retry can fix go back with a backoff of
/// `interval` doubled per failure.
pub async fn flush<S: RrStore>(
    queue: &Queue,
    store: &S,
    index: &Index,
    metrics: &Metrics,
    concurrency: usize,
    interval: Duration,
) {
    let batch = queue.take(Instant::now());
    write_all(batch, queue, store, index, metrics, concurrency, interval).await;
}

/// Writes `batch`; returns how many went back into the queue.
async fn write_all<S: RrStore>(
    batch: Vec<(Arc<str>, Pending)>,
    queue: &Queue,
    store: &S,
    index: &Index,
    metrics: &Metrics,
    concurrency: usize,
    interval: Duration,
) -> usize {
    let retried = std::sync::atomic::AtomicUsize::new(0);
    futures::stream::iter(batch)
        .for_each_concurrent(concurrency, |(rr, pending)| {
            let retried = &retried;
            async move {
                if write(store, index, metrics, &rr, &pending.write).await == Written::Retry {
                    let failures = pending.failures.saturating_add(1);
                    let backoff = interval
                        .saturating_mul(1 << failures.min(16))
                        .min(MAX_BACKOFF);
                    let pending = Pending {
                        failures,
                        not_before: Some(Instant::now() + backoff),
                        ..pending
                    };
                    queue.retry(rr, pending);
                    retried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
        .await;
    retried.into_inner()
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
        let taken = queue.take(Instant::now());
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].1.write.count, 7);
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
