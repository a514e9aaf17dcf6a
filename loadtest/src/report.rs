//! The report: built from what the run recorded, printed as a table, written as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::check::CountCheck;
use crate::cli::Scenario;
use crate::outcome::Outcome;
use crate::recorder::{Recorder, SignalTotals, StreamKind, StreamRecord};
use crate::schedule::{DriveStats, StreamClock};

/// Latency percentiles of one histogram, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// Percentiles of a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// One stream's figures.
#[derive(Clone, Debug, Serialize)]
pub struct StreamReport {
    /// Which stream.
    pub stream: StreamKind,
    /// Requests per second asked for.
    pub scheduled_rate: f64,
    /// Requests due in the measured span.
    pub due: u64,
    /// Requests started.
    pub sent: u64,
    /// Requests not started: the in-flight cap was reached.
    pub dropped: u64,
    /// Requests started per second over the measured span.
    pub achieved_rate: f64,
    /// Due requests handled (started or dropped) per second: below the scheduled rate only
    /// when the scheduler itself could not keep up.
    pub schedule_rate: f64,
    /// Steady stream: pool fingerprints sent at least once (warm-up included).
    pub fingerprints_used: Option<u32>,
    /// How late the sends were against their due times.
    pub send_lag: Percentiles,
    /// Latency from due time to response, per outcome (label → percentiles).
    pub outcomes: BTreeMap<String, Percentiles>,
    /// Latency from due time to response, all outcomes.
    pub all: Percentiles,
    /// Latency from actual send to response (scheduler lag excluded), all outcomes.
    pub service: Percentiles,
}

impl StreamReport {
    /// Builds a stream's figures from its clock, its driver stats and its recorded latencies.
    pub fn new(
        stream: StreamKind,
        clock: &StreamClock,
        drive: &DriveStats,
        fingerprints_used: Option<u32>,
        rec: Option<&StreamRecord>,
    ) -> Self {
        // n sends span n - 1 intervals, so an on-time stream reports exactly its rate.
        let span = drive.send_span.as_secs_f64();
        let rate_of = |n: u64| {
            if n > 1 && span > 0.0 {
                (n - 1) as f64 / span
            } else {
                n as f64 / clock.measure.as_secs_f64().max(1e-9)
            }
        };
        let achieved_rate = rate_of(drive.sent);
        let schedule_rate = rate_of(drive.sent + drive.dropped);
        let outcomes = rec
            .map(|r| {
                r.by_outcome
                    .iter()
                    .map(|(o, h)| (o.label().to_owned(), Percentiles::of(h)))
                    .collect()
            })
            .unwrap_or_default();
        StreamReport {
            stream,
            scheduled_rate: clock.rate,
            due: drive.due,
            sent: drive.sent,
            dropped: drive.dropped,
            achieved_rate,
            schedule_rate,
            fingerprints_used,
            send_lag: Percentiles::of(&drive.lag_us),
            outcomes,
            all: rec.map(|r| Percentiles::of(&r.all)).unwrap_or_default(),
            service: rec.map(|r| Percentiles::of(&r.service)).unwrap_or_default(),
        }
    }
}

/// Kubernetes writes per signal.
#[derive(Clone, Debug, Serialize, Default)]
pub struct WritesReport {
    /// Where the figure comes from: `gateway /metrics` or `floor client`.
    pub source: String,
    /// Write calls (create, patch, update), all outcomes, storm writes included.
    pub writes: f64,
    /// Signals sent, warm-up included.
    pub signals: u64,
    /// `writes / signals`.
    pub per_signal: f64,
    /// Kubernetes calls by `verb/outcome` (gateway only).
    pub by_verb_outcome: BTreeMap<String, f64>,
    /// Other gateway counters over the run (name → increase).
    pub counters: BTreeMap<String, f64>,
    /// Mean duration of the gateway's Kubernetes calls during the run, by verb, in ms (from
    /// `gateway_k8s_request_duration_seconds`): tells time spent waiting on the API from
    /// time spent in the gateway.
    pub k8s_call_mean_ms: BTreeMap<String, f64>,
}

