//! Storm aggregation (DESIGN.md §6). The rule against an injected clock and the engine over
//! the in-memory store (logic), then real gateway processes against the real control plane
//! (convergence across replicas, coalescing, shutdown flush, sync mode).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::join_all;
use gateway::clock::{Clock, ManualClock};
use gateway::dedup::{Engine, Settings};
use gateway::fingerprint::Fingerprint;
use gateway::index::Index;
use gateway::k8s::types::StormAggregationStatus;
use gateway::processor::Outcome;
use gateway::storm;
use gateway::telemetry::Metrics;
use support::fake::{FakeStore, pod_signal as signal};
use support::{Gateway, Http, Stack, alert, eventually, pod_fingerprint, rrs_of};

/// An engine in `sync` storm mode over the fake store, driven by a manual clock.
fn engine(
    store: &Arc<FakeStore>,
    clock: &ManualClock,
    threshold: u32,
    window: Duration,
) -> Engine<FakeStore> {
    engine_in(store, clock, threshold, window, storm::Mode::Sync)
}

fn engine_in(
    store: &Arc<FakeStore>,
    clock: &ManualClock,
    threshold: u32,
    window: Duration,
    mode: storm::Mode,
) -> Engine<FakeStore> {
    let rule = storm::Rule {
        threshold,
        window,
        history_size: 64,
    };
    let metrics = Metrics::new();
    let index = Arc::new(Index::new());
    let storm = storm::Writer::new(
        rule,
        mode,
        100,
        store.clone(),
        index.clone(),
        metrics.clone(),
    );
    let settings = Settings {
        namespace: "ns".into(),
        max_attempts: 16,
        status_init_delay: Duration::from_millis(20),
        payload: Default::default(),
        managed_fields: Default::default(),
        request_timeout: Duration::from_secs(60),
        call_timeout: Duration::from_secs(2),
    };
    Engine::new(
        store.clone(),
        index,
        settings,
        Arc::new(clock.clone()),
        metrics,
        storm,
    )
}

fn start() -> ManualClock {
    ManualClock::new("2026-03-01T12:00:00Z".parse().unwrap())
}

#[tokio::test]
async fn threshold_crossed_at_exactly_the_threshold_th_occurrence_in_the_window() {
    let (store, clock) = (Arc::new(FakeStore::default()), start());
    let engine = engine(&store, &clock, 5, Duration::from_secs(60));
    let fp = Fingerprint::of(None, "ns", "Pod", "a").to_string();
    for _ in 0..4 {
        engine.process(signal("a")).await.unwrap();
        assert_eq!(store.storm_of(&fp), None);
        clock.advance(Duration::from_secs(15));
    }
    // 5th occurrence, exactly 60 s after the 1st.
    clock.set("2026-03-01T12:01:00Z".parse().unwrap());
    engine.process(signal("a")).await.unwrap();
    let storm = store.storm_of(&fp).expect("storm at the 5th occurrence");
    assert!(storm.is_part_of_storm);
    assert_eq!((storm.aggregated_count, storm.window_occurrences), (1, 5));
    assert_eq!(storm.storm_detected_at.unwrap().0, clock.now());
    engine.process(signal("a")).await.unwrap();
    assert_eq!(store.storm_of(&fp).unwrap().aggregated_count, 2);
}

#[tokio::test]
async fn no_storm_when_spread_wider_than_the_window() {
    let (store, clock) = (Arc::new(FakeStore::default()), start());
    let engine = engine(&store, &clock, 5, Duration::from_secs(60));
    for _ in 0..30 {
        engine.process(signal("b")).await.unwrap();
        clock.advance(Duration::from_millis(15_001));
    }
    assert_eq!(
        store.storm_of(&Fingerprint::of(None, "ns", "Pod", "b").to_string()),
        None
    );
}

#[tokio::test]
async fn lifetime_mode_ignores_time() {
    let (store, clock) = (Arc::new(FakeStore::default()), start());
    let engine = engine(&store, &clock, 5, Duration::ZERO);
    let fp = Fingerprint::of(None, "ns", "Pod", "c").to_string();
    for i in 1..=5 {
        assert_eq!(store.storm_of(&fp), None, "before occurrence {i}");
        engine.process(signal("c")).await.unwrap();
        clock.advance(Duration::from_secs(86_400));
    }
    let storm = store.storm_of(&fp).unwrap();
    assert_eq!((storm.aggregated_count, storm.window_occurrences), (1, 5));
}

