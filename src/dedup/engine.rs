//! The decision and the writes: create a new RR, or count the signal onto the active one with
//! one conditional merge-patch of `/status`.
//!
//! **Group commit.** Signals of one fingerprint are queued in a per-fingerprint slot; one
//! drain task per busy fingerprint takes everything queued, writes it in one call (count += k)
//! and hands each signal its own ordinal. While that call is in flight, newer signals queue
//! and go out together in the next call. The drain task is spawned when a slot becomes busy and
//! ends when it is empty, so tasks are bounded by the fingerprints in flight, which
//! `api.max_in_flight` bounds; running the write in its own task also means a client hanging
//! up cannot abandon a write that other signals wait on.
//!
//! **Exactness.** Every status patch carries the `resourceVersion` its count was read at, so a
//! racing write (another replica, the orchestrator) turns into 409 Conflict, never a lost
//! increment; the loser refreshes that one RR and tries again, a bounded number of times.

use std::collections::VecDeque;
use std::sync::Arc;

use dashmap::DashMap;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::oneshot;

use super::index::{Index, RrState};
use super::rr;
use crate::clock::Clock;
use crate::fingerprint::Fingerprint;
use crate::ingest::Signal;
use crate::k8s::store::{RrStore, StoreError};
use crate::processor::{Outcome, ProcessError, Processor};
use crate::storm::{History, StormRule};
use crate::telemetry::{Metrics, Outcome as CallOutcome};

/// Notified of every committed duplicate write, in commit order per fingerprint, before the
/// signals it counted are answered (the storm status hooks in here).
pub trait CommitObserver: Send + Sync + 'static {
    /// `state` is the RR as the write left it; `crossed` says this write crossed the storm
    /// threshold.
    fn committed(
        &self,
        fingerprint: &Fingerprint,
        state: &RrState,
        crossed: bool,
        now: Timestamp,
    ) -> impl std::future::Future<Output = ()> + Send;
}

/// An observer that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl CommitObserver for NoObserver {
    async fn committed(&self, _: &Fingerprint, _: &RrState, _: bool, _: Timestamp) {}
}

/// What the engine is told at start-up.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Controller namespace of the RRs.
    pub namespace: String,
    /// The storm rule, whose history the dedup patch keeps.
    pub rule: StormRule,
    /// Attempts per commit before answering 503 (`kubernetes.max_attempts`).
    pub max_attempts: u32,
    /// `storm.updates = inline`: the storm block rides on the deduplication patch.
    pub inline_storm: bool,
}

/// The dedup engine; cheap to clone.
pub struct Engine<S, O = NoObserver> {
    inner: Arc<Inner<S, O>>,
}

