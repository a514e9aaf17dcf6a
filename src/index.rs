//! The fingerprint index: for each fingerprint, the RRs the decision needs (usually one),
//! slimmed to what decides activity, counting and naming, and the deterministic RR names.
//! Reads never call Kubernetes.
//!
//! One writer feeds it from the watch; write responses update it at once, so a replica sees
//! its own writes before the watch echoes them. An entry never moves back in
//! `resourceVersion`. A relist builds a fresh map beside the live one (write responses go to
//! both) and swaps it in atomically when the list completes, so deleted RRs disappear without
//! a window in which live ones are missing. A removal takes the maps in the same order as a
//! write (relist buffer first), only drops versions up to the deleted one (a recreation under
//! the same name survives a late Delete), and leaves a short-lived tombstone so that a response
//! that raced the Delete (a GET, a storm write) cannot bring the RR back.
//!
//! **Compact entries.** Every RR in the namespace lives here, so the entry is small (64 bytes):
//! the key is the fingerprint's 32 bytes, one RR per fingerprint (the usual case) sits in the
//! entry itself, times are Unix milliseconds, the recent arrivals (as many as the storm
//! threshold by default) are `u32` offsets before the last occurrence, a name the gateway
//! derived is recomputed instead of stored, and what few RRs have sits behind one pointer
//! ([`Rare`]). Readers get the expanded [`RrState`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use dashmap::DashMap;
use jiff::Timestamp;

use crate::fingerprint::Fingerprint;
use crate::k8s::history::History;
use crate::k8s::types::RemediationRequest;

/// Label carrying the RR's generation number for its fingerprint (0, 1, …), from which its
/// deterministic name is derived.
pub const GENERATION_LABEL: &str = "gateway.kubernaut.ai/generation";

/// The fingerprint's bytes.
type Key = [u8; 32];
type Shards = DashMap<Key, Rrs, ahash::RandomState>;

/// Recent arrivals kept inline; a larger `storm.history_size` spills to the heap.
const INLINE_RECENT: usize = 5;

/// One RR as the index stores it (64 bytes); [`RrState`] is its expanded form. What few RRs
/// have (a foreign name, a storm crossing, a routing hold, a history that does not fit inline)
/// lives in [`Rare`], behind one pointer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stored {
    rare: Option<Box<Rare>>,
    resource_version: u64,
    first_seen_ms: i64,
    last_seen_ms: i64,
    /// 0 when [`Rare::count`] holds it.
    count: u32,
    /// `u32::MAX` when absent.
    generation: u32,
    /// Recent arrivals, oldest first, as milliseconds before `last_seen_ms`; the first
    /// `recent_len` are used. Empty when [`Rare::recent`] holds them.
    recent: [u32; INLINE_RECENT],
    recent_len: u8,
    initialised: bool,
    terminal: bool,
    manual_review: bool,
}

/// The parts of an RR that most RRs do not have.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Rare {
    /// The name, for an RR whose name is not the one [`rr_name`] derives from the fingerprint
    /// and generation (RRs made by someone else).
    foreign_name: Option<Arc<str>>,
    next_allowed_execution_ms: Option<i64>,
    /// `(arrival ms, count)` of the storm crossing.
    detected: Option<(i64, i64)>,
    /// The recent arrivals when they do not fit inline: more than [`INLINE_RECENT`], or one
    /// after `last_seen` or more than `u32::MAX` ms before it.
    recent: Option<Vec<i64>>,
    /// The count when it does not fit in a `u32`.
    count: Option<i64>,
}