/// In `async` mode a storm write that fails for a reason a retry can fix stays queued and
/// lands once the API is back (it is not dropped).
#[tokio::test(start_paused = true)]
async fn a_failed_storm_write_is_retried_until_it_lands() {
    let (store, clock) = (Arc::new(FakeStore::default()), start());
    let engine = engine_in(
        &store,
        &clock,
        2,
        Duration::from_secs(60),
        storm::Mode::Async,
    );
    let fp = Fingerprint::of(None, "ns", "Pod", "r").to_string();
    for _ in 0..3 {
        engine.process(signal("r")).await.unwrap();
    }
    let metrics = Metrics::new();
    let interval = Duration::from_millis(200);
    let flush = || {
        storm::queue::flush(
            engine.storm().queue(),
            &*store,
            engine.index(),
            &metrics,
            4,
            interval,
        )
    };
    store.fail_storm.store(true, Ordering::SeqCst);
    flush().await;
    assert_eq!(store.storm_of(&fp), None);
    assert_eq!(engine.storm().queue().len(), 1, "kept for a retry");
    store.fail_storm.store(false, Ordering::SeqCst);
    flush().await;
    assert_eq!(store.storm_of(&fp), None, "not before its backoff");
    tokio::time::sleep(Duration::from_secs(1)).await;
    flush().await;
    let storm = store.storm_of(&fp).expect("written on the retry");
    assert_eq!(storm.aggregated_count, 2);
    assert!(engine.storm().queue().is_empty());
}

#[tokio::test]
async fn a_failing_storm_patch_changes_no_response() {
    let run = |fail: bool| async move {
        let (store, clock) = (Arc::new(FakeStore::default()), start());
        store.fail_storm.store(fail, Ordering::SeqCst);
        let engine = engine(&store, &clock, 2, Duration::from_secs(60));
        let mut outcomes = Vec::new();
        for _ in 0..6 {
            outcomes.push(engine.process(signal("d")).await.unwrap());
            clock.advance(Duration::from_secs(1));
        }
        (outcomes, store.storm_writes.load(Ordering::SeqCst))
    };
    let (healthy, written) = run(false).await;
    let (failing, failed_written) = run(true).await;
    assert_eq!(
        healthy, failing,
        "identical answers whether storm writes work or not"
    );
    assert!(written > 0 && failed_written == 0);
    assert!(matches!(
        failing.last(),
        Some(Outcome::Duplicate { count: 6, .. })
    ));
}

// ---- real control plane ----

/// A fresh namespace on the shared plane, an admin client, the kubeconfig, and an HTTP client
/// whose POSTs carry a sender token.
async fn namespace(prefix: &str) -> (String, kube::Client, std::path::PathBuf, Http) {
    let stack = Stack::shared(prefix, &[]).await;
    (stack.ns, stack.client, stack.kubeconfig, stack.http)
}

async fn storm_of(client: &kube::Client, ns: &str, pod: &str) -> Option<StormAggregationStatus> {
    let rr = rrs_of(client, ns, &pod_fingerprint(ns, pod))
        .await
        .into_iter()
        .next()?;
    rr.status?.storm_aggregation
}