/// Resident memory and CPU time of the gateway processes.
#[derive(Clone, Debug, Serialize, Default)]
pub struct ProcessReport {
    /// `/proc/<pid>/...` or the `process_*` metrics.
    pub source: String,
    /// Resident set at the end of the run, per replica, MiB.
    pub rss_mib: Vec<f64>,
    /// Peak resident set (VmHWM), per replica, MiB, when known.
    pub peak_mib: Vec<f64>,
    /// CPU seconds (user + system) spent during the phase, per replica, when known.
    pub cpu_seconds: Vec<f64>,
}

/// The count check's verdict.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum CheckReport {
    /// Compared; see `mismatches`.
    Done(CountCheck),
    /// Not compared, and why.
    Skipped {
        /// Why.
        reason: String,
    },
}

/// One phase of a run: the gateway, or the floor.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// `gateway` or `floor`.
    pub mode: String,
    /// Gateway replicas loaded (0 for the floor).
    pub replicas: usize,
    /// Per stream.
    pub streams: Vec<StreamReport>,
    /// Requests per outcome label, warm-up included.
    pub requests: BTreeMap<String, u64>,
    /// Signals, warm-up included.
    pub signals: SignalTotals,
    /// Share of accepted signals that were duplicates.
    pub duplicate_share: f64,
    /// Failure descriptions and their number.
    pub failures: BTreeMap<String, u64>,
    /// Writes per signal, when known.
    pub writes: Option<WritesReport>,
    /// Exact-count check.
    pub count_check: CheckReport,
    /// Gateway memory and CPU, when known.
    pub process: Option<ProcessReport>,
    /// Time from the last response until every RR's storm block matched its deduplication
    /// history (ms); `None` when not measured or not reached within the check timeout.
    pub storm_staleness_ms: Option<f64>,
    /// Everything that fails the run.
    pub problems: Vec<String>,
    /// Things worth knowing that do not fail the run.
    pub warnings: Vec<String>,
}