impl Stored {
    fn new(fingerprint: &Fingerprint, state: RrState) -> Stored {
        let derived = state
            .generation
            .is_some_and(|g| g != u32::MAX && *state.name == rr_name(fingerprint, g));
        let last_seen_ms = state.last_seen.as_millisecond();
        let mut rare = Rare {
            foreign_name: (!derived).then_some(state.name),
            next_allowed_execution_ms: state.next_allowed_execution.map(|t| t.as_millisecond()),
            detected: state.history.detected,
            ..Rare::default()
        };
        let mut recent = [0u32; INLINE_RECENT];
        let mut recent_len = 0u8;
        for &at in &state.history.recent {
            let before = last_seen_ms
                .checked_sub(at)
                .and_then(|d| u32::try_from(d).ok());
            match (before, recent.get_mut(usize::from(recent_len))) {
                (Some(before), Some(slot)) => {
                    *slot = before;
                    recent_len += 1;
                }
                _ => {
                    (recent, recent_len) = ([0; INLINE_RECENT], 0);
                    break;
                }
            }
        }
        if recent_len == 0 && !state.history.recent.is_empty() {
            rare.recent = Some(state.history.recent);
        }
        let count = u32::try_from(state.history.count).unwrap_or_else(|_| {
            rare.count = Some(state.history.count);
            0
        });
        Stored {
            rare: (rare != Rare::default()).then(|| Box::new(rare)),
            resource_version: state.resource_version,
            first_seen_ms: state.first_seen.as_millisecond(),
            last_seen_ms,
            count,
            generation: state.generation.unwrap_or(u32::MAX),
            recent,
            recent_len,
            initialised: state.initialised,
            terminal: state.terminal,
            manual_review: state.manual_review,
        }
    }

    fn generation(&self) -> Option<u32> {
        (self.generation != u32::MAX).then_some(self.generation)
    }

    fn foreign_name(&self) -> Option<&Arc<str>> {
        self.rare.as_ref()?.foreign_name.as_ref()
    }

    fn next_allowed_execution_ms(&self) -> Option<i64> {
        self.rare.as_ref()?.next_allowed_execution_ms
    }

    fn has_name(&self, fingerprint: &Fingerprint, name: &str) -> bool {
        match (self.foreign_name(), self.generation()) {
            (Some(own), _) => &**own == name,
            (None, Some(generation)) => rr_name(fingerprint, generation) == name,
            (None, None) => false,
        }
    }

    fn is_active(&self, now_ms: i64) -> bool {
        !self.terminal
            || self.manual_review
            || self
                .next_allowed_execution_ms()
                .is_some_and(|at| at > now_ms)
    }

    fn expand(&self, fingerprint: &Fingerprint) -> RrState {
        let time = |ms: i64| Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH);
        let generation = self.generation();
        let rare = self.rare.as_deref();
        let recent = match rare.and_then(|r| r.recent.as_ref()) {
            Some(recent) => recent.clone(),
            None => self.recent[..usize::from(self.recent_len)]
                .iter()
                .map(|&before| self.last_seen_ms - i64::from(before))
                .collect(),
        };
        RrState {
            name: match (self.foreign_name(), generation) {
                (Some(name), _) => name.clone(),
                (None, generation) => rr_name(fingerprint, generation.unwrap_or_default()).into(),
            },
            generation,
            resource_version: self.resource_version,
            history: History {
                count: rare.and_then(|r| r.count).unwrap_or(i64::from(self.count)),
                recent,
                detected: rare.and_then(|r| r.detected),
            },
            initialised: self.initialised,
            first_seen: time(self.first_seen_ms),
            last_seen: time(self.last_seen_ms),
            terminal: self.terminal,
            manual_review: self.manual_review,
            next_allowed_execution: self.next_allowed_execution_ms().map(time),
        }
    }
}

/// The RRs of one fingerprint: one inline (the usual case, in the space of the entry itself),
/// or several.
#[derive(Debug)]
enum Rrs {
    One(Stored),
    Many(Vec<Stored>),
}

impl Default for Rrs {
    fn default() -> Self {
        Rrs::Many(Vec::new())
    }
}

