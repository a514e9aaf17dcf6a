//! Storm aggregation (DESIGN.md §6): the pure [`rule`], and the coalescing [`queue`] that
//! writes `status.stormAggregation` in the background (or, in `sync` mode, before the
//! response, to measure the alternative).

pub mod queue;
pub mod rule;

use std::sync::Arc;

use jiff::Timestamp;

use crate::config::StormUpdates;
use crate::dedup::{CommitObserver, Index, RrState};
use crate::fingerprint::Fingerprint;
use crate::k8s::store::RrStore;
use crate::telemetry::Metrics;
pub use queue::{StormQueue, StormWrite};
pub use rule::{History, StormRule};

/// Turns committed deduplication writes into storm status writes.
pub struct Storm<S> {
    rule: StormRule,
    mode: StormUpdates,
    queue: Arc<StormQueue>,
    store: Arc<S>,
    index: Arc<Index>,
    metrics: Metrics,
}

impl<S: RrStore> Storm<S> {
    /// A storm observer; in `async` mode its `queue` must be flushed by [`queue::run`].
    /// Storm writes update `index` with the RR they return.
    pub fn new(
        rule: StormRule,
        mode: StormUpdates,
        queue: Arc<StormQueue>,
        store: Arc<S>,
        index: Arc<Index>,
        metrics: Metrics,
    ) -> Self {
        Storm {
            rule,
            mode,
            queue,
            store,
            index,
            metrics,
        }
    }
}

impl<S: RrStore> CommitObserver for Storm<S> {
    async fn committed(
        &self,
        fingerprint: &Fingerprint,
        state: &RrState,
        crossed: bool,
        _now: Timestamp,
    ) {
        if crossed {
            self.metrics.storms_detected.increment(1);
        }
        let Some(status) = self.rule.status(fingerprint, &state.name, &state.history) else {
            return;
        };
        let write = StormWrite {
            count: state.history.count,
            status,
        };
        match self.mode {
            // The engine already wrote it with the deduplication patch.
            StormUpdates::Inline => {}
            StormUpdates::Async => self.queue.offer(state.name.clone(), write),
            StormUpdates::Sync => {
                queue::write(
                    &*self.store,
                    &self.index,
                    &self.metrics,
                    &state.name,
                    &write,
                )
                .await;
            }
        }
    }
}