impl RunReport {
    /// Builds a phase's report; `problems` and `warnings` are filled from the figures.
    pub fn new(mode: &str, replicas: usize, streams: Vec<StreamReport>, rec: &Recorder) -> Self {
        let s = rec.signals;
        let accepted = s.created + s.duplicate;
        let mut r = RunReport {
            mode: mode.to_owned(),
            replicas,
            streams,
            requests: rec
                .requests
                .iter()
                .map(|(o, n)| (o.label().to_owned(), *n))
                .collect(),
            signals: s,
            duplicate_share: if accepted > 0 {
                s.duplicate as f64 / accepted as f64
            } else {
                0.0
            },
            failures: rec.failures.clone(),
            writes: None,
            count_check: CheckReport::Skipped {
                reason: "not run".into(),
            },
            process: None,
            storm_staleness_ms: None,
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        for o in Outcome::ALL.iter().filter(|o| o.is_failure()) {
            if let Some(n) = rec.requests.get(o).filter(|n| **n > 0) {
                r.problems.push(format!("{n} requests ended {}", o.label()));
            }
        }
        if s.rejected > 0 {
            r.problems.push(format!("{} signals rejected", s.rejected));
        }
        if s.failed > 0 {
            r.problems.push(format!("{} signals failed", s.failed));
        }
        if s.fingerprint_mismatches > 0 {
            r.problems.push(format!(
                "{} responses named another fingerprint than expected",
                s.fingerprint_mismatches
            ));
        }
        for st in &r.streams {
            if st.dropped > 0 {
                r.warnings.push(format!(
                    "{}: {} of {} due requests dropped at the in-flight cap (raise --max-in-flight or lower the rate)",
                    st.stream.label(),
                    st.dropped,
                    st.due
                ));
            }
            if st.schedule_rate < st.scheduled_rate * 0.95 {
                r.warnings.push(format!(
                    "{}: due requests were handled at {:.0}/s of {:.0}/s scheduled: the load generator fell behind (see send lag)",
                    st.stream.label(),
                    st.schedule_rate,
                    st.scheduled_rate
                ));
            }
        }
        r
    }

    /// Sets the count check's result, noting a mismatch as a problem.
    pub fn set_check(&mut self, check: CheckReport) {
        if let CheckReport::Done(c) = &check {
            if c.mismatches > 0 {
                self.problems
                    .push(format!("{} count mismatches", c.mismatches));
            }
            if c.fingerprints_with_several_rrs > 0 {
                self.warnings.push(format!(
                    "{} fingerprints have several RRs",
                    c.fingerprints_with_several_rrs
                ));
            }
        }
        self.count_check = check;
    }

    /// True when nothing failed.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The gateway against the floor on one stream.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Which stream.
    pub stream: StreamKind,
    /// Gateway, all outcomes.
    pub gateway: Percentiles,
    /// Floor, all outcomes.
    pub floor: Percentiles,
    /// Gateway P50 minus floor P50, ms.
    pub overhead_p50_ms: f64,
    /// Gateway P95 minus floor P95, ms.
    pub overhead_p95_ms: f64,
    /// Gateway P99 minus floor P99, ms.
    pub overhead_p99_ms: f64,
    /// Gateway P95 / floor P95.
    pub ratio_p95: f64,
    /// Writes per signal, gateway and floor.
    pub writes_per_signal: (Option<f64>, Option<f64>),
}

/// Compares the gateway and floor phases stream by stream.
pub fn compare(gateway: &RunReport, floor: &RunReport) -> Vec<Comparison> {
    gateway
        .streams
        .iter()
        .filter_map(|g| {
            let f = floor.streams.iter().find(|f| f.stream == g.stream)?;
            Some(Comparison {
                stream: g.stream,
                gateway: g.all.clone(),
                floor: f.all.clone(),
                overhead_p50_ms: g.all.p50 - f.all.p50,
                overhead_p95_ms: g.all.p95 - f.all.p95,
                overhead_p99_ms: g.all.p99 - f.all.p99,
                ratio_p95: if f.all.p95 > 0.0 {
                    g.all.p95 / f.all.p95
                } else {
                    0.0
                },
                writes_per_signal: (
                    gateway.writes.as_ref().map(|w| w.per_signal),
                    floor.writes.as_ref().map(|w| w.per_signal),
                ),
            })
        })
        .collect()
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What was sent.
    pub scenario: Scenario,
    /// `self-start` or `targets`.
    pub environment: String,
    /// Phases in the order they ran.
    pub runs: Vec<RunReport>,
    /// Gateway against floor, when both ran.
    pub comparison: Vec<Comparison>,
    /// True when every phase passed.
    pub passed: bool,
}

impl Report {
    /// Assembles the report.
    pub fn new(scenario: Scenario, environment: &str, runs: Vec<RunReport>) -> Self {
        let comparison = match (
            runs.iter().find(|r| r.mode == "gateway"),
            runs.iter().find(|r| r.mode == "floor"),
        ) {
            (Some(g), Some(f)) => compare(g, f),
            _ => Vec::new(),
        };
        let passed = runs.iter().all(RunReport::passed);
        Report {
            scenario,
            environment: environment.to_owned(),
            runs,
            comparison,
            passed,
        }
    }

