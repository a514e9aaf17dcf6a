//! The one results model: a phase's record — every request's answer, tallied as it completes,
//! then the figures measured after the load — and the one [`verdict`] that decides pass/fail.
//!
//! A sink answers each request with a [`Completion`]; [`Phase::record`] folds it in under a
//! `std::sync::Mutex` (a few histogram increments, never across an `.await`). The report prints
//! and serialises the [`Phase`] as it is; nothing restates it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Serialize, Serializer};

use crate::check::CountCheck;
use crate::scenario::{PlannedSignal, Scenario, StreamKind};
use crate::schedule::{DriveStats, StreamClock, micros, micros_histogram};

/// Outcome class of one request; the report has a latency row per class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// 201: a new RR (floor: the create).
    #[default]
    Created,
    /// 202: a duplicate, counted (floor: the status patch).
    Duplicate,
    /// 207: a batch of two or more alerts (floor: a payload of several alerts).
    MultiStatus,
    /// Any 4xx (floor: a Kubernetes 4xx other than a resolved conflict).
    ClientError,
    /// Any 5xx (floor: a Kubernetes 5xx).
    ServerError,
    /// A status the contract does not have (1xx, 3xx, other 2xx) or an unreadable body.
    Unexpected,
    /// No HTTP answer: connect error, reset, timeout.
    Transport,
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

impl Outcome {
    /// Row label in the report (and key in the JSON).
    pub fn label(self) -> &'static str {
        ["201", "202", "207", "4xx", "5xx", "other", "transport"][self as usize]
    }

    /// True for the classes that fail a run.
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            Outcome::Created | Outcome::Duplicate | Outcome::MultiStatus
        )
    }
}

/// What happened to one signal of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalStatus {
    /// A new RR was created for it.
    Created,
    /// It was counted on an existing RR.
    Duplicate,
    /// Refused as invalid (4xx, or `rejected` in a 207).
    Rejected,
    /// Not processed (5xx, transport error, or `failed` in a 207).
    Failed,
}

impl SignalStatus {
    /// True when the signal was accepted and must appear in an RR's count.
    pub fn accepted(self) -> bool {
        matches!(self, SignalStatus::Created | SignalStatus::Duplicate)
    }
}

/// The answer for one signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalResult {
    /// Fingerprint index the signal was planned with.
    pub fp: u32,
    /// Accepted or not.
    pub status: SignalStatus,
    /// The occurrence count reported for it (1 for a create).
    pub count: Option<u64>,
    /// The RR it was recorded on.
    pub rr: Option<String>,
    /// False when the answer named a different fingerprint than the one computed here.
    pub fingerprint_ok: bool,
}

impl SignalResult {
    /// A signal with `status` recorded on `rr` with `count`.
    pub fn new(fp: u32, status: SignalStatus, count: Option<u64>, rr: Option<String>) -> Self {
        let fingerprint_ok = true;
        SignalResult {
            fp,
            status,
            count,
            rr,
            fingerprint_ok,
        }
    }
}

/// A sink's answer to one request: the input of [`Phase::record`].
#[derive(Clone, Debug, Default)]
pub struct Completion {
    /// Class of the request.
    pub outcome: Outcome,
    /// One entry per planned signal, in plan order.
    pub signals: Vec<SignalResult>,
    /// For failures: a short description (status and problem title, or the transport error).
    pub detail: Option<String>,
    /// Kubernetes writes issued for it (the floor; the gateway's come from its metrics).
    pub writes: u32,
    /// The answer to the same body sent again (`--redeliveries`), when it was.
    pub redelivery: Option<Box<Completion>>,
}

impl Completion {
    /// A request that failed as a whole: every signal gets `status`.
    pub fn failed(
        outcome: Outcome,
        signals: &[PlannedSignal],
        status: SignalStatus,
        detail: String,
    ) -> Self {
        let signals = signals
            .iter()
            .map(|s| SignalResult::new(s.fp, status, None, None));
        let (signals, detail) = (signals.collect(), Some(detail));
        Completion {
            outcome,
            signals,
            detail,
            ..Completion::default()
        }
    }
}

