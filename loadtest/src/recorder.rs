//! Where completed requests are tallied: latency histograms per stream and outcome, signal
//! totals, and per-fingerprint accounting of the counts the gateway reported (the input of the
//! exact-count check).
//!
//! One `Recorder` sits behind a `std::sync::Mutex`; each request holds it for a few
//! histogram increments after its response, never across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::outcome::{Completion, Outcome, SignalStatus};
use crate::schedule::{micros, micros_histogram};

/// Which stream a request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    /// Constant-rate traffic with a duplicate ratio.
    Steady,
    /// A burst on a small set of fingerprints.
    Storm,
}

impl StreamKind {
    /// Label in the report.
    pub fn label(self) -> &'static str {
        match self {
            StreamKind::Steady => "steady",
            StreamKind::Storm => "storm",
        }
    }
}

/// Latencies of one stream.
#[derive(Debug)]
pub struct StreamRecord {
    /// From due time to full response, per outcome, in microseconds.
    pub by_outcome: BTreeMap<Outcome, Histogram<u64>>,
    /// All outcomes together.
    pub all: Histogram<u64>,
    /// From the actual send to the full response (excludes scheduler lag), all outcomes.
    pub service: Histogram<u64>,
}

impl Default for StreamRecord {
    fn default() -> Self {
        Self {
            by_outcome: BTreeMap::new(),
            all: micros_histogram(),
            service: micros_histogram(),
        }
    }
}

/// What one fingerprint received.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FingerprintAccount {
    /// Signals accepted (created or duplicate).
    pub accepted: u64,
    /// Signals that failed (5xx, transport, `failed`); their effect on the count is unknown.
    pub failed: u64,
    /// Per RR name: every count reported for it.
    pub counts: BTreeMap<String, Vec<u64>>,
    /// Accepted signals reported without an RR name or count.
    pub unattributed: u64,
}

/// Signal totals over the whole run, warm-up included.
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

/// Everything tallied during a run.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Measured latencies per stream.
    pub streams: BTreeMap<StreamKind, StreamRecord>,
    /// Requests per outcome, warm-up included.
    pub requests: BTreeMap<Outcome, u64>,
    /// Signal totals, warm-up included.
    pub signals: SignalTotals,
    /// Per fingerprint index, warm-up included.
    pub accounts: HashMap<u32, FingerprintAccount>,
    /// Distinct failure descriptions with their number, at most `MAX_DETAILS`.
    pub failures: BTreeMap<String, u64>,
    /// Kubernetes writes reported by completions (floor mode).
    pub k8s_writes: u64,
}

/// Cap on distinct failure descriptions kept, so a run of varied errors stays bounded.
const MAX_DETAILS: usize = 32;

impl Recorder {
    /// Tallies one completed request: `latency` from its due time, `service` from its send.
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
        self.k8s_writes += u64::from(c.k8s_writes);
        if measured {
            let rec = self.streams.entry(stream).or_default();
            let us = micros(latency);
            rec.by_outcome
                .entry(c.outcome)
                .or_insert_with(micros_histogram)
                .saturating_record(us);
            rec.all.saturating_record(us);
            rec.service.saturating_record(micros(service));
        }
        if let Some(d) = &c.detail {
            let known = self.failures.contains_key(d);
            if known || self.failures.len() < MAX_DETAILS {
                *self.failures.entry(d.clone()).or_insert(0) += 1;
            } else {
                *self
                    .failures
                    .entry("(other failures)".to_owned())
                    .or_insert(0) += 1;
            }
        }
        let t = &mut self.signals;
        t.planned_first += planned_first;
        for s in &c.signals {
            t.sent += 1;
            if !s.fingerprint_ok {
                t.fingerprint_mismatches += 1;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::SignalResult;

    fn completion(outcome: Outcome, sigs: &[(u32, SignalStatus, Option<u64>)]) -> Completion {
        Completion {
            outcome,
            signals: sigs
                .iter()
                .map(|&(fp, status, count)| SignalResult {
                    fp,
                    status,
                    count,
                    rr: count.map(|_| format!("rr-{fp}")),
                    fingerprint_ok: true,
                })
                .collect(),
            detail: outcome.is_failure().then(|| format!("{outcome:?}")),
            k8s_writes: 0,
        }
    }

    #[test]
    fn tallies_latency_only_when_measured_and_accounts_always() {
        let mut r = Recorder::default();
        let ms = Duration::from_millis;
        r.record(
            StreamKind::Steady,
            false,
            1,
            ms(50),
            ms(40),
            &completion(Outcome::Created, &[(1, SignalStatus::Created, Some(1))]),
        );
        r.record(
            StreamKind::Steady,
            true,
            0,
            ms(5),
            ms(4),
            &completion(Outcome::Duplicate, &[(1, SignalStatus::Duplicate, Some(2))]),
        );
        r.record(
            StreamKind::Storm,
            true,
            0,
            ms(7),
            ms(6),
            &completion(Outcome::ServerError, &[(2, SignalStatus::Failed, None)]),
        );
        let steady = &r.streams[&StreamKind::Steady];
        assert_eq!(steady.all.len(), 1);
        assert_eq!(steady.by_outcome[&Outcome::Duplicate].len(), 1);
        assert!(!steady.by_outcome.contains_key(&Outcome::Created));
        assert_eq!(r.requests[&Outcome::Created], 1);
        assert_eq!(r.requests[&Outcome::ServerError], 1);
        assert_eq!(r.signals.sent, 3);
        assert_eq!(r.signals.created, 1);
        assert_eq!(r.signals.duplicate, 1);
        assert_eq!(r.signals.failed, 1);
        assert_eq!(r.signals.planned_first, 1);
        assert_eq!(r.accounts[&1].accepted, 2);
        assert_eq!(r.accounts[&1].counts["rr-1"], vec![1, 2]);
        assert_eq!(r.accounts[&2].failed, 1);
        assert_eq!(r.failures["ServerError"], 1);
    }
}