    /// The report as a text table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let s = &self.scenario;
        let _ = writeln!(
            out,
            "scenario: rate {}/s for {:.1}s (+{:.1}s warm-up), {} fingerprints, {:.0}% duplicates, {} alert(s)/payload, {:.0}% Events, seed {}, run {}",
            s.rate,
            s.duration.as_secs_f64(),
            s.warmup.as_secs_f64(),
            s.fingerprints,
            s.duplicate_ratio * 100.0,
            s.alerts_per_payload,
            s.event_share * 100.0,
            s.seed,
            s.run_id
        );
        if let Some(st) = &s.storm {
            let _ = writeln!(
                out,
                "storm: {}/s for {:.1}s on {} fingerprints, from {:.1}s after warm-up",
                st.rate,
                st.duration.as_secs_f64(),
                st.fingerprints,
                st.start.as_secs_f64()
            );
        }
        let _ = writeln!(out, "environment: {}", self.environment);
        for r in &self.runs {
            render_run(&mut out, r);
        }
        if !self.comparison.is_empty() {
            let _ = writeln!(out, "\n== gateway vs floor (all outcomes, ms) ==");
            let _ = writeln!(
                out,
                "{:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
                "stream", "gw p50", "fl p50", "gw p95", "fl p95", "gw p99", "fl p99", "p95 x"
            );
            for c in &self.comparison {
                let _ = writeln!(
                    out,
                    "{:<8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8.2}",
                    c.stream.label(),
                    c.gateway.p50,
                    c.floor.p50,
                    c.gateway.p95,
                    c.floor.p95,
                    c.gateway.p99,
                    c.floor.p99,
                    c.ratio_p95
                );
                let _ = writeln!(
                    out,
                    "{:<8} overhead: p50 {:+.2} ms, p95 {:+.2} ms, p99 {:+.2} ms",
                    "", c.overhead_p50_ms, c.overhead_p95_ms, c.overhead_p99_ms
                );
            }
        }
        let _ = writeln!(
            out,
            "\nresult: {}",
            if self.passed { "PASS" } else { "FAIL" }
        );
        out
    }
}

