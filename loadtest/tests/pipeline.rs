//! The whole pipeline — schedule, client, answers, accounting, verdict, count check — run end
//! to end against the gateway's own HTTP API (routes, adapters, response bodies) served on
//! `127.0.0.1:0` over an in-memory processor that keeps exact counts: no cluster needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::Parser;
use gateway::clock::SystemClock;
use gateway::dedup::redelivery;
use gateway::ingest::Signal;
use gateway::k8s::types::{DeduplicationStatus, RemediationRequest, RemediationRequestStatus};
use gateway::processor::{Outcome as Recorded, ProcessError, Processor, Redeliveries};
use gateway::telemetry::Metrics;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use gateway_loadtest::check;
use gateway_loadtest::cli::Args;
use gateway_loadtest::gateway_api::{GatewaySink, http_client};
use gateway_loadtest::load::{Sink, run_phase};
use gateway_loadtest::results::{Outcome, Phase, verdict};
use gateway_loadtest::scenario::Scenario;

/// The processor behind the gateway's API: exact counts in memory, RRs built as the gateway
/// builds them.
#[derive(Default)]
struct Counter {
    rrs: Mutex<HashMap<String, RemediationRequest>>,
    signals: AtomicU64,
    /// Answer 503 to every n-th signal (0: never).
    fail_every: u64,
}

impl Processor for Counter {
    async fn process(&self, signal: Signal) -> Result<Recorded, ProcessError> {
        // A little service time, so requests overlap.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let n = self.signals.fetch_add(1, Ordering::Relaxed) + 1;
        if self.fail_every > 0 && n.is_multiple_of(self.fail_every) {
            return Err(ProcessError::Unavailable("injected".into()));
        }
        let mut rrs = self.rrs.lock().unwrap_or_else(PoisonError::into_inner);
        let now = jiff::Timestamp::now();
        let rr = rrs
            .entry(signal.fingerprint.to_string())
            .or_insert_with(|| gateway::dedup::rr::build(&signal, "loadtest", 0, now));
        let status = rr
            .status
            .get_or_insert_with(RemediationRequestStatus::default);
        let dedup = status.deduplication.get_or_insert(DeduplicationStatus {
            occurrence_count: 0,
            first_seen_at: Time(now),
            last_seen_at: Time(now),
            recent_occurrences: Vec::new(),
            storm_detected_at: None,
            storm_detected_count: None,
        });
        dedup.occurrence_count += 1;
        let (name, namespace) = (
            rr.metadata.name.clone().unwrap_or_default(),
            "loadtest".into(),
        );
        Ok(match dedup.occurrence_count {
            1 => Recorded::Created { name, namespace },
            count => Recorded::Duplicate {
                name,
                namespace,
                count,
                first_seen: now,
                last_seen: now,
            },
        })
    }
}

/// Serves the gateway's own `run` over `processor` on loopback ports; returns the API's base
/// URL. The gateway runs until the test's runtime ends.
async fn serve_gateway<P: Processor>(processor: Arc<P>) -> String {
    let listeners = gateway::Listeners::loopback()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = listeners.api.local_addr().map(|a| format!("http://{a}"));
    let parts = gateway::Parts::processor(processor, Arc::new(SystemClock));
    tokio::spawn(gateway::run(
        gateway::config::Config::default(),
        parts,
        listeners,
        std::future::pending(),
    ));
    url.unwrap_or_else(|e| panic!("{e}"))
}

async fn run_against(counter: &Arc<Counter>, argv: &str, cap: usize) -> (Scenario, Phase) {
    run_against_processor(counter.clone(), argv, cap).await
}

