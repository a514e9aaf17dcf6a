//! An in-memory [`RrStore`] with apiserver-like optimistic concurrency and fault injection,
//! for logic tests of the engine. What the real apiserver promises is tested against it in the
//! cluster tests.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use gateway::fingerprint::Fingerprint;
use gateway::k8s::store::{RrStore, StatusPatch, StoreError};
use gateway::k8s::types::{RemediationRequest, RemediationRequestStatus, StormAggregationStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

/// RRs with apiserver-like optimistic concurrency, plus fault injection.
#[derive(Default)]
pub struct FakeStore {
    pub rrs: Mutex<BTreeMap<String, RemediationRequest>>,
    pub next_rv: AtomicU64,
    /// Every n-th call fails with Unavailable before touching anything (0 = never).
    pub fail_every: AtomicU64,
    /// Storm patches fail (Unavailable) while set.
    pub fail_storm: AtomicBool,
    /// Storm patches taken.
    pub storm_writes: AtomicU64,
    /// Every call takes this long (ms of tokio time) before answering.
    pub latency_ms: AtomicU64,
    /// Every status patch loses a race (409), as under a writer that never stops.
    pub always_conflict: AtomicBool,
    /// The next this many creates and status patches are applied, then answered with a
    /// timeout, as when the answer is lost on the way back.
    pub lose_answers: AtomicU64,
    /// With `lose_answers`: another writer counts one more signal on top of each write whose
    /// answer is lost, before anyone can re-read it.
    pub write_on_top_of_lost: AtomicBool,
    /// Field-selector lists taken.
    pub lists: AtomicU64,
    /// Clearings of managed fields taken.
    pub clearings: AtomicU64,
    /// A clearing of managed fields takes this much longer (ms of tokio time).
    pub clearing_latency_ms: AtomicU64,
    /// Creates of an RR with this fingerprint are refused (Unavailable, as a quota or an
    /// overloaded apiserver would refuse them) while set.
    pub refuse_creates_of: Mutex<Option<String>>,
    calls: AtomicU64,
}

/// Sleeps the milliseconds (tokio time) that `ms` holds, if any.
async fn delay(ms: &AtomicU64) {
    let ms = ms.load(Ordering::SeqCst);
    if ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

impl FakeStore {
    fn bump(&self) -> String {
        (self.next_rv.fetch_add(1, Ordering::SeqCst) + 1).to_string()
    }

    async fn maybe_fail(&self) -> Result<(), StoreError> {
        // Yield so concurrent signals really interleave with in-flight calls.
        tokio::task::yield_now().await;
        delay(&self.latency_ms).await;
        let n = self.fail_every.load(Ordering::SeqCst);
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n > 0 && call.is_multiple_of(n) {
            return Err(StoreError::Unavailable("injected".into()));
        }
        Ok(())
    }

    /// Whether this write's answer is to be lost (it is applied all the same).
    fn answer_lost(&self) -> bool {
        self.lose_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn lost(&self) -> StoreError {
        StoreError::Timeout(std::time::Duration::from_secs(2))
    }

    /// The orchestrator finishing the active RR of a fingerprint.
    pub fn terminate_active(&self, fingerprint: &str) {
        let mut rrs = self.rrs.lock().unwrap();
        for rr in rrs
            .values_mut()
            .filter(|rr| rr.spec.signal_fingerprint == fingerprint)
        {
            let status = rr
                .status
                .get_or_insert_with(RemediationRequestStatus::default);
            if status.overall_phase.as_deref() != Some("Completed") {
                status.overall_phase = Some("Completed".into());
                rr.metadata.resource_version = Some(self.bump());
            }
        }
    }

    /// Per RR name: (fingerprint, final count).
    pub fn counts(&self) -> BTreeMap<String, (String, i64)> {
        self.rrs
            .lock()
            .unwrap()
            .iter()
            .map(|(name, rr)| {
                let count = rr
                    .status
                    .as_ref()
                    .and_then(|s| s.deduplication.as_ref())
                    .map_or(1, |d| d.occurrence_count);
                (name.clone(), (rr.spec.signal_fingerprint.clone(), count))
            })
            .collect()
    }
}

impl RrStore for FakeStore {
    async fn create(&self, rr: &RemediationRequest) -> Result<RemediationRequest, StoreError> {
        self.maybe_fail().await?;
        if self.refuse_creates_of.lock().unwrap().as_deref() == Some(&rr.spec.signal_fingerprint) {
            return Err(StoreError::Unavailable("injected: create refused".into()));
        }
        let mut rrs = self.rrs.lock().unwrap();
        let name = rr.metadata.name.clone().unwrap();
        if rrs.contains_key(&name) {
            return Err(StoreError::AlreadyExists);
        }
        let mut stored = rr.clone();
        stored.status = None;
        stored.metadata.resource_version = Some(self.bump());
        // As the apiserver tracks a create, so that the engine's clearing of them is exercised.
        stored.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("gateway".into()),
            operation: Some("Update".into()),
            ..ManagedFieldsEntry::default()
        }]);
        rrs.insert(name, stored.clone());
        if self.answer_lost() {
            return Err(self.lost());
        }
        Ok(stored)
    }

    async fn patch_status(
        &self,
        name: &str,
        patch: &StatusPatch,
    ) -> Result<RemediationRequest, StoreError> {
        self.maybe_fail().await?;
        let mut rrs = self.rrs.lock().unwrap();
        let rr = rrs.get_mut(name).ok_or(StoreError::NotFound)?;
        if self.always_conflict.load(Ordering::SeqCst)
            || Some(patch.resource_version().to_string()) != rr.metadata.resource_version
        {
            return Err(StoreError::Conflict);
        }
        let status = rr
            .status
            .get_or_insert_with(RemediationRequestStatus::default);
        status.deduplication = Some(patch.deduplication().clone());
        if let Some(storm) = patch.storm() {
            status.storm_aggregation = Some(storm.clone());
        }
        rr.metadata.resource_version = Some(self.bump());
        if self.answer_lost() {
            if self.write_on_top_of_lost.load(Ordering::SeqCst) {
                let dedup = status.deduplication.as_mut().unwrap();
                dedup.occurrence_count += 1;
                dedup
                    .recent_occurrences
                    .push(dedup.recent_occurrences.last().unwrap_or(&0) + 1);
                rr.metadata.resource_version = Some(self.bump());
            }
            return Err(self.lost());
        }
        Ok(rr.clone())
    }

    async fn patch_storm(
        &self,
        name: &str,
        count: i64,
        storm: &StormAggregationStatus,
    ) -> Result<RemediationRequest, StoreError> {
        self.maybe_fail().await?;
        if self.fail_storm.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected storm failure".into()));
        }
        let mut rrs = self.rrs.lock().unwrap();
        let rr = rrs.get_mut(name).ok_or(StoreError::NotFound)?;
        self.storm_writes.fetch_add(1, Ordering::SeqCst);
        let status = rr
            .status
            .get_or_insert_with(RemediationRequestStatus::default);
        if status.deduplication.as_ref().map(|d| d.occurrence_count) != Some(count) {
            return Err(StoreError::Invalid("test failed".into()));
        }
        status.storm_aggregation = Some(storm.clone());
        rr.metadata.resource_version = Some(self.bump());
        Ok(rr.clone())
    }

    async fn get(&self, name: &str) -> Result<RemediationRequest, StoreError> {
        self.maybe_fail().await?;
        self.rrs
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn clear_managed_fields(&self, name: &str) -> Result<RemediationRequest, StoreError> {
        self.maybe_fail().await?;
        delay(&self.clearing_latency_ms).await;
        let mut rrs = self.rrs.lock().unwrap();
        let rr = rrs.get_mut(name).ok_or(StoreError::NotFound)?;
        rr.metadata.managed_fields = None;
        rr.metadata.resource_version = Some(self.bump());
        self.clearings.fetch_add(1, Ordering::SeqCst);
        Ok(rr.clone())
    }

    async fn list_fingerprint(
        &self,
        fingerprint: &Fingerprint,
    ) -> Result<Vec<RemediationRequest>, StoreError> {
        self.maybe_fail().await?;
        self.lists.fetch_add(1, Ordering::SeqCst);
        let wanted = fingerprint.to_string();
        Ok(self
            .rrs
            .lock()
            .unwrap()
            .values()
            .filter(|rr| rr.spec.signal_fingerprint == wanted)
            .cloned()
            .collect())
    }
}

impl FakeStore {
    /// The storm block of the only RR of a fingerprint.
    pub fn storm_of(&self, fingerprint: &str) -> Option<StormAggregationStatus> {
        let rrs = self.rrs.lock().unwrap();
        let rr = rrs
            .values()
            .find(|rr| rr.spec.signal_fingerprint == fingerprint)?;
        rr.status.as_ref()?.storm_aggregation.clone()
    }
}

/// A valid signal about Pod `pod` in namespace `ns`, as an adapter would produce it.
pub fn pod_signal(pod: &str) -> gateway::ingest::Signal {
    super::pod_rr::pod_signal("ns", pod)
}
