//! Storm aggregation (DESIGN.md §6): the pure [`rule`], the coalescing [`queue`], and the
//! [`Writer`] that decides, in this one place, how `status.stormAggregation` reaches the RR
//! ([`Mode`]): inside the deduplication patch, through the background queue, or before the
//! response.

pub mod queue;
pub mod rule;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::fingerprint::Fingerprint;
use crate::index::{Index, RrState};
use crate::k8s::history::History;
use crate::k8s::store::RrStore;
use crate::k8s::types::StormAggregationStatus;
use crate::telemetry::Metrics;
pub use queue::{Queue, Write};
pub use rule::Rule;

/// How storm status reaches the RR (`storm.updates`).
#[derive(Clone, Copy, Debug, Default, serde::Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// In the deduplication patch itself (the default): no extra write and no staleness, at
    /// the price of a few hundred bytes per duplicate patch of a storming RR (see PERF.md).
    #[default]
    Inline,
    /// Through the coalescing background queue; never delays a response. For storm writes
    /// that cannot ride on a deduplication write.
    Async,
    /// Before responding; exists only to measure the alternative.
    Sync,
}

/// Turns committed deduplication writes into storm status, as [`Mode`] says.
pub struct Writer<S> {
    rule: Rule,
    mode: Mode,
    queue: Arc<Queue>,
    store: Arc<S>,
    index: Arc<Index>,
    metrics: Metrics,
}

impl<S: RrStore> Writer<S> {
    /// A writer; in [`Mode::Async`] its queue is written by the task [`Writer::flusher`]
    /// returns. Storm writes update `index` with the RR they return.
    pub fn new(
        rule: Rule,
        mode: Mode,
        queue_capacity: usize,
        store: Arc<S>,
        index: Arc<Index>,
        metrics: Metrics,
    ) -> Self {
        Writer {
            rule,
            mode,
            queue: Arc::new(Queue::new(queue_capacity, metrics.clone())),
            store,
            index,
            metrics,
        }
    }

    /// The rule, whose history the deduplication patch keeps.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// The storm block to write inside the deduplication patch: only in [`Mode::Inline`], and
    /// only once the history crossed the threshold.
    pub fn inline(
        &self,
        fingerprint: &Fingerprint,
        rr: &str,
        history: &History,
    ) -> Option<StormAggregationStatus> {
        match self.mode {
            Mode::Inline => self.rule.status(fingerprint, rr, history),
            Mode::Async | Mode::Sync => None,
        }
    }

    /// Called after each committed deduplication write, before the signals it counted are
    /// answered. `state` is the RR as the write left it; `crossed` says this write crossed the
    /// threshold.
    pub async fn committed(&self, fingerprint: &Fingerprint, state: &RrState, crossed: bool) {
        if crossed {
            self.metrics.storms_detected.increment(1);
        }
        if self.mode == Mode::Inline {
            return;
        }
        let Some(status) = self.rule.status(fingerprint, &state.name, &state.history) else {
            return;
        };
        let write = Write {
            count: state.history.count,
            status,
        };
        match self.mode {
            Mode::Async => self.queue.offer(state.name.clone(), write),
            Mode::Sync => {
                queue::write(
                    &*self.store,
                    &self.index,
                    &self.metrics,
                    &state.name,
                    &write,
                )
                .await;
            }
            Mode::Inline => {}
        }
    }

    /// The background task that writes the queue every `interval`, `concurrency` patches at
    /// a time, and what is left for at most `final_flush` once `stop` is cancelled; `None`
    /// unless the mode is [`Mode::Async`].
    pub fn flusher(
        &self,
        interval: Duration,
        concurrency: usize,
        final_flush: Duration,
        stop: CancellationToken,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        (self.mode == Mode::Async).then(|| {
            queue::run(
                self.queue.clone(),
                self.store.clone(),
                self.index.clone(),
                self.metrics.clone(),
                interval,
                concurrency,
                final_flush,
                stop,
            )
        })
    }

    /// The queue (for tests that flush it by hand).
    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }
}
