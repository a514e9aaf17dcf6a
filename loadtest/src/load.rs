//! One load phase: drive every stream of the scenario against a sink, each request spawned at
//! its due time under the in-flight cap, then wait for the stragglers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::cli::Scenario;
use crate::floor::FloorSink;
use crate::http_sink::GatewaySink;
use crate::outcome::Completion;
use crate::recorder::{Recorder, StreamKind};
use crate::report::StreamReport;
use crate::scenario::RequestPlan;
use crate::schedule::{DriveStats, StreamClock, drive};

/// Where requests go.
pub enum Sink {
    /// The gateway's HTTP API.
    Gateway(GatewaySink),
    /// Direct Kubernetes writes.
    Floor(FloorSink),
}

impl Sink {
    async fn send(&self, plan: &RequestPlan, seq: u64) -> Completion {
        match self {
            Sink::Gateway(g) => g.send(plan, seq).await,
            Sink::Floor(f) => f.send(plan, seq).await,
        }
    }
}

/// What a phase produced.
pub struct PhaseResult {
    /// Everything tallied.
    pub recorder: Recorder,
    /// Per stream: its clock, what the driver saw, and (steady stream) how many pool
    /// fingerprints it used.
    pub streams: Vec<(StreamKind, StreamClock, DriveStats, Option<u32>)>,
    /// Requests still unanswered when the phase gave up waiting (0 normally).
    pub abandoned: usize,
}

impl PhaseResult {
    /// The per-stream part of the report.
    pub fn stream_reports(&self) -> Vec<StreamReport> {
        self.streams
            .iter()
            .map(|(kind, clock, stats, used)| {
                StreamReport::new(*kind, clock, stats, *used, self.recorder.streams.get(kind))
            })
            .collect()
    }
}

/// Lead time between setting up the clocks and the first due request, so set-up is not
/// counted as lag.
const LEAD: Duration = Duration::from_millis(20);