/// The samples of a latency histogram, and its percentiles, maximum and mean in milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[allow(missing_docs)] // named for what they are
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// Latencies in microseconds (1 µs to 10 minutes, 3 significant digits), serialised as their
/// [`Percentiles`].
#[derive(Clone, Debug)]
pub struct Latency(pub Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Latency(micros_histogram())
    }
}

impl Latency {
    /// Adds one sample.
    pub fn record(&mut self, d: Duration) {
        self.0.saturating_record(micros(d));
    }

    /// Its percentiles.
    pub fn percentiles(&self) -> Percentiles {
        let h = &self.0;
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        let [p50, p90, p95, p99, p999] =
            [0.5, 0.9, 0.95, 0.99, 0.999].map(|q| ms(h.value_at_quantile(q)));
        let (count, max, mean) = (h.len(), ms(h.max()), h.mean() / 1000.0);
        Percentiles {
            count,
            p50,
            p90,
            p95,
            p99,
            p999,
            max,
            mean,
        }
    }
}

impl Serialize for Latency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.percentiles().serialize(s)
    }
}

/// One stream of a phase: its punctuality and its measured latencies.
#[derive(Debug, Default, Serialize)]
pub struct Stream {
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
    pub send_lag: Latency,
    /// From due time to full response, per outcome.
    pub outcomes: BTreeMap<Outcome, Latency>,
    /// From due time to full response, all outcomes.
    pub all: Latency,
    /// From the actual send to the full response (scheduler lag excluded), all outcomes.
    pub service: Latency,
}

impl Stream {
    /// A stream about to be driven at `rate`.
    pub fn new(stream: StreamKind, scheduled_rate: f64) -> Self {
        Stream {
            stream,
            scheduled_rate,
            ..Stream::default()
        }
    }

    /// Takes in what the driver saw once the stream has ended.
    pub fn drove(&mut self, clock: &StreamClock, drive: DriveStats, used: Option<u32>) {
        // n sends span n - 1 intervals, so an on-time stream reports exactly its rate.
        let span = drive.send_span.as_secs_f64();
        let rate_of = |n: u64| {
            if n > 1 && span > 0.0 {
                (n - 1) as f64 / span
            } else {
                n as f64 / clock.measure.as_secs_f64().max(1e-9)
            }
        };
        self.achieved_rate = rate_of(drive.sent);
        self.schedule_rate = rate_of(drive.sent + drive.dropped);
        (self.due, self.sent, self.dropped) = (drive.due, drive.sent, drive.dropped);
        self.send_lag = Latency(drive.lag_us);
        self.fingerprints_used = used;
    }
}

/// What one fingerprint received: the input of the exact-count check.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Account {
    /// Signals accepted (created or duplicate).
    pub accepted: u64,
    /// Signals that failed (5xx, transport, `failed`); their effect on the count is unknown.
    pub failed: u64,
    /// Per RR name: every count reported for it.
    pub counts: BTreeMap<String, Vec<u64>>,
    /// Accepted signals reported without an RR name or count.
    pub unattributed: u64,
}

/// Per fingerprint index, what it received.
pub type Accounts = HashMap<u32, Account>;

/// Bodies sent a second time (`--redeliveries`) and how they were answered. A resent signal is
/// not an occurrence: it is left out of the [`Account`]s (so the count check fails if the
/// gateway counted it) and must carry the RR and ordinal its first delivery was given.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Redeliveries {
    /// Requests sent a second time.
    pub requests: u64,
    /// Their signals whose first delivery was accepted.
    pub signals: u64,
    /// Of those, answered with the first delivery's RR and ordinal.
    pub same_answer: u64,
    /// Of those, answered otherwise (another ordinal, another RR, not accepted): each fails
    /// the run.
    pub mismatches: u64,
    /// The first few mismatches, described.
    pub examples: Vec<String>,
}

