//! Group commit and the create-or-count decision.
//!
//! **Group commit.** Signals of one fingerprint are queued in a per-fingerprint slot; one
//! drain task per busy fingerprint takes everything queued, writes it in one call (count += k)
//! and hands each signal its own ordinal. While that call is in flight, newer signals queue
//! and go out together in the next call. The drain task is spawned when a slot becomes busy and
//! ends when it is empty, so tasks are bounded by the fingerprints in flight, which
//! `api.max_in_flight` bounds; running the write in its own task also means a client hanging
//! up cannot abandon a write that other signals wait on.
//!
//! **Status initialisation.** A create cannot carry `status` (the subresource ignores it), so a
//! fresh RR gets `status.deduplication` (count 1) from a second write. The drain task waits
//! `status_init_delay` for a duplicate first: one that arrives writes the full block with its
//! own count, and the initialisation is not paid for twice (Alertmanager HA sends the same
//! alert from every replica at once). The wait never delays a signal: a new waiter wakes it.
//!
//! **Managed fields.** Once an RR's count reaches [`ManagedFields::STRIP_AT`], the drain task
//! clears its `metadata.managedFields` (`kubernetes.managed_fields: strip`), so each later
//! write of it is cheaper for kube-apiserver (README "Cheaper writes"). Like the status
//! initialisation it waits until the fingerprint's queue is empty: signals that arrive are
//! counted first, and the clearing rides on the next quiet moment.
//!
//! **Exactness.** Every status patch carries the `resourceVersion` its count was read at, so a
//! racing write (another replica, the orchestrator) turns into 409 Conflict, never a lost
//! increment; the loser refreshes that one RR and tries again, a bounded number of times.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use jiff::Timestamp;
use tokio::sync::{Notify, oneshot};

use super::outcome::{Outcome, ProcessError};
use super::rr;
use crate::clock::Clock;
use crate::fingerprint::Fingerprint;
use crate::index::{self, Index, RrState};
use crate::ingest::Signal;
use crate::k8s::store::{ManagedFields, RrStore, StatusPatch, StoreError};
use crate::k8s::types::RemediationRequest;
use crate::k8s::types::SignalSource;
use crate::storm;
use crate::telemetry::{Ambiguity, CallOutcome, Metrics, Source, Verb};

/// What the engine is told at start-up.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Controller namespace of the RRs.
    pub namespace: String,
    /// Attempts per commit before answering 503 (`kubernetes.max_attempts`).
    pub max_attempts: u32,
    /// How long a fresh RR waits for a duplicate to initialise its status before the
    /// engine writes count 1 itself (`kubernetes.status_init_delay`).
    pub status_init_delay: Duration,
    /// What `spec.originalPayload` carries (`kubernetes.original_payload`).
    pub payload: rr::Payload,
    /// Whether RRs that repeat get their managed fields cleared (`kubernetes.managed_fields`).
    pub managed_fields: ManagedFields,
    /// End-to-end deadline of a signal (`api.request_timeout`): a signal whose remaining time
    /// cannot cover one more Kubernetes call is answered 503 before it is written.
    pub request_timeout: Duration,
    /// Deadline of one Kubernetes call (`kubernetes.call_timeout`).
    pub call_timeout: Duration,
}