async fn send(http: &Http, gateways: &[Gateway], ns: &str, pod: &str, n: usize) {
    let answers = join_all((0..n).map(|i| {
        let url = format!(
            "{}/api/v1/signals/prometheus",
            gateways[i % gateways.len()].api
        );
        let (http, body) = (http.clone(), alert("Flapping", ns, pod));
        async move { http.post(&url, &body).await.0 }
    }))
    .await;
    assert!(
        answers.iter().all(|s| *s == 201 || *s == 202),
        "{answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_converge_on_the_single_replica_values() {
    for mode in ["async", "inline"] {
        converge(mode).await;
    }
}

/// The storm status of one RR fed by three replicas equals that of one fed by one replica.
async fn converge(mode: &str) {
    let (ns, client, kubeconfig, http) = namespace(&format!("storm-conv-{mode}")).await;
    // A history of 64 arrivals, so windowOccurrences can reach 30.
    let args = ["--storm-updates", mode, "--storm-history-size", "64"];
    let three: Vec<Gateway> = (0..3)
        .map(|_| Gateway::start(&kubeconfig, &ns, &args))
        .collect();
    for g in &three {
        g.ready(&http).await;
    }
    // The first occurrence creates the RR; the rest arrive at once, spread over replicas.
    send(&http, &three[..1], &ns, "multi", 1).await;
    send(&http, &three, &ns, "multi", 29).await;
    send(&http, &three[..1], &ns, "single", 1).await;
    send(&http, &three[..1], &ns, "single", 29).await;

    let expected =
        |s: &StormAggregationStatus| s.aggregated_count == 26 && s.window_occurrences == 30;
    let multi = eventually(
        Duration::from_secs(10),
        "3-replica storm status",
        || async { storm_of(&client, &ns, "multi").await.filter(expected) },
    )
    .await;
    let single = eventually(
        Duration::from_secs(10),
        "1-replica storm status",
        || async { storm_of(&client, &ns, "single").await.filter(expected) },
    )
    .await;
    for storm in [&multi, &single] {
        assert!(storm.is_part_of_storm);
        let id = storm.storm_id.as_deref().unwrap();
        assert!(
            id.starts_with("storm-") && id.len() == "storm-".len() + 8 + 1 + 8,
            "{id}"
        );
        assert!(storm.storm_detected_at.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_1000_duplicates_coalesces_storm_writes() {
    let (ns, client, kubeconfig, http) = namespace("storm-burst").await;
    let gateway = Gateway::start(&kubeconfig, &ns, &["--storm-updates", "async"]);
    gateway.ready(&http).await;
    send(&http, std::slice::from_ref(&gateway), &ns, "burst", 1).await;
    for _ in 0..10 {
        send(&http, std::slice::from_ref(&gateway), &ns, "burst", 100).await;
    }
    eventually(Duration::from_secs(10), "final storm status", || async {
        storm_of(&client, &ns, "burst")
            .await
            .filter(|s| s.aggregated_count == 1001 - 5 + 1)
    })
    .await;
    let patches = gateway
        .metric(&http, "gateway_storm_patches_total", &[])
        .await;
    let coalesced = gateway
        .metric(&http, "gateway_storm_coalesced_total", &[])
        .await;
    assert!(
        (1.0..100.0).contains(&patches),
        "{patches} storm patches for 1000 signals"
    );
    assert!(coalesced > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_the_pending_storm_state() {
    let (ns, client, kubeconfig, http) = namespace("storm-stop").await;
    let gateway = Gateway::start(
        &kubeconfig,
        &ns,
        &["--storm-updates", "async", "--storm-flush-interval", "1h"],
    );
    gateway.ready(&http).await;
    send(&http, std::slice::from_ref(&gateway), &ns, "stop", 1).await;
    send(&http, std::slice::from_ref(&gateway), &ns, "stop", 6).await;
    assert_eq!(
        storm_of(&client, &ns, "stop").await,
        None,
        "nothing written before shutdown"
    );
    let status = tokio::task::spawn_blocking(move || gateway.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let storm = storm_of(&client, &ns, "stop")
        .await
        .expect("flushed on shutdown");
    assert_eq!(storm.aggregated_count, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_mode_writes_before_responding() {
    let (ns, client, kubeconfig, http) = namespace("storm-sync").await;
    let gateway = Gateway::start(&kubeconfig, &ns, &["--storm-updates", "sync"]);
    gateway.ready(&http).await;
    let gateways = std::slice::from_ref(&gateway);
    for _ in 0..4 {
        send(&http, gateways, &ns, "sync", 1).await;
    }
    assert_eq!(storm_of(&client, &ns, "sync").await, None);
    send(&http, gateways, &ns, "sync", 1).await;
    let storm = storm_of(&client, &ns, "sync")
        .await
        .expect("written before the 5th response");
    assert_eq!(storm.aggregated_count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_mode_writes_with_the_dedup_patch() {
    let (ns, client, kubeconfig, http) = namespace("storm-inline").await;
    let gateway = Gateway::start(&kubeconfig, &ns, &["--storm-updates", "inline"]);
    gateway.ready(&http).await;
    let gateways = std::slice::from_ref(&gateway);
    for _ in 0..4 {
        send(&http, gateways, &ns, "inline", 1).await;
    }
    assert_eq!(storm_of(&client, &ns, "inline").await, None);
    for expected in 1..=3 {
        send(&http, gateways, &ns, "inline", 1).await;
        let storm = storm_of(&client, &ns, "inline")
            .await
            .expect("written with the count");
        assert_eq!(storm.aggregated_count, expected);
    }
    let storm_writes = gateway
        .metric(
            &http,
            "gateway_k8s_requests_total",
            &[("verb", "patch_storm")],
        )
        .await;
    assert_eq!(storm_writes, 0.0, "no separate storm write");
}