impl Rrs {
    fn as_slice(&self) -> &[Stored] {
        match self {
            Rrs::One(rr) => std::slice::from_ref(rr),
            Rrs::Many(rrs) => rrs,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Stored] {
        match self {
            Rrs::One(rr) => std::slice::from_mut(rr),
            Rrs::Many(rrs) => rrs,
        }
    }

    fn push(&mut self, rr: Stored) {
        match std::mem::take(self) {
            Rrs::Many(rrs) if rrs.is_empty() => *self = Rrs::One(rr),
            Rrs::Many(mut rrs) => {
                rrs.push(rr);
                *self = Rrs::Many(rrs);
            }
            Rrs::One(first) => *self = Rrs::Many(vec![first, rr]),
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&Stored) -> bool) {
        match self {
            Rrs::One(rr) => {
                if !keep(rr) {
                    *self = Rrs::default();
                }
            }
            Rrs::Many(rrs) => {
                rrs.retain(keep);
                if rrs.len() == 1
                    && let Some(rr) = rrs.pop()
                {
                    *self = Rrs::One(rr);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

/// What the index keeps of one RR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RrState {
    /// RR name.
    pub name: Arc<str>,
    /// Generation from [`GENERATION_LABEL`]; `None` for RRs created by someone else.
    pub generation: Option<u32>,
    /// `metadata.resourceVersion`, numeric as etcd-backed apiservers issue it.
    pub resource_version: u64,
    /// Deduplication history: `occurrenceCount` (1 while the status is not initialised: the
    /// RR exists, so its first signal happened), recent arrivals, the storm crossing.
    pub history: History,
    /// Whether `status.deduplication` exists.
    pub initialised: bool,
    /// First occurrence (the creation time until initialised).
    pub first_seen: Timestamp,
    /// Latest occurrence.
    pub last_seen: Timestamp,
    /// Orchestrator phase, reduced to what decides activity.
    pub terminal: bool,
    /// `completionStatus.outcome == ManualReviewRequired`.
    pub manual_review: bool,
    /// `routingStatus.nextAllowedExecution`.
    pub next_allowed_execution: Option<Timestamp>,
}

/// Phases after which an RR no longer collects duplicates (DESIGN.md §5).
pub const TERMINAL_PHASES: [&str; 5] = ["Completed", "Failed", "TimedOut", "Skipped", "Cancelled"];

impl RrState {
    /// Reduces an RR to its index entry; `None` for objects the gateway cannot use (no
    /// parseable fingerprint, name or resourceVersion).
    pub fn from_rr(rr: &RemediationRequest) -> Option<(Fingerprint, RrState)> {
        let fingerprint = Fingerprint::parse(&rr.spec.signal_fingerprint)?;
        let name: Arc<str> = rr.metadata.name.as_deref()?.into();
        let resource_version = rr.metadata.resource_version.as_deref()?.parse().ok()?;
        let generation = generation_of(rr);
        let status = rr.status.as_ref();
        let dedup = status.and_then(|s| s.deduplication.as_ref());
        let created = rr.spec.received_time.0;
        let phase = status
            .and_then(|s| s.overall_phase.as_deref())
            .unwrap_or_default();
        Some((
            fingerprint,
            RrState {
                name,
                generation,
                resource_version,
                history: History::from_status(dedup, created),
                initialised: dedup.is_some(),
                first_seen: dedup.map_or(created, |d| d.first_seen_at.0),
                last_seen: dedup.map_or(created, |d| d.last_seen_at.0),
                terminal: TERMINAL_PHASES.contains(&phase),
                manual_review: status
                    .and_then(|s| s.completion_status.as_ref())
                    .and_then(|c| c.outcome.as_deref())
                    == Some("ManualReviewRequired"),
                next_allowed_execution: status
                    .and_then(|s| s.routing_status.as_ref())
                    .and_then(|r| r.next_allowed_execution.as_ref())
                    .map(|t| t.0),
            },
        ))
    }

    /// Whether new signals of this fingerprint are duplicates of this RR at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        !self.terminal
            || self.manual_review
            || self.next_allowed_execution.is_some_and(|at| at > now)
    }
}

/// The index. Cheap to share (`Arc<Index>`); every method takes `&self`.
pub struct Index {
    live: ArcSwap<Shards>,
    relist: ArcSwapOption<Shards>,
    /// RR name → (deleted resourceVersion, when); at most [`TOMBSTONES_MAX`], each kept for
    /// [`TOMBSTONE_TTL`].
    tombstones: DashMap<Arc<str>, (u64, Instant), ahash::RandomState>,
    /// Fingerprints with a recently removed RR, with when: a next generation for them is
    /// decided from an authoritative list, not from this replica's view (see
    /// [`Index::has_past`]). Bounded and expired like `tombstones`.
    departed: DashMap<Key, ((), Instant), ahash::RandomState>,
}

/// How long a deleted RR's tombstone keeps stale writes out: far longer than any response can
/// be in flight (every Kubernetes call has a deadline of seconds).
const TOMBSTONE_TTL: Duration = Duration::from_secs(60);
/// Tombstones kept at most; beyond it expired ones are purged, then the oldest dropped.
const TOMBSTONES_MAX: usize = 10_000;

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Index {
            live: ArcSwap::from_pointee(Shards::default()),
            relist: ArcSwapOption::empty(),
            tombstones: DashMap::default(),
            departed: DashMap::default(),
        }
    }

    /// The active RR of a fingerprint, if any.
    pub fn active(&self, fingerprint: &Fingerprint, now: Timestamp) -> Option<RrState> {
        let live = self.live.load();
        let rrs = live.get(&fingerprint.to_bytes())?;
        let now_ms = now.as_millisecond();
        rrs.as_slice()
            .iter()
            .filter(|rr| rr.is_active(now_ms))
            .max_by_key(|rr| rr.generation())
            .map(|rr| rr.expand(fingerprint))
    }

    /// The `resourceVersion` the index holds for one RR.
    pub fn resource_version(&self, fingerprint: &Fingerprint, name: &str) -> Option<u64> {
        let live = self.live.load();
        let rrs = live.get(&fingerprint.to_bytes())?;
        rrs.as_slice()
            .iter()
            .find(|rr| rr.has_name(fingerprint, name))
            .map(|rr| rr.resource_version)
    }

    /// Whether this fingerprint has a past here: an RR (a terminal one, when no RR is
    /// active) or a recent removal. A fingerprint without one gets generation 0, which every
    /// replica agrees on; one with a past gets its next generation from
    /// [`next_generation`] over an authoritative list, because replicas can disagree about
    /// which of its RRs still exist (one has seen a Delete, another not yet).
    pub fn has_past(&self, fingerprint: &Fingerprint) -> bool {
        let key = fingerprint.to_bytes();
        self.live.load().contains_key(&key)
            || self
                .departed
                .get(&key)
                .is_some_and(|entry| entry.1.elapsed() < TOMBSTONE_TTL)
    }

    /// Takes in an RR seen on the watch or returned by a write, unless the index already
    /// holds a newer version of it or it was deleted at this version or later.
    pub fn apply(&self, rr: &RemediationRequest) {
        let Some((fingerprint, state)) = RrState::from_rr(rr) else {
            return;
        };
        if self.buried(&state) {
            return;
        }
        if let Some(relist) = self.relist.load().as_ref() {
            upsert(relist, fingerprint, state.clone());
        }
        upsert(&self.live.load(), fingerprint, state);
    }

    /// Drops an RR deleted on the watch (at `resource_version`), or found missing by a write
    /// (`None`: whatever version the index holds).
    pub fn remove(&self, fingerprint: &Fingerprint, name: &str, resource_version: Option<u64>) {
        let key = fingerprint.to_bytes();
        let mut deleted = resource_version.unwrap_or(0);
        // The relist buffer before the live map, as `apply` writes them: a relist finishing
        // between the two loads cannot resurrect the RR.
        let relist = self.relist.load_full();
        let live = self.live.load_full();
        for shards in [relist, Some(live)].into_iter().flatten() {
            shards.remove_if_mut(&key, |_, rrs| {
                rrs.retain(|rr| {
                    let gone = rr.has_name(fingerprint, name)
                        && resource_version.is_none_or(|rv| rr.resource_version <= rv);
                    if gone {
                        deleted = deleted.max(rr.resource_version);
                    }
                    !gone
                });
                rrs.is_empty()
            });
        }
        self.bury(name, deleted);
        bounded_insert(&self.departed, key, ());
    }

    /// Drops an RR given as an object (a watch Delete: its resourceVersion is the deletion's).
    pub fn remove_rr(&self, rr: &RemediationRequest) {
        if let (Some(fingerprint), Some(name)) = (
            Fingerprint::parse(&rr.spec.signal_fingerprint),
            rr.metadata.name.as_deref(),
        ) {
            let version = rr.metadata.resource_version.as_deref();
            let version = version.and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
            self.remove(&fingerprint, name, Some(version));
        }
    }

    fn bury(&self, name: &str, resource_version: u64) {
        bounded_insert(&self.tombstones, name.into(), resource_version);
    }

    /// Whether `state` is a version at or before a recent deletion of its name.
    fn buried(&self, state: &RrState) -> bool {
        self.tombstones.get(&state.name).is_some_and(|t| {
            let (deleted, at) = *t;
            state.resource_version <= deleted && at.elapsed() < TOMBSTONE_TTL
        })
    }

    /// A relist started: later list items go to a fresh map.
    pub fn begin_relist(&self) {
        self.relist.store(Some(Arc::new(Shards::default())));
    }

    /// One item of the relist.
    pub fn relist_apply(&self, rr: &RemediationRequest) {
        let Some((fingerprint, state)) = RrState::from_rr(rr) else {
            return;
        };
        if self.buried(&state) {
            return;
        }
        if let Some(relist) = self.relist.load().as_ref() {
            upsert(relist, fingerprint, state);
        }
    }

    /// The relist completed: its map replaces the live one in one step.
    pub fn finish_relist(&self) {
        // Live first, then clear the buffer: a concurrent `apply` writes the buffer before
        // the live map, so it always lands in whichever map ends up live.
        if let Some(fresh) = self.relist.load_full() {
            self.live.store(fresh);
            self.relist.store(None);
        }
    }

    /// Fingerprints indexed.
    pub fn len(&self) -> usize {
        self.live.load().len()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Records `value` under `key` with the time, keeping at most [`TOMBSTONES_MAX`] entries:
/// expired ones are purged first, then the oldest is dropped.
fn bounded_insert<K, V>(map: &DashMap<K, (V, Instant), ahash::RandomState>, key: K, value: V)
where
    K: std::hash::Hash + Eq + Clone,
{
    let now = Instant::now();
    if map.len() >= TOMBSTONES_MAX {
        map.retain(|_, (_, at)| now.duration_since(*at) < TOMBSTONE_TTL);
        if map.len() >= TOMBSTONES_MAX {
            let oldest = map.iter().min_by_key(|e| e.1).map(|e| e.key().clone());
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
    }
    map.insert(key, (value, now));
}

/// The generation the next RR of a fingerprint gets, given all of its RRs (an authoritative
/// list, or an index entry): one past the highest, and never below the number of RRs (RRs
/// made by someone else carry no generation).
pub fn next_generation(generations: impl IntoIterator<Item = Option<u32>>) -> u32 {
    let mut highest = None;
    let mut rrs = 0u32;
    for generation in generations {
        rrs = rrs.saturating_add(1);
        highest = highest.max(generation);
    }
    highest.map_or(0, |g: u32| g.saturating_add(1)).max(rrs)
}

/// The generation label of an RR, if it carries one.
pub fn generation_of(rr: &RemediationRequest) -> Option<u32> {
    rr.metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(GENERATION_LABEL))
        .and_then(|g| g.parse().ok())
}

fn upsert(shards: &Shards, fingerprint: Fingerprint, state: RrState) {
    let mut rrs = shards.entry(fingerprint.to_bytes()).or_default();
    match rrs
        .as_mut_slice()
        .iter_mut()
        .find(|rr| rr.has_name(&fingerprint, &state.name))
    {
        Some(existing) if existing.resource_version >= state.resource_version => {}
        Some(existing) => *existing = Stored::new(&fingerprint, state),
        None => rrs.push(Stored::new(&fingerprint, state)),
    }
}

/// The deterministic name of a fingerprint's RR of a given generation:
/// `rr-<fp[0..12]>-<8 hex of SHA-256("<fp>:<generation>")>`. Replicas that see the same first
/// occurrence compute the same name, so racing creates collide on AlreadyExists.
pub fn rr_name(fingerprint: &Fingerprint, generation: u32) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(fingerprint.as_str().as_bytes());
    hasher.update(b":");
    hasher.update(generation.to_string().as_bytes());
    let digest = hasher.finalize();
    format!(
        "rr-{}-{}",
        &fingerprint.as_str()[..12],
        hex::encode(&digest[..4])
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::k8s::types::{
        DeduplicationStatus, RemediationRequestSpec, RemediationRequestStatus, ResourceRef,
        SignalSource, SignalType, TargetType,
    };

    fn rr(name: &str, generation: Option<u32>, rv: u64, recent: Vec<i64>) -> RemediationRequest {
        let fingerprint = Fingerprint::of(None, "ns", "Pod", "a");
        let at = Time(Timestamp::from_second(1_772_366_400).unwrap());
        let spec = RemediationRequestSpec {
            signal_fingerprint: fingerprint.to_string(),
            signal_name: "A".into(),
            severity: "critical".into(),
            signal_type: SignalType::Alert,
            signal_source: SignalSource::Prometheus,
            target_type: TargetType::Kubernetes,
            target_resource: ResourceRef {
                kind: "Pod".into(),
                name: "a".into(),
                namespace: Some("ns".into()),
                api_version: None,
            },
            cluster_id: None,
            firing_time: at.clone(),
            received_time: at.clone(),
            signal_labels: None,
            signal_annotations: None,
            original_payload: None,
        };
        let mut rr = RemediationRequest::new(name, spec);
        rr.metadata.resource_version = Some(rv.to_string());
        rr.metadata.labels =
            generation.map(|g| [(GENERATION_LABEL.to_string(), g.to_string())].into());
        rr.status = Some(RemediationRequestStatus {
            deduplication: Some(DeduplicationStatus {
                occurrence_count: recent.len() as i64,
                first_seen_at: at.clone(),
                last_seen_at: at.clone(),
                recent_occurrences: recent,
                storm_detected_at: Some(at),
                storm_detected_count: Some(3),
            }),
            ..RemediationRequestStatus::default()
        });
        rr
    }

    #[test]
    fn entries_expand_to_what_was_applied() {
        let fingerprint = Fingerprint::of(None, "ns", "Pod", "a");
        let index = Index::new();
        let derived = rr(&rr_name(&fingerprint, 0), Some(0), 5, (1..=8).collect());
        index.apply(&derived);
        let (_, expected) = RrState::from_rr(&derived).unwrap();
        let now = Timestamp::from_second(1_772_366_400).unwrap();
        assert_eq!(index.active(&fingerprint, now), Some(expected));
        assert_eq!(
            index.resource_version(&fingerprint, &derived.metadata.name.unwrap()),
            Some(5)
        );

        let foreign = rr("made-by-hand", Some(1), 9, vec![1, 2]);
        index.apply(&foreign);
        let (_, expected) = RrState::from_rr(&foreign).unwrap();
        assert_eq!(index.active(&fingerprint, now), Some(expected));
        index.remove(&fingerprint, "made-by-hand", None);
        assert_eq!(index.active(&fingerprint, now).unwrap().generation, Some(0));
    }

    #[test]
    fn the_next_generation_follows_the_highest_and_the_number_of_rrs() {
        assert_eq!(next_generation([]), 0);
        assert_eq!(next_generation([Some(0)]), 1);
        assert_eq!(next_generation([Some(0), Some(3)]), 4);
        // RRs made by someone else carry no generation but still take a place.
        assert_eq!(next_generation([None, None, Some(0)]), 3);
    }

    #[test]
    fn a_fingerprint_has_a_past_while_it_has_rrs_or_lost_one_recently() {
        let fingerprint = Fingerprint::of(None, "ns", "Pod", "a");
        let other = Fingerprint::of(None, "ns", "Pod", "b");
        let index = Index::new();
        assert!(!index.has_past(&fingerprint));
        let name = rr_name(&fingerprint, 0);
        index.apply(&rr(&name, Some(0), 7, vec![1]));
        assert!(index.has_past(&fingerprint));
        index.remove_rr(&rr(&name, Some(0), 8, vec![1]));
        assert!(
            index.has_past(&fingerprint),
            "a deleted RR leaves its fingerprint a past"
        );
        assert!(!index.has_past(&other));
    }

    #[test]
    fn a_response_that_raced_a_delete_does_not_resurrect_the_rr() {
        let fingerprint = Fingerprint::of(None, "ns", "Pod", "a");
        let index = Index::new();
        let name = rr_name(&fingerprint, 0);
        index.apply(&rr(&name, Some(0), 7, vec![1]));
        index.remove_rr(&rr(&name, Some(0), 8, vec![1]));
        index.apply(&rr(&name, Some(0), 7, vec![1]));
        let now = Timestamp::from_second(1_772_366_400).unwrap();
        assert_eq!(
            index.active(&fingerprint, now),
            None,
            "the late GET is ignored"
        );
        index.apply(&rr(&name, Some(0), 9, vec![1]));
        assert!(
            index.active(&fingerprint, now).is_some(),
            "a recreation is taken in"
        );
    }

    #[test]
    fn a_late_delete_does_not_remove_a_recreation() {
        let fingerprint = Fingerprint::of(None, "ns", "Pod", "a");
        let index = Index::new();
        let name = rr_name(&fingerprint, 0);
        index.apply(&rr(&name, Some(0), 12, vec![1]));
        index.remove_rr(&rr(&name, Some(0), 8, vec![1]));
        assert_eq!(index.resource_version(&fingerprint, &name), Some(12));
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let fingerprint = Fingerprint::of(None, "ns", "Pod", "a");
        let index = Index::new();
        let name = rr_name(&fingerprint, 0);
        index.apply(&rr(&name, Some(0), 7, vec![1, 2, 3]));
        index.apply(&rr(&name, Some(0), 6, vec![1]));
        assert_eq!(index.resource_version(&fingerprint, &name), Some(7));
    }

    #[test]
    fn an_entry_is_64_bytes_and_one_rr_sits_in_it() {
        assert_eq!(std::mem::size_of::<Stored>(), 64);
        assert_eq!(std::mem::size_of::<Rrs>(), std::mem::size_of::<Stored>());
    }

    #[test]
    fn what_does_not_fit_inline_round_trips() {
        let fingerprint = Fingerprint::of(None, "ns", "Pod", "a");
        let now = Timestamp::from_second(1_772_366_400).unwrap();
        let last_ms = now.as_millisecond();
        let cases: [(i64, Vec<i64>); 5] = [
            // Within the window: inline offsets before last_seen.
            (3, vec![last_ms - 2_000, last_ms - 1, last_ms]),
            // After last_seen, and far before it: kept as they are.
            (2, vec![last_ms + 5]),
            (2, vec![last_ms - i64::from(u32::MAX) - 1, last_ms]),
            // A count beyond u32 and no history at all; a negative count, an arrival at the epoch.
            (i64::from(u32::MAX) + 7, vec![]),
            (-1, vec![0]),
        ];
        for (count, recent) in cases {
            let mut state = RrState {
                name: rr_name(&fingerprint, 0).into(),
                generation: Some(0),
                resource_version: 3,
                history: History {
                    count,
                    recent,
                    detected: None,
                },
                initialised: true,
                first_seen: now,
                last_seen: now,
                terminal: false,
                manual_review: false,
                next_allowed_execution: None,
            };
            let stored = Stored::new(&fingerprint, state.clone());
            assert_eq!(stored.rare.is_some(), count != 3, "{count}");
            assert_eq!(stored.expand(&fingerprint), state);

            state.terminal = true;
            state.next_allowed_execution = Some(now);
            state.history.detected = Some((last_ms, 5));
            let stored = Stored::new(&fingerprint, state.clone());
            assert_eq!(stored.expand(&fingerprint), state);
            assert!(!stored.is_active(last_ms) && stored.is_active(last_ms - 1));
        }
    }

    #[test]
    fn a_generation_equal_to_the_sentinel_keeps_its_name() {
        let fingerprint = Fingerprint::of(None, "ns", "Pod", "a");
        let index = Index::new();
        let name = rr_name(&fingerprint, u32::MAX);
        index.apply(&rr(&name, Some(u32::MAX), 4, vec![1]));
        let now = Timestamp::from_second(1_772_366_400).unwrap();
        assert_eq!(*index.active(&fingerprint, now).unwrap().name, *name);
        assert_eq!(index.resource_version(&fingerprint, &name), Some(4));
    }

    #[test]
    fn several_rrs_of_a_fingerprint_go_inline_again_when_one_is_left() {
        let fingerprint = Fingerprint::of(None, "ns", "Pod", "a");
        let index = Index::new();
        let names = [rr_name(&fingerprint, 0), rr_name(&fingerprint, 1)];
        index.apply(&rr(&names[0], Some(0), 7, vec![1]));
        index.apply(&rr(&names[1], Some(1), 8, vec![1]));
        let live = index.live.load();
        assert!(
            matches!(*live.get(&fingerprint.to_bytes()).unwrap(), Rrs::Many(ref v) if v.len() == 2)
        );
        index.remove(&fingerprint, &names[0], None);
        assert!(
            matches!(*live.get(&fingerprint.to_bytes()).unwrap(), Rrs::One(ref rr) if rr.generation == 1)
        );
        assert_eq!(index.resource_version(&fingerprint, &names[1]), Some(8));
        index.remove(&fingerprint, &names[1], None);
        assert!(index.is_empty());
    }
}
