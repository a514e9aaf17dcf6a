//! One load phase: every stream of the scenario driven against a sink, each request spawned at
//! its due time under the in-flight cap and tallied into the phase's results as it completes,
//! then a bounded wait for the stragglers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::cli::Args;
use crate::floor::FloorSink;
use crate::gateway_api::GatewaySink;
use crate::results::{Completion, Mode, Phase, Stream};
use crate::scenario::{RequestPlan, Scenario};
use crate::schedule::drive;

/// Where requests go.
pub enum Sink {
    /// The gateway's HTTP API, on this many replicas.
    Gateway(GatewaySink, usize),
    /// Direct Kubernetes writes.
    Floor(FloorSink),
}

impl Sink {
    async fn send(&self, plan: &RequestPlan, seq: u64) -> Completion {
        match self {
            Sink::Gateway(g, _) => g.send(plan, seq).await,
            Sink::Floor(f) => f.send(plan, seq).await,
        }
    }
}

/// Lead time between setting up the clocks and the first due request, so set-up is not
/// counted as lag.
const LEAD: Duration = Duration::from_millis(20);

/// Runs the scenario against `sink`, at most `--max-in-flight` requests outstanding. Ends by
/// itself: each stream has a fixed number of ticks, and the wait for the last requests is
/// bounded by `--request-timeout` and a margin.
pub async fn run_phase(scenario: &Scenario, sink: Sink, args: &Args) -> Phase {
    let (max_in_flight, sink) = (args.max_in_flight, Arc::new(sink));
    let drain_timeout = args.request_timeout + Duration::from_secs(5);
    let (mode, replicas) = match &*sink {
        Sink::Gateway(_, replicas) => (Mode::Gateway, *replicas),
        Sink::Floor(_) => (Mode::Floor, 0),
    };
    let streams = scenario.streams();
    let empty = streams
        .iter()
        .map(|(kind, c, _)| Stream::new(*kind, c.rate));
    let phase = Arc::new(Mutex::new(Phase::new(mode, replicas, empty.collect())));
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let seq = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + LEAD;
    let drivers = streams.into_iter().map(|(kind, clock, mut generator)| {
        let (phase, permits, sink, seq) =
            (phase.clone(), permits.clone(), sink.clone(), seq.clone());
        async move {
            let stats = drive(clock, start, |tick| {
                let plan = generator.next_request();
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    return false;
                };
                let (phase, sink) = (phase.clone(), sink.clone());
                let n = seq.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let completion = sink.send(&plan, n).await;
                    let done = Instant::now();
                    let firsts = plan.signals.iter().filter(|s| s.first).count() as u64;
                    phase.lock().unwrap_or_else(PoisonError::into_inner).record(
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
    let driven = futures::future::join_all(drivers).await;
    let cap = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(drain_timeout, permits.acquire_many(cap)).await;
    let mut phase = std::mem::take(&mut *phase.lock().unwrap_or_else(PoisonError::into_inner));
    if drained.is_err() {
        phase.abandoned = (max_in_flight - permits.available_permits()) as u64;
    }
    for (kind, clock, stats, used) in driven {
        if let Some(s) = phase.streams.iter_mut().find(|s| s.stream == kind) {
            s.drove(&clock, stats, used);
        }
    }
    phase
}
