//! The fingerprint index: for each fingerprint, the RRs the decision needs (usually one),
//! slimmed to what decides activity, counting and naming, and the deterministic RR names.
//! Reads never call Kubernetes.
//!
//! One writer feeds it from the watch; write responses update it at once, so a replica sees
//! its own writes before the watch echoes them. An entry never moves back in
//! `resourceVersion`. A relist builds a fresh map beside the live one (write responses go to
//! both) and swaps it in atomically when the list completes, so deleted RRs disappear without
//! a window in which live ones are missing.

use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use dashmap::DashMap;
use jiff::Timestamp;

use crate::fingerprint::Fingerprint;
use crate::k8s::history::History;
use crate::k8s::types::RemediationRequest;

/// Label carrying the RR's generation number for its fingerprint (0, 1, …), from which its
/// deterministic name is derived.
pub const GENERATION_LABEL: &str = "gateway.kubernaut.ai/generation";

type Shards = DashMap<Fingerprint, Vec<RrState>, ahash::RandomState>;

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
        let generation = rr
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(GENERATION_LABEL))
            .and_then(|g| g.parse().ok());
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
}

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
        }
    }

    /// The active RR of a fingerprint, if any.
    pub fn active(&self, fingerprint: &Fingerprint, now: Timestamp) -> Option<RrState> {
        let live = self.live.load();
        let rrs = live.get(fingerprint)?;
        rrs.iter()
            .filter(|rr| rr.is_active(now))
            .max_by_key(|rr| rr.generation)
            .cloned()
    }

    /// The `resourceVersion` the index holds for one RR.
    pub fn resource_version(&self, fingerprint: &Fingerprint, name: &str) -> Option<u64> {
        let live = self.live.load();
        let rrs = live.get(fingerprint)?;
        rrs.iter()
            .find(|rr| &*rr.name == name)
            .map(|rr| rr.resource_version)
    }

    /// The generation the next RR of this fingerprint gets.
    pub fn next_generation(&self, fingerprint: &Fingerprint) -> u32 {
        let live = self.live.load();
        live.get(fingerprint).map_or(0, |rrs| {
            let known = rrs
                .iter()
                .filter_map(|rr| rr.generation)
                .max()
                .map_or(0, |g| g + 1);
            known.max(u32::try_from(rrs.len()).unwrap_or(u32::MAX))
        })
    }

    /// Takes in an RR seen on the watch or returned by a write, unless the index already
    /// holds a newer version of it.
    pub fn apply(&self, rr: &RemediationRequest) {
        let Some((fingerprint, state)) = RrState::from_rr(rr) else {
            return;
        };
        if let Some(relist) = self.relist.load().as_ref() {
            upsert(relist, fingerprint, state.clone());
        }
        upsert(&self.live.load(), fingerprint, state);
    }

    /// Drops an RR deleted on the watch (or found missing by a write).
    pub fn remove(&self, fingerprint: &Fingerprint, name: &str) {
        for shards in [Some(self.live.load_full()), self.relist.load_full()]
            .into_iter()
            .flatten()
        {
            shards.remove_if_mut(fingerprint, |_, rrs| {
                rrs.retain(|rr| &*rr.name != name);
                rrs.is_empty()
            });
        }
    }

    /// Drops an RR given as an object.
    pub fn remove_rr(&self, rr: &RemediationRequest) {
        if let (Some(fingerprint), Some(name)) = (
            Fingerprint::parse(&rr.spec.signal_fingerprint),
            rr.metadata.name.as_deref(),
        ) {
            self.remove(&fingerprint, name);
        }
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

fn upsert(shards: &Shards, fingerprint: Fingerprint, state: RrState) {
    let mut rrs = shards.entry(fingerprint).or_default();
    match rrs.iter_mut().find(|rr| rr.name == state.name) {
        Some(existing) if existing.resource_version >= state.resource_version => {}
        Some(existing) => *existing = state,
        None => rrs.push(state),
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
