//! Model-based test of the dedup decision and group commit: random interleavings of
//! concurrent signals, orchestrator phase changes, writes by "other replicas" and transient
//! API failures run against the engine over an in-memory store with optimistic concurrency,
//! and are checked against a naive sequential reference.
//!
//! The store here is a fake on purpose: it checks the engine's logic. What the real apiserver
//! promises (409 on a stale resourceVersion, AlreadyExists) is tested in `dedup_cluster.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gateway::clock::SystemClock;
use gateway::dedup::{Engine, Settings};
use gateway::fingerprint::Fingerprint;
use gateway::index::Index;
use gateway::ingest::Signal;
use gateway::processor::{Outcome, ProcessError};
use gateway::storm;
use gateway::telemetry::Metrics;
use proptest::prelude::*;
use support::fake::FakeStore;

fn fingerprint(i: u8) -> Fingerprint {
    Fingerprint::of(None, "ns", "Pod", &format!("pod-{i}"))
}

fn signal(i: u8) -> Signal {
    support::fake::pod_signal(&format!("pod-{i}"))
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

/// The engine over `store`, storm status never written (async mode, no flusher).
fn engine(store: &Arc<FakeStore>, status_init_delay: Duration) -> Engine<FakeStore> {
    engine_with_deadline(store, status_init_delay, Duration::from_secs(60))
}

fn engine_with_deadline(
    store: &Arc<FakeStore>,
    status_init_delay: Duration,
    request_timeout: Duration,
) -> Engine<FakeStore> {
    let rule = storm::Rule {
        threshold: 5,
        window: Duration::from_secs(60),
        history_size: 64,
    };
    let settings = Settings {
        namespace: "ns".into(),
        max_attempts: 64,
        status_init_delay,
        payload: Default::default(),
        managed_fields: Default::default(),
        request_timeout,
        call_timeout: Duration::from_secs(2),
    };
    let index = Arc::new(Index::new());
    let metrics = Metrics::new();
    let storm = storm::Writer::new(
        rule,
        storm::Mode::Async,
        100,
        store.clone(),
        index.clone(),
        metrics.clone(),
    );
    Engine::new(
        store.clone(),
        index,
        settings,
        Arc::new(SystemClock),
        metrics,
        storm,
    )
}

/// An engine with a 5 s request deadline that has created the RR of `signal(0)`.
async fn created(store: &Arc<FakeStore>) -> Engine<FakeStore> {
    let engine = engine_with_deadline(store, Duration::from_millis(20), Duration::from_secs(5));
    assert!(matches!(
        engine.process(signal(0)).await,
        Ok(Outcome::Created { .. })
    ));
    engine
}

/// The final count of every RR in `store`.
fn final_counts(store: &FakeStore) -> Vec<i64> {
    store.counts().values().map(|(_, count)| *count).collect()
}

/// Writes the fake store took for the only RR of `store` (its resourceVersion counts them).
fn writes(store: &FakeStore) -> u64 {
    store.next_rv.load(Ordering::SeqCst)
}

fn initialised(store: &FakeStore) -> Option<i64> {
    let rrs = store.rrs.lock().unwrap();
    let rr = rrs.values().next()?;
    Some(rr.status.as_ref()?.deduplication.as_ref()?.occurrence_count)
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_within_the_delay_initialises_the_status_in_its_own_write() {
    let store = Arc::new(FakeStore::default());
    let engine = engine(&store, Duration::from_secs(1));
    assert!(matches!(
        engine.process(signal(0)).await,
        Ok(Outcome::Created { .. })
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        initialised(&store),
        None,
        "not yet: waiting for a duplicate"
    );
    let Ok(Outcome::Duplicate { count, .. }) = engine.process(signal(0)).await else {
        panic!("a duplicate");
    };
    assert_eq!(count, 2);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(initialised(&store), Some(2));
    assert_eq!(
        writes(&store),
        2,
        "the create and one status patch, no separate initialisation"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lone_create_gets_its_count_one_status_after_the_delay() {
    let store = Arc::new(FakeStore::default());
    let engine = engine(&store, Duration::from_secs(1));
    assert!(matches!(
        engine.process(signal(0)).await,
        Ok(Outcome::Created { .. })
    ));
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(initialised(&store), None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(initialised(&store), Some(1));
    assert_eq!(writes(&store), 2);
}

/// The clearing of managed fields waits for a quiet moment: a signal that queued while the
/// RR's third count was being written is counted before it, not after a slow clearing.
#[tokio::test(start_paused = true)]
async fn clearing_managed_fields_never_delays_a_queued_signal() {
    let store = Arc::new(FakeStore::default());
    store.latency_ms.store(10, Ordering::SeqCst);
    store.clearing_latency_ms.store(30_000, Ordering::SeqCst);
    let engine = engine(&store, Duration::from_millis(20));
    for _ in 0..2 {
        assert!(engine.process(signal(0)).await.is_ok());
    }
    // The third signal makes the clearing due; the fourth queues while its patch is in flight.
    let third = tokio::spawn({
        let engine = engine.clone();
        async move { engine.process(signal(0)).await }
    });
    tokio::time::sleep(Duration::from_millis(2)).await;
    let started = tokio::time::Instant::now();
    let Ok(Outcome::Duplicate { count, .. }) = engine.process(signal(0)).await else {
        panic!("a duplicate");
    };
    let waited = started.elapsed();
    assert_eq!(count, 4);
    assert!(
        waited < Duration::from_secs(1),
        "the fourth signal waited {waited:?}, behind the clearing"
    );
    assert!(matches!(
        third.await.unwrap(),
        Ok(Outcome::Duplicate { count: 3, .. })
    ));
    assert_eq!(store.clearings.load(Ordering::SeqCst), 0, "not cleared yet");
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(
        store.clearings.load(Ordering::SeqCst),
        1,
        "cleared once the queue was quiet"
    );
}

/// Under a writer that wins every race and a slow API, a duplicate is answered 503 within its
/// deadline instead of after every attempt (16 attempts of patch + GET here would take 48 s).
#[tokio::test(start_paused = true)]
async fn a_signal_is_answered_within_its_deadline() {
    let store = Arc::new(FakeStore::default());
    let engine = created(&store).await;
    store.latency_ms.store(1500, Ordering::SeqCst);
    store.always_conflict.store(true, Ordering::SeqCst);
    let started = tokio::time::Instant::now();
    let answer = engine.process(signal(0)).await;
    let took = started.elapsed();
    assert!(
        matches!(answer, Err(ProcessError::Unavailable(_))),
        "{answer:?}"
    );
    assert!(took <= Duration::from_secs(5), "answered after {took:?}");
    assert_eq!(final_counts(&store), vec![1], "nothing counted");
}

/// The orchestrator sets a phase right after the create, before the gateway's initialisation:
/// the initialisation re-reads the RR and still writes count 1, keeping the phase.
#[tokio::test(start_paused = true)]
async fn initialisation_survives_a_status_write_by_another_writer() {
    let store = Arc::new(FakeStore::default());
    let engine = engine(&store, Duration::from_millis(100));
    assert!(matches!(
        engine.process(signal(0)).await,
        Ok(Outcome::Created { .. })
    ));
    {
        let mut rrs = store.rrs.lock().unwrap();
        let rr = rrs.values_mut().next().unwrap();
        rr.status.get_or_insert_with(Default::default).overall_phase = Some("Processing".into());
        rr.metadata.resource_version =
            Some((store.next_rv.fetch_add(1, Ordering::SeqCst) + 1).to_string());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        initialised(&store),
        Some(1),
        "count 1 written despite the other write"
    );
    let rrs = store.rrs.lock().unwrap();
    let status = rrs.values().next().unwrap().status.clone().unwrap();
    assert_eq!(status.overall_phase.as_deref(), Some("Processing"));
}

/// The answer to a duplicate's status patch is lost after the patch was applied (a timeout on
/// the way back): the engine re-reads the RR, finds its own write there and answers with the
/// ordinal, instead of a 503 whose retry would count the signal twice.
#[tokio::test(start_paused = true)]
async fn a_lost_answer_to_an_applied_patch_is_still_counted_once() {
    let store = Arc::new(FakeStore::default());
    let engine = created(&store).await;
    store.lose_answers.store(1, Ordering::SeqCst);
    let answer = engine.process(signal(0)).await;
    assert!(
        matches!(answer, Ok(Outcome::Duplicate { count: 2, .. })),
        "{answer:?}"
    );
    let Ok(Outcome::Duplicate { count, .. }) = engine.process(signal(0)).await else {
        panic!("a duplicate");
    };
    assert_eq!(count, 3);
    assert_eq!(final_counts(&store), vec![3], "each signal counted once");
}

/// The answer is lost and another replica counts a signal on top before the RR is re-read:
/// our block is gone, but ours may well be in the count. Counting again could count twice,
/// so the signal is answered 503 and nothing more is written.
#[tokio::test(start_paused = true)]
async fn a_lost_answer_under_a_newer_write_is_not_counted_again() {
    let store = Arc::new(FakeStore::default());
    let engine = created(&store).await;
    store.lose_answers.store(1, Ordering::SeqCst);
    store.write_on_top_of_lost.store(true, Ordering::SeqCst);
    let answer = engine.process(signal(0)).await;
    assert!(
        matches!(answer, Err(ProcessError::Unavailable(_))),
        "{answer:?}"
    );
    assert_eq!(
        final_counts(&store),
        vec![3],
        "ours and the other writer's, not ours twice"
    );
}

/// The same for a create: the RR under the name with the spec sent is the one this create
/// made, so the first signal is answered 201 and not counted again.
#[tokio::test(start_paused = true)]
async fn a_lost_answer_to_an_applied_create_is_still_a_create() {
    let store = Arc::new(FakeStore::default());
    let engine = engine_with_deadline(&store, Duration::from_millis(20), Duration::from_secs(5));
    store.lose_answers.store(1, Ordering::SeqCst);
    let answer = engine.process(signal(0)).await;
    assert!(matches!(answer, Ok(Outcome::Created { .. })), "{answer:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(initialised(&store), Some(1));
}

/// Two replicas disagree about a terminal RR that was deleted: one has seen the Delete, the
/// other still holds the RR. A signal of that fingerprint then reaches both at once. Each
/// deciding the next generation from its own view gave two names (0 and 1), so two active
/// RRs that never collide; deciding it from the authoritative list gives one.
#[tokio::test(start_paused = true)]
async fn replicas_that_disagree_about_a_deleted_rr_still_make_one() {
    let store = Arc::new(FakeStore::default());
    let a = engine(&store, Duration::from_millis(20));
    let b = engine(&store, Duration::from_millis(20));
    assert!(matches!(
        a.process(signal(0)).await,
        Ok(Outcome::Created { .. })
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    store.terminate_active(&fingerprint(0).to_string());
    let terminal = store.rrs.lock().unwrap().values().next().cloned().unwrap();
    a.index().apply(&terminal);
    b.index().apply(&terminal);
    store.rrs.lock().unwrap().clear();
    let mut deleted = terminal.clone();
    deleted.metadata.resource_version =
        Some((store.next_rv.load(Ordering::SeqCst) + 1).to_string());
    a.index().remove_rr(&deleted);

    let (first, second) = tokio::join!(a.process(signal(0)), b.process(signal(0)));
    let mut answers = [first, second].map(|answer| match answer {
        Ok(Outcome::Created { .. }) => 1,
        Ok(Outcome::Duplicate { count, .. }) => count,
        Ok(other) => panic!("{other:?}"),
        Err(error) => panic!("{error:?}"),
    });
    answers.sort_unstable();
    assert_eq!(answers, [1, 2], "one create, one duplicate");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(final_counts(&store), vec![2], "one RR for the fingerprint");
    assert!(store.lists.load(Ordering::SeqCst) >= 1);
}

/// A fingerprint never seen makes no list call: the common create costs one write.
#[tokio::test(start_paused = true)]
async fn a_first_sighting_makes_no_list_call() {
    let store = Arc::new(FakeStore::default());
    let engine = engine(&store, Duration::from_millis(20));
    assert!(matches!(
        engine.process(signal(0)).await,
        Ok(Outcome::Created { .. })
    ));
    assert_eq!(store.lists.load(Ordering::SeqCst), 0);
}

/// Runs the ops; returns, per RR, the counts the engine answered.
async fn run(ops: &[Op], fail_every: u64, store: Arc<FakeStore>) -> HashMap<String, Vec<i64>> {
    store.fail_every.store(fail_every, Ordering::SeqCst);
    let engine = engine(&store, Duration::from_millis(20));
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
                        Ok(other) => panic!("the engine never answers {other:?}"),
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