fn render_run(out: &mut String, r: &RunReport) {
    let who = if r.mode == "gateway" {
        format!("gateway x{}", r.replicas)
    } else {
        "floor (direct Kubernetes writes)".to_owned()
    };
    let _ = writeln!(out, "\n== {who} ==");
    for st in &r.streams {
        let _ = writeln!(
            out,
            "[{}] scheduled {:.0}/s, achieved {:.1}/s; due {}, sent {}, dropped {}; send lag p99 {:.2} ms, max {:.2} ms{}",
            st.stream.label(),
            st.scheduled_rate,
            st.achieved_rate,
            st.due,
            st.sent,
            st.dropped,
            st.send_lag.p99,
            st.send_lag.max,
            st.fingerprints_used
                .map(|n| format!("; {n} fingerprints used"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "  {:<10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "outcome", "count", "p50", "p90", "p95", "p99", "p99.9", "max"
        );
        let mut rows: Vec<(&str, &Percentiles)> = Outcome::ALL
            .iter()
            .filter_map(|o| st.outcomes.get(o.label()).map(|p| (o.label(), p)))
            .collect();
        rows.push(("all", &st.all));
        rows.push(("(service)", &st.service));
        for (label, p) in rows {
            let _ = writeln!(
                out,
                "  {:<10} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                label, p.count, p.p50, p.p90, p.p95, p.p99, p.p999, p.max
            );
        }
    }
    let s = &r.signals;
    let _ = writeln!(
        out,
        "signals: {} sent, {} created, {} duplicate ({:.1}% of accepted), {} rejected, {} failed",
        s.sent,
        s.created,
        s.duplicate,
        r.duplicate_share * 100.0,
        s.rejected,
        s.failed
    );
    let reqs: Vec<String> = r.requests.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "requests (warm-up included): {}", reqs.join(" "));
    if let Some(w) = &r.writes {
        let _ = writeln!(
            out,
            "kubernetes writes: {:.0} for {} signals = {:.3} per signal ({})",
            w.writes, w.signals, w.per_signal, w.source
        );
        if !w.by_verb_outcome.is_empty() {
            let calls: Vec<String> = w
                .by_verb_outcome
                .iter()
                .map(|(k, v)| format!("{k}={v:.0}"))
                .collect();
            let _ = writeln!(out, "  calls by verb/outcome: {}", calls.join(" "));
        }
        if !w.k8s_call_mean_ms.is_empty() {
            let means: Vec<String> = w
                .k8s_call_mean_ms
                .iter()
                .map(|(k, v)| format!("{k}={v:.2}"))
                .collect();
            let _ = writeln!(
                out,
                "  gateway-side mean call time, ms: {}",
                means.join(" ")
            );
        }
    }
    match &r.count_check {
        CheckReport::Done(c) => {
            let _ = writeln!(
                out,
                "count check: {} — {} fingerprints, {} RRs ({} in a storm), {} mismatches{}",
                if c.passed() { "exact" } else { "MISMATCH" },
                c.fingerprints,
                c.rrs,
                c.rrs_in_storm,
                c.mismatches,
                if c.fingerprints_skipped > 0 {
                    format!(
                        "; {} fingerprints not compared (some of their signals failed)",
                        c.fingerprints_skipped
                    )
                } else {
                    String::new()
                }
            );
            for e in &c.examples {
                let _ = writeln!(out, "  {e}");
            }
        }
        CheckReport::Skipped { reason } => {
            let _ = writeln!(out, "count check: skipped ({reason})");
        }
    }
    if let Some(m) = &r.process {
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let peak = if m.peak_mib.is_empty() {
            String::new()
        } else {
            format!(", peak {} MiB", fmt(&m.peak_mib))
        };
        let cpu = if m.cpu_seconds.is_empty() {
            String::new()
        } else {
            format!("; CPU {} s", fmt(&m.cpu_seconds))
        };
        let _ = writeln!(
            out,
            "gateway RSS: {} MiB{peak}{cpu} ({})",
            fmt(&m.rss_mib),
            m.source
        );
    }
    if let Some(ms) = r.storm_staleness_ms {
        let _ = writeln!(
            out,
            "storm status staleness: {ms:.0} ms from the last response until every RR's storm block matched its history"
        );
    }
    for (d, n) in &r.failures {
        let _ = writeln!(out, "failure x{n}: {d}");
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    for p in &r.problems {
        let _ = writeln!(out, "PROBLEM: {p}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::outcome::{Completion, SignalResult, SignalStatus};
    use crate::schedule::micros_histogram;

    #[test]
    fn percentiles_in_ms() {
        let mut h = micros_histogram();
        for us in 1..=1000u64 {
            h.saturating_record(us * 10);
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert!((p.p50 - 5.0).abs() < 0.01, "{p:?}");
        assert!((p.p95 - 9.5).abs() < 0.01, "{p:?}");
        assert!((p.p99 - 9.9).abs() < 0.01, "{p:?}");
        assert!((p.max - 10.0).abs() < 0.01, "{p:?}");
        assert_eq!(Percentiles::of(&micros_histogram()), Percentiles::default());
    }

    fn sample_run(mode: &str, latency_ms: u64, outcome: Outcome) -> RunReport {
        let mut rec = Recorder::default();
        let status = if outcome == Outcome::ServerError {
            SignalStatus::Failed
        } else {
            SignalStatus::Duplicate
        };
        let c = Completion {
            outcome,
            signals: vec![SignalResult {
                fp: 0,
                status,
                count: Some(2),
                rr: Some("rr".into()),
                fingerprint_ok: true,
            }],
            detail: outcome
                .is_failure()
                .then(|| "503 Service Unavailable".to_owned()),
            k8s_writes: 1,
        };
        for _ in 0..100 {
            rec.record(
                StreamKind::Steady,
                true,
                0,
                Duration::from_millis(latency_ms),
                Duration::from_millis(latency_ms),
                &c,
            );
        }
        let clock = StreamClock {
            rate: 100.0,
            start: Duration::ZERO,
            warmup: Duration::ZERO,
            measure: Duration::from_secs(1),
        };
        let drive = DriveStats {
            due: 100,
            sent: 100,
            dropped: 0,
            lag_us: micros_histogram(),
            send_span: Duration::from_millis(990),
        };
        let st = StreamReport::new(
            StreamKind::Steady,
            &clock,
            &drive,
            Some(1),
            rec.streams.get(&StreamKind::Steady),
        );
        RunReport::new(mode, 1, vec![st], &rec)
    }

    fn scenario() -> Scenario {
        use clap::Parser;
        let a = crate::cli::Args::try_parse_from(["x", "--seed", "1"])
            .unwrap_or_else(|e| panic!("{e}"));
        Scenario::from_args(&a).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn achieved_rate_of_an_on_time_stream() {
        let r = sample_run("gateway", 5, Outcome::Duplicate);
        assert!(
            (r.streams[0].achieved_rate - 100.0).abs() < 0.01,
            "{}",
            r.streams[0].achieved_rate
        );
        assert!(r.passed());
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn drops_are_not_mistaken_for_a_slow_scheduler() {
        let clock = StreamClock {
            rate: 100.0,
            start: Duration::ZERO,
            warmup: Duration::ZERO,
            measure: Duration::from_secs(1),
        };
        let drive = DriveStats {
            due: 100,
            sent: 51,
            dropped: 49,
            lag_us: micros_histogram(),
            send_span: Duration::from_millis(990),
        };
        let st = StreamReport::new(StreamKind::Steady, &clock, &drive, None, None);
        assert!(
            (st.achieved_rate - 50.5).abs() < 0.1,
            "{}",
            st.achieved_rate
        );
        assert!(
            (st.schedule_rate - 100.0).abs() < 0.01,
            "{}",
            st.schedule_rate
        );
        let r = RunReport::new("gateway", 1, vec![st], &Recorder::default());
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(
            r.warnings[0].contains("49 of 100 due requests dropped"),
            "{:?}",
            r.warnings
        );
        let slow = DriveStats {
            sent: 100,
            dropped: 0,
            send_span: Duration::from_millis(1500),
            ..drive
        };
        let st = StreamReport::new(StreamKind::Steady, &clock, &slow, None, None);
        let r = RunReport::new("gateway", 1, vec![st], &Recorder::default());
        assert!(
            r.warnings.iter().any(|w| w.contains("fell behind")),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn server_errors_fail_the_run() {
        let r = sample_run("gateway", 5, Outcome::ServerError);
        assert!(!r.passed());
        assert!(
            r.problems.iter().any(|p| p.contains("5xx")),
            "{:?}",
            r.problems
        );
        let report = Report::new(scenario(), "targets", vec![r]);
        assert!(!report.passed);
        let text = report.render();
        assert!(text.contains("PROBLEM: 100 requests ended 5xx"), "{text}");
        assert!(
            text.contains("failure x100: 503 Service Unavailable"),
            "{text}"
        );
        assert!(text.ends_with("result: FAIL\n"), "{text}");
    }

    #[test]
    fn comparison_and_json() {
        let mut g = sample_run("gateway", 6, Outcome::Duplicate);
        g.set_check(CheckReport::Done(CountCheck {
            fingerprints: 1,
            rrs: 1,
            ..CountCheck::default()
        }));
        let f = sample_run("floor", 4, Outcome::Duplicate);
        let report = Report::new(scenario(), "self-start", vec![g, f]);
        assert!(report.passed);
        assert_eq!(report.comparison.len(), 1);
        let c = &report.comparison[0];
        assert!((c.overhead_p95_ms - 2.0).abs() < 0.01, "{c:?}");
        assert!((c.ratio_p95 - 1.5).abs() < 0.01, "{c:?}");
        let text = report.render();
        assert!(text.contains("== gateway x1 =="), "{text}");
        assert!(
            text.contains("== floor (direct Kubernetes writes) =="),
            "{text}"
        );
        assert!(text.contains("count check: exact"), "{text}");
        assert!(
            text.contains("overhead: p50 +2.00 ms, p95 +2.00 ms"),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(json["runs"][0]["count_check"]["status"], "done");
        assert_eq!(json["runs"][1]["count_check"]["status"], "skipped");
        assert_eq!(
            json["runs"][0]["streams"][0]["outcomes"]["202"]["count"],
            100
        );
        assert_eq!(json["scenario"]["duration"], 30.0);
        assert_eq!(json["passed"], true);
    }

    #[test]
    fn mismatches_fail_the_run() {
        let mut g = sample_run("gateway", 6, Outcome::Duplicate);
        g.set_check(CheckReport::Done(CountCheck {
            fingerprints: 1,
            mismatches: 2,
            examples: vec!["x".into()],
            ..CountCheck::default()
        }));
        assert!(!g.passed());
    }
}