impl Redeliveries {
    /// Compares the answer to a resend with the answer to its first delivery.
    fn tally(&mut self, first: &Completion, again: &Completion) {
        self.requests += 1;
        let signals = first.signals.iter().zip(&again.signals);
        for (i, (first, again)) in signals.enumerate() {
            if !first.status.accepted() {
                // Nothing was recorded the first time: the resend is a retry, and counts.
                continue;
            }
            self.signals += 1;
            let same =
                again.status.accepted() && (&again.rr, again.count) == (&first.rr, first.count);
            if same {
                self.same_answer += 1;
                continue;
            }
            self.mismatches += 1;
            if self.examples.len() < 10 {
                self.examples.push(format!(
                    "signal {i} of a resent request (fingerprint #{}): first {:?} {:?} #{:?}, again {:?} {:?} #{:?}",
                    first.fp,
                    first.status,
                    first.rr,
                    first.count,
                    again.status,
                    again.rr,
                    again.count,
                ));
            }
        }
    }
}

/// Signal totals over the whole phase, warm-up included.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SignalTotals {
    /// Signals sent.
    pub sent: u64,
    /// Created an RR.
    pub created: u64,
    /// Counted on an existing RR.
    pub duplicate: u64,
    /// Refused as invalid.
    pub rejected: u64,
    /// Not processed.
    pub failed: u64,
    /// The generator meant a first sighting.
    pub planned_first: u64,
    /// Reported a fingerprint other than the one computed here.
    pub fingerprint_mismatches: u64,
}

impl SignalTotals {
    /// Share of accepted signals that were duplicates.
    pub fn duplicate_share(&self) -> f64 {
        self.duplicate as f64 / (self.created + self.duplicate).max(1) as f64
    }
}

/// Kubernetes writes per signal.
#[derive(Clone, Debug, Serialize, Default)]
pub struct Writes {
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
    /// Other gateway counters over the phase (name → increase).
    pub counters: BTreeMap<String, f64>,
    /// Mean duration of the gateway's Kubernetes calls during the phase, by verb, in ms: tells
    /// time spent waiting on the API from time spent in the gateway.
    pub k8s_call_mean_ms: BTreeMap<String, f64>,
    /// P50 and P95 (`p50`, `p95`) of the forward to the owning replica, ms, from the gateways'
    /// `gateway_forward_duration_seconds` buckets (empty when nothing was forwarded).
    pub forward_ms: BTreeMap<String, f64>,
}

impl Writes {
    /// `writes` for `signals`, from `source`.
    pub fn new(source: &str, writes: f64, signals: u64) -> Self {
        let per_signal = writes / signals.max(1) as f64;
        let source = source.into();
        Writes {
            source,
            writes,
            signals,
            per_signal,
            ..Writes::default()
        }
    }
}

/// Resident memory and CPU time of a group of processes (the gateways, or the control plane).
#[derive(Clone, Debug, Serialize, Default)]
pub struct Processes {
    /// Which processes, and where the figures come from.
    pub source: String,
    /// Resident set at the end of the phase, per process, MiB.
    pub rss_mib: Vec<f64>,
    /// Peak resident set (VmHWM), per process, MiB, when known.
    pub peak_mib: Vec<f64>,
    /// CPU seconds (user + system) spent during the phase, per process, when known.
    pub cpu_seconds: Vec<f64>,
}

/// Which side a phase loads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The gateway's HTTP API.
    #[default]
    Gateway,
    /// The same Kubernetes writes, issued directly.
    Floor,
}

/// The problems (which fail the run) and warnings of a phase, as [`verdict`] found them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    /// Everything that fails the run.
    pub problems: Vec<String>,
    /// Things worth knowing that do not fail the run.
    pub warnings: Vec<String>,
}

/// Cap on distinct failure descriptions kept, so a run of varied errors stays bounded.
const MAX_DETAILS: usize = 32;