/// Runs the scenario against `sink`. Ends by itself: each stream has a fixed number of
/// ticks, and waiting for in-flight requests is bounded by `drain_timeout`.
pub async fn run_phase(
    scenario: &Scenario,
    sink: Arc<Sink>,
    max_in_flight: usize,
    drain_timeout: Duration,
) -> PhaseResult {
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let seq = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + LEAD;
    let drivers = scenario
        .streams()
        .into_iter()
        .map(|(kind, clock, mut generator)| {
            let recorder = recorder.clone();
            let permits = permits.clone();
            let sink = sink.clone();
            let seq = seq.clone();
            async move {
                let stats = drive(clock, start, |tick| {
                    let plan = generator.next_request();
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        return false;
                    };
                    let recorder = recorder.clone();
                    let sink = sink.clone();
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let sent = Instant::now();
                        let completion = sink.send(&plan, n).await;
                        let done = Instant::now();
                        let firsts = plan.signals.iter().filter(|s| s.first).count() as u64;
                        recorder
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .record(
                                kind,
                                tick.measured,
                                firsts,
                                done.saturating_duration_since(tick.due),
                                done.saturating_duration_since(sent),
                                &completion,
                            );
                        drop(permit);
                    });
                    true
                })
                .await;
                (kind, clock, stats, generator.fingerprints_seen())
            }
        });
    let streams = futures::future::join_all(drivers).await;
    let cap = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
    let abandoned = match tokio::time::timeout(drain_timeout, permits.acquire_many(cap)).await {
        Ok(_) => 0,
        Err(_) => max_in_flight - permits.available_permits(),
    };
    let recorder = std::mem::take(&mut *recorder.lock().unwrap_or_else(PoisonError::into_inner));
    PhaseResult {
        recorder,
        streams,
        abandoned,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::check;
    use crate::cli::Args;
    use crate::fake_gateway::{Fake, serve};
    use crate::http_sink::http_client;
    use crate::outcome::Outcome;
    use crate::report::RunReport;

    async fn run_against(fake: Arc<Fake>, extra: &[&str]) -> (Scenario, PhaseResult) {
        let url = serve(fake).await;
        let mut argv = vec!["x", "--seed", "7", "--targets", &url];
        argv.extend_from_slice(extra);
        let args = Args::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
        let scenario = Scenario::from_args(&args).unwrap_or_else(|e| panic!("{e}"));
        let naming = Arc::new(scenario.naming(""));
        let sink = Sink::Gateway(GatewaySink::new(
            http_client(64),
            vec![url],
            naming,
            Duration::from_secs(5),
        ));
        let result = run_phase(&scenario, Arc::new(sink), 256, Duration::from_secs(10)).await;
        (scenario, result)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn end_to_end_against_a_fake_gateway() {
        let fake = Arc::new(Fake::default());
        let (scenario, result) = run_against(
            fake.clone(),
            &[
                "--rate",
                "200",
                "--duration",
                "2s",
                "--warmup",
                "500ms",
                "--alerts-per-payload",
                "2",
                "--event-share",
                "0.2",
                "--storm-rate",
                "300",
                "--storm-duration",
                "1s",
                "--storm-fingerprints",
                "5",
            ],
        )
        .await;
        assert_eq!(result.abandoned, 0);
        let report = RunReport::new("gateway", 1, result.stream_reports(), &result.recorder);
        assert!(
            report.passed(),
            "{:?} {:?}",
            report.problems,
            report.failures
        );
        let steady = &report.streams[0];
        assert_eq!((steady.due, steady.sent, steady.dropped), (400, 400, 0));
        assert!(
            (steady.achieved_rate - 200.0).abs() < 20.0,
            "achieved {}",
            steady.achieved_rate
        );
        assert_eq!(steady.all.count, 400);
        let storm = &report.streams[1];
        assert_eq!((storm.due, storm.sent), (300, 300));
        let total: u64 = result.recorder.requests.values().sum();
        assert_eq!(total, 100 + 400 + 300);
        for o in [Outcome::Created, Outcome::Duplicate, Outcome::MultiStatus] {
            assert!(
                result.recorder.requests.get(&o).is_some_and(|n| *n > 0),
                "no {o:?}"
            );
        }
        let naming = scenario.naming("");
        let c = check::compare(
            &result.recorder.accounts,
            |fp| naming.fingerprint(fp),
            &fake.rrs(),
        );
        assert!(c.passed(), "{c:?}");
        assert!(c.fingerprints > 5, "{c:?}");
        // 90 % duplicates asked; the fake saw them.
        assert!(
            (report.duplicate_share - 0.9).abs() < 0.06,
            "duplicate share {}",
            report.duplicate_share
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn server_errors_are_counted_and_fail_the_run() {
        let fake = Arc::new(Fake::failing_every(10));
        let (_, result) = run_against(
            fake,
            &["--rate", "100", "--duration", "1s", "--warmup", "0s"],
        )
        .await;
        assert_eq!(
            result.recorder.requests.get(&Outcome::ServerError),
            Some(&10)
        );
        let report = RunReport::new("gateway", 1, result.stream_reports(), &result.recorder);
        assert!(!report.passed());
        assert!(report.streams[0].outcomes.contains_key("5xx"));
        assert_eq!(report.signals.failed, 10);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_flight_cap_drops_and_reports() {
        let fake = Arc::new(Fake::default());
        let url = serve(fake).await;
        let args = Args::try_parse_from([
            "x",
            "--rate",
            "500",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--seed",
            "1",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let scenario = Scenario::from_args(&args).unwrap_or_else(|e| panic!("{e}"));
        let naming = Arc::new(scenario.naming(""));
        let sink = Sink::Gateway(GatewaySink::new(
            http_client(4),
            vec![url],
            naming,
            Duration::from_secs(5),
        ));
        // One request in flight at a time, 2 ms apart, each taking over 1 ms: some are dropped.
        let result = run_phase(&scenario, Arc::new(sink), 1, Duration::from_secs(10)).await;
        let (_, _, stats, _) = &result.streams[0];
        assert_eq!(stats.sent + stats.dropped, 500);
        assert!(stats.dropped > 0, "nothing dropped");
        let report = RunReport::new("gateway", 1, result.stream_reports(), &result.recorder);
        assert!(
            report.warnings.iter().any(|w| w.contains("dropped")),
            "{:?}",
            report.warnings
        );
    }
}
