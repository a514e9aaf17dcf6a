//! Model-based test of the dedup decision and group commit: random interleavings of
//! concurrent signals, orchestrator phase changes, writes by "other replicas" and transient
//! API failures run against the engine over an in-memory store with optimistic concurrency,
//! and are checked against a naive sequential reference.
//!
//! The store here is a fake on purpose: it checks the engine's logic. What the real apiserver
//! promises (409 on a stale resourceVersion, AlreadyExists) is tested in `dedup_cluster.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway::clock::SystemClock;
use gateway::dedup::{Engine, EngineSettings, Index, NoObserver};
use gateway::fingerprint::Fingerprint;
use gateway::ingest::Signal;
use gateway::k8s::store::{RrStore, StoreError};
use gateway::k8s::types::{
    DeduplicationStatus, RemediationRequest, RemediationRequestStatus, ResourceRef, SignalSource,
    StormAggregationStatus,
};
use gateway::processor::{Outcome, ProcessError, Processor};
use gateway::storm::StormRule;
use gateway::telemetry::Metrics;
use proptest::prelude::*;

/// RRs with apiserver-like optimistic concurrency, plus fault injection.
#[derive(Default)]
struct FakeStore {
    rrs: Mutex<BTreeMap<String, RemediationRequest>>,
    next_rv: AtomicU64,
    /// Every n-th call fails with Unavailable before touching anything (0 = never).
    fail_every: AtomicU64,
    calls: AtomicU64,
}

impl FakeStore {
    fn bump(&self) -> String {
        (self.next_rv.fetch_add(1, Ordering::SeqCst) + 1).to_string()
    }

    async fn maybe_fail(&self) -> Result<(), StoreError> {
        // Yield so concurrent signals really interleave with in-flight calls.
        tokio::task::yield_now().await;
        let n = self.fail_every.load(Ordering::SeqCst);
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n > 0 && call % n == 0 {
            return Err(StoreError::Unavailable("injected".into()));
        }
        Ok(())
    }