/// One phase of a run (the gateway, or the floor): everything recorded and measured.
#[derive(Debug, Default, Serialize)]
pub struct Phase {
    /// Gateway or floor.
    pub mode: Mode,
    /// Gateway replicas loaded (0 for the floor).
    pub replicas: usize,
    /// Per stream.
    pub streams: Vec<Stream>,
    /// Requests per outcome, warm-up included.
    pub requests: BTreeMap<Outcome, u64>,
    /// Signals, warm-up included (resends not: they are not signals of their own).
    pub signals: SignalTotals,
    /// Bodies sent a second time, warm-up included.
    pub redeliveries: Redeliveries,
    /// Per fingerprint index, warm-up included.
    #[serde(skip)]
    pub accounts: Accounts,
    /// Distinct failure descriptions and their number, at most `MAX_DETAILS`.
    pub failures: BTreeMap<String, u64>,
    /// Kubernetes writes the completions reported (the floor's own calls).
    #[serde(skip)]
    pub k8s_writes: u64,
    /// Requests still unanswered when the phase gave up waiting (0 normally).
    pub abandoned: u64,
    /// Writes per signal, when known.
    pub writes: Option<Writes>,
    /// Why writes per signal are unknown, when they are.
    pub writes_unknown: Option<String>,
    /// Exact-count check.
    pub count_check: CountCheck,
    /// Gateway memory and CPU, when known.
    pub process: Option<Processes>,
    /// Control-plane (kube-apiserver, etcd) memory and CPU, when self-started.
    pub control_plane: Option<Processes>,
    /// Time from the last response until every RR's storm block matched its deduplication
    /// history (ms); `None` when not measured or not reached within the check timeout.
    pub storm_staleness_ms: Option<f64>,
    /// Self-started gateways that exited during the phase, described.
    pub exited: Vec<String>,
    /// Set by [`verdict`] when the report is assembled.
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl Phase {
    /// An empty phase about to drive `streams`.
    pub fn new(mode: Mode, replicas: usize, streams: Vec<Stream>) -> Self {
        Phase {
            mode,
            replicas,
            streams,
            ..Phase::default()
        }
    }

    /// Tallies one completed request of `stream`: `latency` from its due time, `service`
    /// from its send; latencies only when `measured` (not in the warm-up).
    pub fn record(
        &mut self,
        stream: StreamKind,
        measured: bool,
        planned_first: u64,
        latency: Duration,
        service: Duration,
        c: &Completion,
    ) {
        *self.requests.entry(c.outcome).or_insert(0) += 1;
        self.k8s_writes += u64::from(c.writes);
        if let Some(rec) = self.streams.iter_mut().find(|s| s.stream == stream)
            && measured
        {
            rec.outcomes.entry(c.outcome).or_default().record(latency);
            rec.all.record(latency);
            rec.service.record(service);
        }
        if let Some(d) = &c.detail {
            let known = self.failures.contains_key(d) || self.failures.len() < MAX_DETAILS;
            let key = if known {
                d.as_str()
            } else {
                "(other failures)"
            };
            *self.failures.entry(key.to_owned()).or_insert(0) += 1;
        }
        if let Some(again) = &c.redelivery {
            if again.outcome.is_failure() {
                *self.requests.entry(again.outcome).or_insert(0) += 1;
            }
            self.redeliveries.tally(c, again);
        }
        let t = &mut self.signals;
        t.planned_first += planned_first;
        for s in &c.signals {
            t.sent += 1;
            t.fingerprint_mismatches += u64::from(!s.fingerprint_ok);
            let account = self.accounts.entry(s.fp).or_default();
            match s.status {
                SignalStatus::Created => t.created += 1,
                SignalStatus::Duplicate => t.duplicate += 1,
                SignalStatus::Rejected => t.rejected += 1,
                SignalStatus::Failed => t.failed += 1,
            }
            if s.status.accepted() {
                account.accepted += 1;
                match (&s.rr, s.count) {
                    (Some(rr), Some(n)) => account.counts.entry(rr.clone()).or_default().push(n),
                    _ => account.unattributed += 1,
                }
            } else if s.status == SignalStatus::Failed {
                account.failed += 1;
            }
        }
    }
}

/// Decides what fails a phase and what is only worth a warning. The one place pass/fail is
/// decided: latency never fails a run; failed requests, lost signals, wrong fingerprints, count
/// mismatches, unanswered requests and exited gateways do.
pub fn verdict(phase: &Phase, scenario: &Scenario) -> Verdict {
    let (s, mut v) = (&phase.signals, Verdict::default());
    let failed = phase.requests.iter().filter(|(o, _)| o.is_failure());
    let mut counted: Vec<(u64, String)> = failed
        .map(|(o, n)| (*n, format!("requests ended {}", o.label())))
        .collect();
    let (mismatches, several) = match &phase.count_check {
        CountCheck::Done(c) => (c.mismatches, c.fingerprints_with_several_rrs),
        _ => (0, 0),
    };
    counted.extend(
        [
            (s.rejected, "signals rejected"),
            (s.failed, "signals failed"),
            (
                s.fingerprint_mismatches,
                "responses named another fingerprint than expected",
            ),
            (
                phase.abandoned,
                "requests still unanswered when the phase ended",
            ),
            (mismatches, "count mismatches"),
            (
                phase.redeliveries.mismatches,
                "resent signals answered otherwise than the delivery they repeat",
            ),
        ]
        .map(|(n, what)| (n, what.to_owned())),
    );
    v.problems = counted
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    v.problems.extend(phase.exited.iter().cloned());
    if let CountCheck::Failed { reason } = &phase.count_check {
        v.problems.push(format!("count check failed: {reason}"));
    }
    if several > 0 {
        v.warnings
            .push(format!("{several} fingerprints have several RRs"));
    }
    for st in &phase.streams {
        let label = st.stream.label();
        if st.dropped > 0 {
            v.warnings.push(format!(
                "{label}: {} of {} due requests dropped at the in-flight cap (raise --max-in-flight or lower the rate)",
                st.dropped, st.due
            ));
        }
        if st.schedule_rate < st.scheduled_rate * 0.95 {
            v.warnings.push(format!(
                "{label}: due requests were handled at {:.0}/s of {:.0}/s scheduled: the load generator fell behind (see send lag)",
                st.schedule_rate, st.scheduled_rate
            ));
        }
        let pool = scenario.fingerprints;
        if st.fingerprints_used.is_some_and(|u| u >= pool) && scenario.duplicate_ratio < 1.0 {
            v.warnings.push(format!(
                "all {pool} steady fingerprints were used before the end: later signals were all duplicates (raise --fingerprints or leave it 0)"
            ));
        }
    }
    let recognised = phase.writes.as_ref().and_then(|w| {
        let name = gateway::telemetry::names::REDELIVERIES;
        w.counters.get(name).copied()
    });
    let resent = phase.redeliveries.same_answer as f64;
    if let Some(recognised) = recognised
        && phase.redeliveries.requests > 0
        && recognised != resent
    {
        v.warnings.push(format!(
            "the gateways report {recognised} redeliveries; {resent} resent signals were answered as one (other traffic on the gateways?)"
        ));
    }
    if let Some(why) = &phase.writes_unknown {
        v.warnings.push(format!("writes per signal unknown: {why}"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Counts;

    fn completion(
        outcome: Outcome,
        fp: u32,
        status: SignalStatus,
        count: Option<u64>,
    ) -> Completion {
        let signal = SignalResult::new(fp, status, count, count.map(|_| format!("rr-{fp}")));
        let detail = outcome.is_failure().then(|| format!("{outcome:?}"));
        Completion {
            outcome,
            signals: vec![signal],
            detail,
            writes: 0,
            redelivery: None,
        }
    }

    fn phase(streams: Vec<Stream>) -> Phase {
        Phase::new(Mode::Gateway, 1, streams)
    }

    /// A steady stream at 100/s for 1 s that sent `sent`, dropped `dropped`, over `span_ms`.
    fn driven(sent: u64, dropped: u64, span_ms: u64) -> Stream {
        let clock = StreamClock {
            rate: 100.0,
            measure: Duration::from_secs(1),
            ..StreamClock::default()
        };
        let (lag_us, send_span) = (micros_histogram(), Duration::from_millis(span_ms));
        let drive = DriveStats {
            due: 100,
            sent,
            dropped,
            lag_us,
            send_span,
        };
        let mut st = Stream::new(StreamKind::Steady, 100.0);
        st.drove(&clock, drive, None);
        st
    }

    fn judge(p: &Phase) -> Verdict {
        let args = <crate::cli::Args as clap::Parser>::try_parse_from(["x", "--seed", "1"]);
        let scenario = args.unwrap_or_else(|e| panic!("{e}")).scenario.resolve();
        verdict(p, &scenario.unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn tallies_latency_only_when_measured_and_accounts_always() {
        let mut r = phase(vec![
            Stream::new(StreamKind::Steady, 1.0),
            Stream::new(StreamKind::Storm, 1.0),
        ]);
        let ms = Duration::from_millis;
        let created = completion(Outcome::Created, 1, SignalStatus::Created, Some(1));
        let duplicate = completion(Outcome::Duplicate, 1, SignalStatus::Duplicate, Some(2));
        let failed = completion(Outcome::ServerError, 2, SignalStatus::Failed, None);
        r.record(StreamKind::Steady, false, 1, ms(50), ms(40), &created);
        r.record(StreamKind::Steady, true, 0, ms(5), ms(4), &duplicate);
        r.record(StreamKind::Storm, true, 0, ms(7), ms(6), &failed);
        let steady = &r.streams[0];
        assert_eq!(steady.all.0.len(), 1);
        assert_eq!(steady.outcomes[&Outcome::Duplicate].0.len(), 1);
        assert!(!steady.outcomes.contains_key(&Outcome::Created));
        assert_eq!(r.requests[&Outcome::Created], 1);
        assert_eq!(r.requests[&Outcome::ServerError], 1);
        let s = r.signals;
        assert_eq!(
            (s.sent, s.created, s.duplicate, s.failed, s.planned_first),
            (3, 1, 1, 1, 1)
        );
        assert_eq!(r.accounts[&1].accepted, 2);
        assert_eq!(r.accounts[&1].counts["rr-1"], vec![1, 2]);
        assert_eq!(r.accounts[&2].failed, 1);
        assert_eq!(r.failures["ServerError"], 1);
        let v = judge(&r);
        assert_eq!(v.problems, ["1 requests ended 5xx", "1 signals failed"]);
    }

    #[test]
    fn percentiles_in_ms() {
        let mut h = Latency::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us * 10));
        }
        let p = h.percentiles();
        assert_eq!(p.count, 1000);
        for (got, want) in [(p.p50, 5.0), (p.p95, 9.5), (p.p99, 9.9), (p.max, 10.0)] {
            assert!((got - want).abs() < 0.01, "{p:?}");
        }
        assert_eq!(Latency::default().percentiles(), Percentiles::default());
    }

    #[test]
    fn achieved_rate_of_an_on_time_stream() {
        let st = driven(100, 0, 990);
        assert!(
            (st.achieved_rate - 100.0).abs() < 0.01,
            "{}",
            st.achieved_rate
        );
        let mut p = phase(vec![st]);
        let ok = completion(Outcome::Duplicate, 0, SignalStatus::Duplicate, Some(2));
        let ms = Duration::from_millis(5);
        p.record(StreamKind::Steady, true, 0, ms, ms, &ok);
        let v = judge(&p);
        assert!(v.problems.is_empty() && v.warnings.is_empty(), "{v:?}");
    }

    #[test]
    fn drops_are_not_mistaken_for_a_slow_scheduler() {
        let st = driven(51, 49, 990);
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
        let v = judge(&phase(vec![st]));
        assert_eq!(v.warnings.len(), 1, "{v:?}");
        assert!(
            v.warnings[0].contains("49 of 100 due requests dropped"),
            "{v:?}"
        );
        let v = judge(&phase(vec![driven(100, 0, 1500)]));
        assert!(
            v.warnings.iter().any(|w| w.contains("fell behind")),
            "{v:?}"
        );
    }

    #[test]
    fn mismatches_and_exits_fail_the_run() {
        let mut p = phase(Vec::new());
        let counts = Counts {
            mismatches: 2,
            ..Counts::default()
        };
        p.count_check = CountCheck::Done(counts);
        p.exited.push("gateway exited".into());
        p.abandoned = 3;
        let v = judge(&p);
        let want = [
            "3 requests still unanswered when the phase ended",
            "2 count mismatches",
        ];
        assert_eq!(v.problems, [want[0], want[1], "gateway exited"]);
    }
}