/// The dedup engine; cheap to clone.
pub struct Engine<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Engine<S> {
    fn clone(&self) -> Self {
        Engine {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S> {
    store: Arc<S>,
    index: Arc<Index>,
    namespace: String,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    storm: storm::Writer<S>,
    max_attempts: u32,
    status_init_delay: Duration,
    payload: rr::Payload,
    managed_fields: ManagedFields,
    /// Cleared for good once the apiserver refuses a clearing of managed fields.
    clearing: AtomicBool,
    request_timeout: Duration,
    call_timeout: Duration,
    slots: DashMap<Fingerprint, Slot, ahash::RandomState>,
}

/// The signals of one fingerprint waiting for the next commit, and the bell that tells a
/// waiting drain task they came.
struct Slot {
    waiters: Vec<Waiter>,
    wake: Arc<Notify>,
}

struct Waiter {
    signal: Signal,
    received: Timestamp,
    /// When the signal must have been answered.
    deadline: tokio::time::Instant,
    reply: oneshot::Sender<Result<Outcome, ProcessError>>,
}

/// The writes a commit leaves for when its fingerprint's queue is empty, so that they never
/// delay a waiting signal.
#[derive(Default)]
struct Deferred {
    /// An RR this drain created whose status is still uninitialised (no duplicate followed
    /// in the same batch).
    uninitialised: Option<RrState>,
    /// An RR whose managed fields are due for clearing.
    clear: Option<Arc<str>>,
}

/// What one attempt of a commit left to do.
enum Step {
    /// Signals remain (a lost race, a fresh create): decide again.
    Again,
    /// Everything pending was answered.
    Done,
}

impl<S: RrStore> Engine<S> {
    /// An engine writing RRs through `store`, storm status through `storm`.
    pub fn new(
        store: Arc<S>,
        index: Arc<Index>,
        settings: Settings,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        storm: storm::Writer<S>,
    ) -> Self {
        Engine {
            inner: Arc::new(Inner {
                store,
                index,
                namespace: settings.namespace,
                clock,
                metrics,
                storm,
                max_attempts: settings.max_attempts,
                status_init_delay: settings.status_init_delay,
                payload: settings.payload,
                managed_fields: settings.managed_fields,
                clearing: AtomicBool::new(settings.managed_fields == ManagedFields::Strip),
                request_timeout: settings.request_timeout,
                call_timeout: settings.call_timeout,
                slots: DashMap::default(),
            }),
        }
    }

    /// The index this engine decides with.
    pub fn index(&self) -> &Arc<Index> {
        &self.inner.index
    }

    /// The storm writer.
    pub fn storm(&self) -> &storm::Writer<S> {
        &self.inner.storm
    }

    /// Records one signal: queues it on its fingerprint's slot and waits for its ordinal.
    pub async fn process(&self, signal: Signal) -> Result<Outcome, ProcessError> {
        let inner = &self.inner;
        let fingerprint = signal.fingerprint;
        let (reply, response) = oneshot::channel();
        let waiter = Waiter {
            signal,
            received: inner.clock.now(),
            deadline: tokio::time::Instant::now() + inner.request_timeout,
            reply,
        };
        let lead = match inner.slots.entry(fingerprint) {
            dashmap::Entry::Occupied(mut queued) => {
                let slot = queued.get_mut();
                slot.waiters.push(waiter);
                slot.wake.notify_one();
                false
            }
            dashmap::Entry::Vacant(empty) => {
                empty.insert(Slot {
                    waiters: vec![waiter],
                    wake: Arc::new(Notify::new()),
                });
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

    /// Serves one fingerprint's queue until it is empty, then does what its commits deferred:
    /// initialises the status of an RR it created if no duplicate did within
    /// `status_init_delay`, and clears the managed fields of an RR that repeats. Signals that
    /// queue meanwhile are served first; a deferred write only waits for a quiet moment.
    async fn drain(self, fingerprint: Fingerprint) {
        let inner = &self.inner;
        let mut deferred = Deferred::default();
        loop {
            let (batch, wake) = match inner.slots.get_mut(&fingerprint) {
                Some(mut slot) => (std::mem::take(&mut slot.waiters), slot.wake.clone()),
                None => return,
            };
            if !batch.is_empty() {
                self.commit(fingerprint, batch.into(), &mut deferred).await;
                continue;
            }
            if let Some(state) = deferred.uninitialised.take() {
                tokio::select! {
                    // A duplicate came: its patch writes the whole block.
                    _ = wake.notified() => deferred.uninitialised = Some(state),
                    _ = tokio::time::sleep(inner.status_init_delay) => self.initialise(&state).await,
                }
                continue;
            }
            if let Some(name) = deferred.clear.take() {
                self.clear_managed_fields(&name).await;
                continue;
            }
            // Leave only if nobody queued since the take; otherwise serve them.
            if inner
                .slots
                .remove_if(&fingerprint, |_, slot| slot.waiters.is_empty())
                .is_some()
            {
                return;
            }
        }
    }

    /// Records `pending` (all of one fingerprint), replying to each; leaves in `deferred`
    /// the RR it created if its status is still uninitialised (no duplicate in the same
    /// batch), and the RR whose managed fields are due for clearing.
    async fn commit(
        &self,
        fingerprint: Fingerprint,
        mut pending: VecDeque<Waiter>,
        deferred: &mut Deferred,
    ) {
        let inner = &self.inner;
        let mut created: Option<RrState> = None;
        for _ in 0..inner.max_attempts {
            self.expire(&mut pending);
            if pending.is_empty() {
                break;
            }
            let step = match inner.index.active(&fingerprint, inner.clock.now()) {
                None => self.create(&fingerprint, &mut pending, &mut created).await,
                Some(active) => {
                    created = None;
                    self.count(&fingerprint, &active, &mut pending, &mut deferred.clear)
                        .await
                }
            };
            match step {
                Ok(Step::Done) => break,
                Ok(Step::Again) if pending.is_empty() => break,
                Ok(Step::Again) => {}
                Err(error) => {
                    fail(pending, error);
                    deferred.uninitialised = created.filter(|s| !s.initialised);
                    return;
                }
            }
        }
        if !pending.is_empty() {
            fail(
                pending,
                ProcessError::Unavailable(format!(
                    "gave up after {} attempts lost to concurrent writes",
                    inner.max_attempts
                )),
            );
        }
        deferred.uninitialised = created.filter(|s| !s.initialised);
    }

    /// Answers 503 to the signals that could not be answered in time if one more call went
    /// out for them (checked before every call): nothing was written for them, so a retry
    /// counts them exactly once.
    fn expire(&self, pending: &mut VecDeque<Waiter>) {
        let latest_start = tokio::time::Instant::now() + self.inner.call_timeout;
        if pending.iter().all(|w| w.deadline >= latest_start) {
            return;
        }
        let (late, in_time): (VecDeque<Waiter>, VecDeque<Waiter>) = std::mem::take(pending)
            .into_iter()
            .partition(|w| w.deadline < latest_start);
        *pending = in_time;
        fail(
            late,
            ProcessError::Unavailable("request deadline reached before the write".into()),
        );
    }

    /// No active RR: creates one for the first pending signal and answers it.
    async fn create(
        &self,
        fingerprint: &Fingerprint,
        pending: &mut VecDeque<Waiter>,
        created: &mut Option<RrState>,
    ) -> Result<Step, ProcessError> {
        let inner = &self.inner;
        let generation = if inner.index.has_past(fingerprint) {
            match self.generation_from_list(fingerprint).await? {
                Some(generation) => generation,
                // The list holds an active RR this replica had not seen yet: count onto it.
                None => return Ok(Step::Again),
            }
        } else {
            0
        };
        self.expire(pending);
        let Some(first) = pending.front() else {
            return Ok(Step::Done);
        };
        let rr = rr::build_with(
            &first.signal,
            &inner.namespace,
            generation,
            first.received,
            inner.payload,
        );
        let name = rr.metadata.name.clone().unwrap_or_default();
        let created_now = match inner.store.create(&rr).await {
            Err(error) if error.may_have_applied() => {
                self.resolve_create(&rr, first.deadline, error).await
            }
            other => other,
        };
        match created_now {
            Ok(stored) => {
                inner.index.apply(&stored);
                inner.metrics.rr_created(match first.signal.source {
                    SignalSource::Prometheus => Source::Prometheus,
                    SignalSource::KubernetesEvents => Source::KubernetesEvent,
                });
                *created = RrState::from_rr(&stored).map(|(_, state)| state);
                let origin = &first.signal.origin;
                tracing::info!(
                    rr = name,
                    fingerprint = %first.signal.fingerprint,
                    sender = origin.sender.as_deref().unwrap_or(""),
                    peer = origin.peer.map(|peer| peer.to_string()).unwrap_or_default(),
                    "RemediationRequest created"
                );
                if let Some(waiter) = pending.pop_front() {
                    let _ = waiter.reply.send(Ok(Outcome::Created {
                        name,
                        namespace: inner.namespace.clone(),
                    }));
                }
                Ok(Step::Again)
            }
            Err(StoreError::AlreadyExists) => {
                // A racing create won (or a terminal RR holds the name): learn it.
                inner.metrics.creation_error(CallOutcome::AlreadyExists);
                self.expire(pending);
                if pending.is_empty() {
                    return Ok(Step::Done);
                }
                self.refresh(fingerprint, &name).await?;
                Ok(Step::Again)
            }
            Err(error) => {
                inner.metrics.creation_error(error.outcome());
                Err(error.into())
            }
        }
    }

    /// Counts everything pending onto `active` in one conditional patch; names the RR in
    /// `clear` when its managed fields are due for clearing.
    async fn count(
        &self,
        fingerprint: &Fingerprint,
        active: &RrState,
        pending: &mut VecDeque<Waiter>,
        clear: &mut Option<Arc<str>>,
    ) -> Result<Step, ProcessError> {
        let inner = &self.inner;
        let base = active.history.count;
        let arrivals: Vec<i64> = pending
            .iter()
            .map(|w| w.received.as_millisecond())
            .collect();
        let mut history = active.history.clone();
        let crossed = inner.storm.rule().advance(&mut history, &arrivals);
        let last_seen = pending
            .iter()
            .map(|w| w.received)
            .max()
            .unwrap_or(active.last_seen)
            .max(active.last_seen);
        let patch = StatusPatch::new(
            active.resource_version,
            history.to_status(active.first_seen, last_seen),
            inner.storm.inline(fingerprint, &active.name, &history),
        );
        let written = match inner.store.patch_status(&active.name, &patch).await {
            Err(error) if error.may_have_applied() => {
                let deadline = pending.iter().map(|w| w.deadline).min();
                match self
                    .resolve_patch(fingerprint, &active.name, &patch, deadline, error)
                    .await
                {
                    Ok(Some(stored)) => Ok(stored),
                    // Not applied, and it never can be (the RR moved on): decide again.
                    Ok(None) => return Ok(Step::Again),
                    Err(error) => return Err(error),
                }
            }
            other => other,
        };
        match written {
            Ok(stored) => {
                inner.index.apply(&stored);
                for waiter in pending.iter() {
                    inner.metrics.signal_deduplicated(&waiter.signal.name);
                }
                let state = RrState::from_rr(&stored).map_or(active.clone(), |(_, s)| s);
                inner.storm.committed(fingerprint, &state, crossed).await;
                for (ordinal, waiter) in (base + 1..).zip(pending.drain(..)) {
                    let _ = waiter.reply.send(Ok(Outcome::Duplicate {
                        name: active.name.to_string(),
                        namespace: inner.namespace.clone(),
                        count: ordinal,
                        first_seen: active.first_seen,
                        last_seen: waiter.received.max(active.first_seen),
                    }));
                }
                if inner.clearing.load(Ordering::Relaxed)
                    && inner.managed_fields.clears(&stored, history.count)
                {
                    *clear = Some(active.name.clone());
                }
                Ok(Step::Done)
            }
            Err(StoreError::Conflict) => {
                // A fresher index entry (a storm write's response, the watch) makes the GET
                // unnecessary.
                let fresher = inner.index.resource_version(fingerprint, &active.name)
                    > Some(active.resource_version);
                if !fresher {
                    self.expire(pending);
                    if pending.is_empty() {
                        return Ok(Step::Done);
                    }
                    self.refresh(fingerprint, &active.name).await?;
                }
                Ok(Step::Again)
            }
            Err(StoreError::NotFound) => {
                inner.index.remove(fingerprint, &active.name, None);
                Ok(Step::Again)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Clears the managed fields of an RR that repeats, once its fingerprint's queue is empty,
    /// so that it neither delays a signal nor races a write of this replica (the clearing
    /// itself cannot lose a race: it carries no `resourceVersion`).
    /// A refusal turns clearing off for the process, with a warning; any other failure is
    /// tried again at the RR's next count.
    async fn clear_managed_fields(&self, name: &str) {
        let inner = &self.inner;
        match inner.store.clear_managed_fields(name).await {
            Ok(cleared) => inner.index.apply(&cleared),
            Err(StoreError::Invalid(reason)) => {
                if inner.clearing.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        rr = name,
                        %reason,
                        "the apiserver refused to clear an RR's managedFields; RRs keep them \
                         from now on (grant patch on remediationrequests, or set \
                         kubernetes.managed_fields: keep)"
                    );
                }
            }
            Err(error) => {
                tracing::debug!(rr = name, %error, "clearing managedFields failed; tried again at the next count");
            }
        }
    }

    /// The generation a new RR of a fingerprint with a past gets, from the authoritative
    /// list of its RRs rather than this replica's view: replicas can disagree about a terminal
    /// RR that was deleted (one has seen the Delete, another not yet), and deciding from their
    /// own views would give two names that never collide, so two active RRs. `None` when the
    /// list holds an active RR. A fingerprint whose RRs are all gone starts again at 0, as a
    /// replica that never saw them would.
    async fn generation_from_list(
        &self,
        fingerprint: &Fingerprint,
    ) -> Result<Option<u32>, ProcessError> {
        let inner = &self.inner;
        let rrs = inner.store.list_fingerprint(fingerprint).await?;
        let now = inner.clock.now();
        let mut active = false;
        for rr in &rrs {
            inner.index.apply(rr);
            active |= RrState::from_rr(rr).is_some_and(|(_, state)| state.is_active(now));
        }
        Ok((!active).then(|| index::next_generation(rrs.iter().map(index::generation_of))))
    }

    /// After a status patch whose answer was lost: finds out whether it was applied before
    /// answering, so that a timeout does not become a 503 that the sender's retry counts
    /// again. Re-reads the RR while the deadline allows: our block there means applied; a
    /// newer version without it and a lower count means it never landed and never will (the
    /// precondition failed for good, `None`); the same version means it has not been applied
    /// yet, so the identical patch is sent again (at most one of the two can pass the
    /// precondition). When it cannot be known — in time, in a few rounds, or because a newer
    /// write may sit on top of ours — the answer is 503.
    async fn resolve_patch(
        &self,
        fingerprint: &Fingerprint,
        name: &str,
        patch: &StatusPatch,
        deadline: Option<tokio::time::Instant>,
        mut error: StoreError,
    ) -> Result<Option<RemediationRequest>, ProcessError> {
        let inner = &self.inner;
        /// Re-reads (each possibly followed by a resend) before giving up.
        const ROUNDS: u32 = 3;
        let ambiguous = |resolution| inner.metrics.ambiguous_write(Verb::Patch, resolution);
        for _ in 0..ROUNDS {
            if !self.time_for_a_call(deadline) {
                break;
            }
            match inner.store.get(name).await {
                Ok(current) => {
                    inner.index.apply(&current);
                    if patch.is_applied_in(&current) {
                        ambiguous(Ambiguity::Applied);
                        return Ok(Some(current));
                    }
                    let state = RrState::from_rr(&current).map(|(_, state)| state);
                    let moved_on = state.as_ref().map(|s| s.resource_version);
                    if moved_on != Some(patch.resource_version()) {
                        // Moved on without our block. Below our count, ours never landed (a
                        // count only grows). At or above it, ours may have landed with
                        // another write on top: counting again could count twice, so 503.
                        let count = state.map_or(1, |s| s.history.count);
                        if count < patch.deduplication().occurrence_count {
                            ambiguous(Ambiguity::NotApplied);
                            return Ok(None);
                        }
                        ambiguous(Ambiguity::Unknown);
                        return Err(error.into());
                    }
                    if !self.time_for_a_call(deadline) {
                        break;
                    }
                    match inner.store.patch_status(name, patch).await {
                        Ok(stored) => {
                            ambiguous(Ambiguity::Resent);
                            return Ok(Some(stored));
                        }
                        // The first one got there meanwhile, or another writer: look again.
                        Err(StoreError::Conflict) => {}
                        Err(again) if again.may_have_applied() => error = again,
                        Err(other) => {
                            ambiguous(Ambiguity::Unknown);
                            return Err(other.into());
                        }
                    }
                }
                Err(StoreError::NotFound) => {
                    inner.index.remove(fingerprint, name, None);
                    ambiguous(Ambiguity::NotApplied);
                    return Ok(None);
                }
                Err(again) if again.may_have_applied() => error = again,
                Err(other) => {
                    ambiguous(Ambiguity::Unknown);
                    return Err(other.into());
                }
            }
        }
        ambiguous(Ambiguity::Unknown);
        Err(error.into())
    }

    /// After a create whose answer was lost: the RR under that name with exactly the spec
    /// sent means it was created (the spec carries the first signal's arrival time).
    async fn resolve_create(
        &self,
        rr: &RemediationRequest,
        deadline: tokio::time::Instant,
        error: StoreError,
    ) -> Result<RemediationRequest, StoreError> {
        let inner = &self.inner;
        let ambiguous = |resolution| inner.metrics.ambiguous_write(Verb::Create, resolution);
        let name = rr.metadata.name.as_deref().unwrap_or_default();
        if !self.time_for_a_call(Some(deadline)) {
            ambiguous(Ambiguity::Unknown);
            return Err(error);
        }
        match inner.store.get(name).await {
            Ok(existing) => {
                let same = serde_json::to_value(&existing.spec).ok()
                    == serde_json::to_value(&rr.spec).ok();
                if same {
                    ambiguous(Ambiguity::Applied);
                    Ok(existing)
                } else {
                    // Someone else's RR under that name: the usual lost race.
                    ambiguous(Ambiguity::NotApplied);
                    Err(StoreError::AlreadyExists)
                }
            }
            Err(StoreError::NotFound) => {
                // Not created (yet): 503, and the sender's retry creates it. A create still
                // in flight that lands later costs that retry one extra count, never a
                // second RR.
                ambiguous(Ambiguity::NotApplied);
                Err(error)
            }
            Err(other) => {
                ambiguous(Ambiguity::Unknown);
                Err(other)
            }
        }
    }

    /// Whether one more Kubernetes call fits before `deadline`.
    fn time_for_a_call(&self, deadline: Option<tokio::time::Instant>) -> bool {
        deadline.is_some_and(|d| tokio::time::Instant::now() + self.inner.call_timeout <= d)
    }

    /// Re-reads one RR after a lost race.
    async fn refresh(&self, fingerprint: &Fingerprint, name: &str) -> Result<(), ProcessError> {
        match self.inner.store.get(name).await {
            Ok(rr) => {
                self.inner.index.apply(&rr);
                Ok(())
            }
            Err(StoreError::NotFound) => {
                self.inner.index.remove(fingerprint, name, None);
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Writes `status.deduplication` of a fresh RR (count 1), conditionally. When another
    /// writer moved the RR first (the orchestrator setting a phase right after the create),
    /// it re-reads the RR and writes again at the new version, but only while the block is
    /// still absent: a duplicate's patch that got there first already wrote it.
    async fn initialise(&self, state: &RrState) {
        const ATTEMPTS: u32 = 3;
        let inner = &self.inner;
        let mut resource_version = state.resource_version;
        for _ in 0..ATTEMPTS {
            let patch = StatusPatch::new(
                resource_version,
                state.history.to_status(state.first_seen, state.last_seen),
                None,
            );
            match inner.store.patch_status(&state.name, &patch).await {
                Ok(stored) => return inner.index.apply(&stored),
                Err(StoreError::Conflict) => match inner.store.get(&state.name).await {
                    Ok(current) => {
                        inner.index.apply(&current);
                        let present = current
                            .status
                            .as_ref()
                            .is_some_and(|s| s.deduplication.is_some());
                        let version = current.metadata.resource_version.as_deref();
                        match version.and_then(|v| v.parse().ok()) {
                            Some(version) if !present => resource_version = version,
                            _ => return,
                        }
                    }
                    Err(error) => {
                        tracing::debug!(rr = %state.name, %error, "status initialisation skipped");
                        return;
                    }
                },
                Err(error) => {
                    tracing::debug!(rr = %state.name, %error, "status initialisation skipped");
                    return;
                }
            }
        }
    }
}

fn fail(pending: VecDeque<Waiter>, error: ProcessError) {
    for waiter in pending {
        let _ = waiter.reply.send(Err(error.clone()));
    }
}