    /// The orchestrator finishing the active RR of a fingerprint.
    fn terminate_active(&self, fingerprint: &str) {
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
    fn counts(&self) -> BTreeMap<String, (String, i64)> {
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
        let mut rrs = self.rrs.lock().unwrap();
        let name = rr.metadata.name.clone().unwrap();
        if rrs.contains_key(&name) {
            return Err(StoreError::AlreadyExists);
        }
        let mut stored = rr.clone();
        stored.status = None;
        stored.metadata.resource_version = Some(self.bump());
        rrs.insert(name, stored.clone());
        Ok(stored)
    }

    async fn patch_status(
        &self,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<RemediationRequest, StoreError> {
        self.maybe_fail().await?;
        let mut rrs = self.rrs.lock().unwrap();
        let rr = rrs.get_mut(name).ok_or(StoreError::NotFound)?;
        if let Some(rv) = patch["metadata"]["resourceVersion"].as_str() {
            if Some(rv) != rr.metadata.resource_version.as_deref() {
                return Err(StoreError::Conflict);
            }
        }
        let dedup: DeduplicationStatus =
            serde_json::from_value(patch["status"]["deduplication"].clone()).unwrap();
        rr.status
            .get_or_insert_with(RemediationRequestStatus::default)
            .deduplication = Some(dedup);
        rr.metadata.resource_version = Some(self.bump());
        Ok(rr.clone())
    }

    async fn patch_storm(
        &self,
        name: &str,
        count: i64,
        storm: &StormAggregationStatus,
    ) -> Result<(), StoreError> {
        self.maybe_fail().await?;
        let mut rrs = self.rrs.lock().unwrap();
        let rr = rrs.get_mut(name).ok_or(StoreError::NotFound)?;
        let status = rr
            .status
            .get_or_insert_with(RemediationRequestStatus::default);
        if status.deduplication.as_ref().map(|d| d.occurrence_count) != Some(count) {
            return Err(StoreError::Invalid("test failed".into()));
        }
        status.storm_aggregation = Some(storm.clone());
        Ok(())
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
}

fn fingerprint(i: u8) -> Fingerprint {
    Fingerprint::of(None, "ns", "Pod", &format!("pod-{i}"))
}

fn signal(i: u8) -> Signal {
    Signal {
        fingerprint: fingerprint(i),
        name: "HighLatency".into(),
        severity: "critical".into(),
        source: SignalSource::Prometheus,
        resource: ResourceRef {
            kind: "Pod".into(),
            name: format!("pod-{i}"),
            namespace: Some("ns".into()),
            api_version: None,
        },
        cluster: None,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        firing_time: jiff::Timestamp::now(),
        raw: "{}".into(),
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Signals sent at once: (fingerprint index, how many).
    Wave(Vec<(u8, u8)>),
    /// The orchestrator completes the active RR of a fingerprint.
    Terminate(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0u8..3, 1u8..6), 1..4).prop_map(Op::Wave),
        1 => (0u8..3).prop_map(Op::Terminate),
    ]
}

/// Runs the ops; returns, per RR, the counts the engine answered.
async fn run(ops: &[Op], fail_every: u64, store: Arc<FakeStore>) -> HashMap<String, Vec<i64>> {
    store.fail_every.store(fail_every, Ordering::SeqCst);
    let rule = StormRule {
        threshold: 5,
        window: Duration::from_secs(60),
        history_size: 64,
    };
    let settings = EngineSettings {
        namespace: "ns".into(),
        rule,
        max_attempts: 64,
    };
    let engine = Engine::new(
        store.clone(),
        Arc::new(Index::new()),
        settings,
        Arc::new(SystemClock),
        Metrics::new(),
        NoObserver,
    );
    let mut answered: HashMap<String, Vec<i64>> = HashMap::new();
    for op in ops {
        match op {
            Op::Terminate(i) => store.terminate_active(fingerprint(*i).as_str()),
            Op::Wave(groups) => {
                let calls = groups
                    .iter()
                    .flat_map(|&(i, n)| std::iter::repeat_n(i, n as usize))
                    .map(|i| {
                        let engine = engine.clone();
                        tokio::spawn(async move { engine.process(signal(i)).await })
                    })
                    .collect::<Vec<_>>();
                for call in calls {
                    match call.await.unwrap() {
                        Ok(Outcome::Created { name, .. }) => {
                            answered.entry(name).or_default().push(1)
                        }
                        Ok(Outcome::Duplicate { name, count, .. }) => {
                            answered.entry(name).or_default().push(count)
                        }
                        Err(ProcessError::Unavailable(_)) => {
                            assert!(fail_every > 0, "unavailable without faults")
                        }
                        Err(error) => panic!("unexpected error: {error}"),
                    }
                }
            }
        }
    }
    answered
}

/// The reference: signals in any order, one active RR per fingerprint, a terminated RR gets a
/// successor. Only the number of RRs per fingerprint and the per-RR counts are observable.
fn check(answered: &HashMap<String, Vec<i64>>, store: &FakeStore, ops: &[Op], faults: bool) {
    let counts = store.counts();
    for (name, (_, final_count)) in &counts {
        let mut got = answered.get(name).cloned().unwrap_or_default();
        got.sort_unstable();
        let expected: Vec<i64> = (1..=*final_count).collect();
        assert_eq!(
            got, expected,
            "RR {name}: answered counts must be exactly 1..=N"
        );
    }
    // The model: per fingerprint, RRs = 1 + terminations that happened while one existed.
    let mut model_rrs: HashMap<u8, (bool, usize)> = HashMap::new();
    let mut model_signals: HashMap<u8, i64> = HashMap::new();
    for op in ops {
        match op {
            Op::Wave(groups) => {
                for &(i, n) in groups {
                    let entry = model_rrs.entry(i).or_insert((false, 0));
                    if !entry.0 {
                        *entry = (true, entry.1 + 1);
                    }
                    *model_signals.entry(i).or_default() += i64::from(n);
                }
            }
            Op::Terminate(i) => {
                if let Some(entry) = model_rrs.get_mut(i) {
                    entry.0 = false;
                }
            }
        }
    }
    if !faults {
        for (i, (_, rrs)) in &model_rrs {
            let fp = fingerprint(*i).to_string();
            let actual: Vec<i64> = counts
                .values()
                .filter(|(f, _)| *f == fp)
                .map(|(_, c)| *c)
                .collect();
            assert_eq!(actual.len(), *rrs, "fingerprint {i}: number of RRs");
            assert_eq!(
                actual.iter().sum::<i64>(),
                model_signals[i],
                "fingerprint {i}: total count"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_sequential_model(ops in prop::collection::vec(op(), 1..12)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let store = Arc::new(FakeStore::default());
        let answered = runtime.block_on(run(&ops, 0, store.clone()));
        check(&answered, &store, &ops, false);
    }

    #[test]
    fn transient_failures_lose_nothing_they_answered(ops in prop::collection::vec(op(), 1..12), fail_every in 2u64..7) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let store = Arc::new(FakeStore::default());
        let answered = runtime.block_on(run(&ops, fail_every, store.clone()));
        check(&answered, &store, &ops, true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_share_patches() {
    let store = Arc::new(FakeStore::default());
    let answered = run(
        &[Op::Wave(vec![(0, 1)]), Op::Wave(vec![(0, 200)])],
        0,
        store.clone(),
    )
    .await;
    let counts: Vec<i64> = answered.values().flatten().copied().collect();
    assert_eq!(counts.len(), 201);
    let patches = store.next_rv.load(Ordering::SeqCst) - 1;
    assert!(
        patches < 200,
        "group commit: {patches} writes for 200 concurrent duplicates"
    );
}