impl<S, O> Clone for Engine<S, O> {
    fn clone(&self) -> Self {
        Engine {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S, O> {
    store: S,
    index: Arc<Index>,
    namespace: String,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    observer: O,
    rule: StormRule,
    max_attempts: u32,
    inline_storm: bool,
    slots: DashMap<Fingerprint, Vec<Waiter>, ahash::RandomState>,
}

struct Waiter {
    signal: Signal,
    received: Timestamp,
    reply: oneshot::Sender<Result<Outcome, ProcessError>>,
}

impl<S: RrStore, O: CommitObserver> Engine<S, O> {
    /// An engine writing RRs through `store`.
    pub fn new(
        store: S,
        index: Arc<Index>,
        settings: EngineSettings,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        observer: O,
    ) -> Self {
        let EngineSettings {
            namespace,
            rule,
            max_attempts,
            inline_storm,
        } = settings;
        Engine {
            inner: Arc::new(Inner {
                store,
                index,
                namespace,
                clock,
                metrics,
                observer,
                rule,
                max_attempts,
                inline_storm,
                slots: DashMap::default(),
            }),
        }
    }

    /// The index this engine decides with.
    pub fn index(&self) -> &Arc<Index> {
        &self.inner.index
    }

    /// Serves one fingerprint's queue until it is empty.
    async fn drain(self, fingerprint: Fingerprint) {
        let inner = &self.inner;
        loop {
            let batch = match inner.slots.get_mut(&fingerprint) {
                Some(mut waiters) => std::mem::take(&mut *waiters),
                None => return,
            };
            if batch.is_empty() {
                // Leave only if nobody queued since the take; otherwise serve them.
                if inner
                    .slots
                    .remove_if(&fingerprint, |_, waiters| waiters.is_empty())
                    .is_some()
                {
                    return;
                }
                continue;
            }
            self.commit(fingerprint, batch.into()).await;
        }
    }

    /// Records `pending` (all of one fingerprint), replying to each.
    async fn commit(&self, fingerprint: Fingerprint, mut pending: VecDeque<Waiter>) {
        let inner = &self.inner;
        let mut attempts = 0;
        // After a create, the RR's status.deduplication is initialised from this task (not
        // the request's) unless duplicates already queued will initialise it.
        let mut created: Option<RrState> = None;
        while !pending.is_empty() {
            attempts += 1;
            if attempts > inner.max_attempts {
                fail(
                    pending,
                    ProcessError::Unavailable(format!(
                        "gave up after {} attempts lost to concurrent writes",
                        inner.max_attempts
                    )),
                );
                return;
            }
            let now = inner.clock.now();
            match inner.index.active(&fingerprint, now) {
                None => {
                    let generation = inner.index.next_generation(&fingerprint);
                    let Some(first) = pending.front() else { return };
                    let rr = rr::build(&first.signal, &inner.namespace, generation, first.received);
                    let name = rr.metadata.name.clone().unwrap_or_default();
                    match inner.store.create(&rr).await {
                        Ok(stored) => {
                            inner.index.apply(&stored);
                            inner.metrics.created.increment(1);
                            created = RrState::from_rr(&stored).map(|(_, state)| state);
                            if let Some(waiter) = pending.pop_front() {
                                let _ = waiter.reply.send(Ok(Outcome::Created {
                                    name,
                                    namespace: inner.namespace.clone(),
                                }));
                            }
                        }
                        Err(StoreError::AlreadyExists) => {
                            // A racing create won (or a terminal RR holds the name): learn it.
                            inner.metrics.creation_error(CallOutcome::AlreadyExists);
                            if let Err(error) = self.refresh(&fingerprint, &name).await {
                                fail(pending, error);
                                return;
                            }
                        }
                        Err(error) => {
                            inner.metrics.creation_error(error.outcome());
                            fail(pending, to_process_error(error));
                            return;
                        }
                    }
                }
                Some(active) => {
                    created = None;
                    let base = active.history.count;
                    let arrivals: Vec<i64> = pending
                        .iter()
                        .map(|w| w.received.as_millisecond())
                        .collect();
                    let mut history = active.history.clone();
                    let crossed = inner.rule.advance(&mut history, &arrivals);
                    let last_seen = pending.iter().map(|w| w.received).max().unwrap_or(now);
                    let last_seen = last_seen.max(active.last_seen);
                    let mut patch = dedup_patch(
                        active.resource_version,
                        &history,
                        active.first_seen,
                        last_seen,
                    );
                    if inner.inline_storm
                        && let Some(storm) = inner.rule.status(&fingerprint, &active.name, &history)
                    {
                        patch["status"]["stormAggregation"] = serde_json::json!(storm);
                    }
                    match inner.store.patch_status(&active.name, &patch).await {
                        Ok(stored) => {
                            inner.index.apply(&stored);
                            inner.metrics.deduplicated.increment(pending.len() as u64);
                            let state =
                                RrState::from_rr(&stored).map_or(active.clone(), |(_, s)| s);
                            inner
                                .observer
                                .committed(&fingerprint, &state, crossed, now)
                                .await;
                            for (ordinal, waiter) in (base + 1..).zip(pending.drain(..)) {
                                let _ = waiter.reply.send(Ok(Outcome::Duplicate {
                                    name: active.name.to_string(),
                                    namespace: inner.namespace.clone(),
                                    count: ordinal,
                                    first_seen: active.first_seen,
                                    last_seen: waiter.received.max(active.first_seen),
                                }));
                            }
                        }
                        Err(StoreError::Conflict) => {
                            // A fresher index entry (a storm write's response, the watch)
                            // makes the GET unnecessary.
                            let fresher = inner.index.resource_version(&fingerprint, &active.name)
                                > Some(active.resource_version);
                            if fresher {
                                continue;
                            }
                            if let Err(error) = self.refresh(&fingerprint, &active.name).await {
                                fail(pending, error);
                                return;
                            }
                        }
                        Err(StoreError::NotFound) => inner.index.remove(&fingerprint, &active.name),
                        Err(error) => {
                            fail(pending, to_process_error(error));
                            return;
                        }
                    }
                }
            }
        }
        if let Some(state) = created.filter(|s| !s.initialised) {
            self.initialise(&state).await;
        }
    }

    /// Re-reads one RR after a lost race.
    async fn refresh(&self, fingerprint: &Fingerprint, name: &str) -> Result<(), ProcessError> {
        match self.inner.store.get(name).await {
            Ok(rr) => {
                self.inner.index.apply(&rr);
                Ok(())
            }
            Err(StoreError::NotFound) => {
                self.inner.index.remove(fingerprint, name);
                Ok(())
            }
            Err(error) => Err(to_process_error(error)),
        }
    }

    /// Writes `status.deduplication` of a fresh RR (count 1), conditionally: if anything wrote
    /// the status first, that write initialised it and this one is dropped.
    async fn initialise(&self, state: &RrState) {
        let patch = dedup_patch(
            state.resource_version,
            &state.history,
            state.first_seen,
            state.last_seen,
        );
        match self.inner.store.patch_status(&state.name, &patch).await {
            Ok(stored) => self.inner.index.apply(&stored),
            Err(error) => {
                tracing::debug!(rr = %state.name, %error, "status initialisation skipped")
            }
        }
    }
}

impl<S: RrStore, O: CommitObserver> Processor for Engine<S, O> {
    async fn process(&self, signal: Signal) -> Result<Outcome, ProcessError> {
        let inner = &self.inner;
        let fingerprint = signal.fingerprint;
        let (reply, response) = oneshot::channel();
        let waiter = Waiter {
            signal,
            received: inner.clock.now(),
            reply,
        };
        let lead = match inner.slots.entry(fingerprint) {
            dashmap::Entry::Occupied(mut queued) => {
                queued.get_mut().push(waiter);
                false
            }
            dashmap::Entry::Vacant(empty) => {
                empty.insert(vec![waiter]);
                true
            }
        };
        if lead {
            tokio::spawn(self.clone().drain(fingerprint));
        }
        response.await.unwrap_or_else(|_| {
            Err(ProcessError::Internal(
                "commit task ended without a reply".into(),
            ))
        })
    }
}

/// The conditional merge-patch of `status.deduplication`.
pub fn dedup_patch(
    resource_version: u64,
    history: &History,
    first_seen: Timestamp,
    last_seen: Timestamp,
) -> serde_json::Value {
    let mut dedup = serde_json::json!({
        "occurrenceCount": history.count,
        "firstSeenAt": Time(first_seen),
        "lastSeenAt": Time(last_seen),
        "recentOccurrences": history.recent,
    });
    if let Some((at, count)) = history.detected {
        dedup["stormDetectedAt"] =
            serde_json::json!(Timestamp::from_millisecond(at).ok().map(Time));
        dedup["stormDetectedCount"] = count.into();
    }
    serde_json::json!({
        "metadata": { "resourceVersion": resource_version.to_string() },
        "status": { "deduplication": dedup }
    })
}

fn fail(pending: VecDeque<Waiter>, error: ProcessError) {
    let message = error.to_string();
    let unavailable = matches!(error, ProcessError::Unavailable(_));
    for waiter in pending {
        let error = if unavailable {
            ProcessError::Unavailable(message.clone())
        } else {
            ProcessError::Internal(message.clone())
        };
        let _ = waiter.reply.send(Err(error));
    }
}

fn to_process_error(error: StoreError) -> ProcessError {
    match error {
        StoreError::Timeout(_) | StoreError::Unavailable(_) => {
            ProcessError::Unavailable(error.to_string())
        }
        // Conflict / AlreadyExists / NotFound are handled where they can occur; reaching here
        // with them, or with a refused object, is a bug.
        other => ProcessError::Internal(other.to_string()),
    }
}