async fn run_against_processor<P: Processor>(
    processor: Arc<P>,
    argv: &str,
    cap: usize,
) -> (Scenario, Phase) {
    let url = serve_gateway(processor).await;
    let argv = format!("x --seed 7 --max-in-flight {cap} {argv}");
    let args = Args::try_parse_from(argv.split_whitespace());
    let args = args.unwrap_or_else(|e| panic!("{e}"));
    let scenario = args
        .scenario
        .clone()
        .resolve()
        .unwrap_or_else(|e| panic!("{e}"));
    let naming = Arc::new(scenario.naming(""));
    let client = GatewaySink::new(http_client(64), vec![url], naming, Duration::from_secs(5));
    let phase = run_phase(&scenario, Sink::Gateway(client, 1), &args).await;
    (scenario, phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_against_the_gateways_api() {
    let counter = Arc::new(Counter::default());
    let argv = "--rate 200 --duration 2s --warmup 500ms --alerts-per-payload 2 \
        --event-share 0.2 --storm-rate 300 --storm-duration 1s --storm-fingerprints 5";
    let (scenario, phase) = run_against(&counter, argv, 256).await;
    assert_eq!(phase.abandoned, 0);
    let v = verdict(&phase, &scenario);
    assert!(v.problems.is_empty(), "{v:?} {:?}", phase.failures);
    let steady = &phase.streams[0];
    assert_eq!((steady.due, steady.sent, steady.dropped), (400, 400, 0));
    let rate = steady.achieved_rate;
    assert!((rate - 200.0).abs() < 20.0, "achieved {rate}");
    assert_eq!(steady.all.0.len(), 400);
    let storm = &phase.streams[1];
    assert_eq!((storm.due, storm.sent), (300, 300));
    let total: u64 = phase.requests.values().sum();
    assert_eq!(total, 100 + 400 + 300);
    for o in [Outcome::Created, Outcome::Duplicate, Outcome::MultiStatus] {
        assert!(phase.requests.get(&o).is_some_and(|n| *n > 0), "no {o:?}");
    }
    let naming = scenario.naming("");
    let rrs = counter.rrs.lock().unwrap_or_else(PoisonError::into_inner);
    let rrs: Vec<_> = rrs.values().cloned().collect();
    let c = check::compare(&phase.accounts, |fp| naming.fingerprint(fp), &rrs);
    assert_eq!(c.mismatches, 0, "{c:?}");
    assert!(c.fingerprints > 5, "{c:?}");
    // 90 % duplicates asked; the gateway saw them.
    let share = phase.signals.duplicate_share();
    assert!((share - 0.9).abs() < 0.06, "duplicate share {share}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_counted_and_fail_the_run() {
    let counter = Arc::new(Counter {
        fail_every: 10,
        ..Counter::default()
    });
    let argv = "--rate 100 --duration 1s --warmup 0s";
    let (scenario, phase) = run_against(&counter, argv, 256).await;
    assert_eq!(phase.requests.get(&Outcome::ServerError), Some(&10));
    assert!(!verdict(&phase, &scenario).problems.is_empty());
    let outcomes = &phase.streams[0].outcomes;
    assert!(outcomes.contains_key(&Outcome::ServerError));
    assert_eq!(phase.signals.failed, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_cap_drops_and_reports() {
    // One request in flight at a time, 2 ms apart, each taking over 1 ms: some are dropped.
    let argv = "--rate 500 --duration 1s --warmup 0s";
    let (scenario, phase) = run_against(&Arc::new(Counter::default()), argv, 1).await;
    let steady = &phase.streams[0];
    assert_eq!(steady.sent + steady.dropped, 500);
    assert!(steady.dropped > 0, "nothing dropped");
    let v = verdict(&phase, &scenario);
    assert!(v.warnings.iter().any(|w| w.contains("dropped")), "{v:?}");
}

/// The counter behind the gateway's own redelivery window (its defaults).
fn windowed(counter: &Arc<Counter>) -> Arc<Redeliveries<Counter>> {
    let settings = redelivery::Settings {
        window: Duration::from_secs(10),
        max_entries: 100_000,
        wait: Duration::from_secs(5),
    };
    let clock = Arc::new(SystemClock);
    Arc::new(Redeliveries::new(
        counter.clone(),
        settings,
        clock,
        Metrics::new(),
    ))
}

const RESENDING: &str = "--rate 200 --duration 1s --warmup 200ms --alerts-per-payload 2 \
    --event-share 0.2 --redeliveries 0.3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resends_answered_with_their_ordinal_pass_the_count_check() {
    let counter = Arc::new(Counter::default());
    let (scenario, phase) = run_against_processor(windowed(&counter), RESENDING, 256).await;
    let v = verdict(&phase, &scenario);
    assert!(v.problems.is_empty(), "{v:?} {:?}", phase.redeliveries);
    let resent = &phase.redeliveries;
    assert!(resent.requests > 40, "{resent:?}");
    assert_eq!(resent.same_answer, resent.signals, "{resent:?}");
    // The window kept the resends from the processor: it recorded each signal once.
    let sent = phase.signals.sent;
    assert_eq!(counter.signals.load(Ordering::Relaxed), sent);
    let naming = scenario.naming("");
    let rrs = counter.rrs.lock().unwrap_or_else(PoisonError::into_inner);
    let rrs: Vec<_> = rrs.values().cloned().collect();
    let c = check::compare(&phase.accounts, |fp| naming.fingerprint(fp), &rrs);
    assert_eq!(c.mismatches, 0, "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resends_counted_again_fail_the_run() {
    // No window: every resend is recorded as an occurrence of its own.
    let counter = Arc::new(Counter::default());
    let (scenario, phase) = run_against(&counter, RESENDING, 256).await;
    let resent = &phase.redeliveries;
    assert!(resent.mismatches > 0, "{resent:?}");
    let naming = scenario.naming("");
    let rrs = counter.rrs.lock().unwrap_or_else(PoisonError::into_inner);
    let rrs: Vec<_> = rrs.values().cloned().collect();
    let c = check::compare(&phase.accounts, |fp| naming.fingerprint(fp), &rrs);
    assert!(
        c.mismatches > 0,
        "the count check saw the resends counted: {c:?}"
    );
    let v = verdict(&phase, &scenario);
    assert!(
        v.problems.iter().any(|p| p.contains("resent signals")),
        "{v:?}"
    );
}
