//! What came back: a request's outcome class and, per signal it carried, whether it was
//! accepted, with the count and RR the gateway (or the floor writer) reported.
//!
//! Classifying a gateway response is pure, so the whole mapping from the HTTP contract
//! (DESIGN.md §2) is tested here without a server.

use serde::Serialize;
use serde_json::Value;

use crate::scenario::PlannedSignal;

/// Outcome class of one request; the report has a latency row per class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Outcome {
    /// 201: a new RR (floor: the create).
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

impl Outcome {
    /// Every class, in report order.
    pub const ALL: [Outcome; 7] = [
        Outcome::Created,
        Outcome::Duplicate,
        Outcome::MultiStatus,
        Outcome::ClientError,
        Outcome::ServerError,
        Outcome::Unexpected,
        Outcome::Transport,
    ];

    /// Row label in the report.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Created => "201",
            Outcome::Duplicate => "202",
            Outcome::MultiStatus => "207",
            Outcome::ClientError => "4xx",
            Outcome::ServerError => "5xx",
            Outcome::Unexpected => "other",
            Outcome::Transport => "transport",
        }
    }

    /// True for the classes that fail a run (and the CI smoke).
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            Outcome::Created | Outcome::Duplicate | Outcome::MultiStatus
        )
    }
}

/// What happened to one signal of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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

/// The result for one signal.
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
    /// False when the gateway reported a different fingerprint than the one computed here.
    pub fingerprint_ok: bool,
}

/// The result of one request.
#[derive(Clone, Debug)]
pub struct Completion {
    /// Class of the request.
    pub outcome: Outcome,
    /// One entry per planned signal, in plan order.
    pub signals: Vec<SignalResult>,
    /// For failures: a short description (status and problem title, or the transport error).
    pub detail: Option<String>,
    /// Kubernetes writes issued for this request (floor mode only; the gateway's come from
    /// its metrics).
    pub k8s_writes: u32,
}

impl Completion {
    /// A request that failed as a whole: every signal gets `status`.
    pub fn failed(
        outcome: Outcome,
        signals: &[PlannedSignal],
        status: SignalStatus,
        detail: String,
    ) -> Self {
        Completion {
            outcome,
            signals: signals
                .iter()
                .map(|s| SignalResult {
                    fp: s.fp,
                    status,
                    count: None,
                    rr: None,
                    fingerprint_ok: true,
                })
                .collect(),
            detail: Some(detail),
            k8s_writes: 0,
        }
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Classifies a gateway response to a request carrying `signals`, whose fingerprints (as
/// computed by the gateway's rule) are `expected`.
pub fn classify_response(
    status: u16,
    body: &[u8],
    signals: &[PlannedSignal],
    expected: &[String],
) -> Completion {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    match status {
        201 | 202 => {
            let Some(v) = json else {
                return Completion::failed(
                    Outcome::Unexpected,
                    signals,
                    SignalStatus::Failed,
                    format!("{status} with a body that is not JSON"),
                );
            };
            let accepted = if status == 201 {
                SignalStatus::Created
            } else {
                SignalStatus::Duplicate
            };
            let count = if status == 201 {
                Some(1)
            } else {
                v.get("metadata")
                    .and_then(|m| m.get("count"))
                    .and_then(Value::as_u64)
            };
            let rr = str_field(&v, "remediationRequestName").map(str::to_owned);
            let fp = str_field(&v, "fingerprint").unwrap_or_default();
            // A payload of several alerts answered with 201/202 had all but one rejected:
            // the answer is about the alert whose fingerprint it names.
            let target = if signals.len() == 1 {
                Some(0)
            } else {
                expected.iter().position(|e| e == fp)
            };
            let results = signals
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    if Some(i) == target {
                        SignalResult {
                            fp: s.fp,
                            status: accepted,
                            count,
                            rr: rr.clone(),
                            fingerprint_ok: expected.get(i).is_some_and(|e| e == fp),
                        }
                    } else {
                        SignalResult {
                            fp: s.fp,
                            status: SignalStatus::Rejected,
                            count: None,
                            rr: None,
                            fingerprint_ok: true,
                        }
                    }
                })
                .collect();
            let detail =
                (status == 202 && count.is_none()).then(|| "202 without metadata.count".to_owned());
            Completion {
                outcome: if status == 201 {
                    Outcome::Created
                } else {
                    Outcome::Duplicate
                },
                signals: results,
                detail,
                k8s_writes: 0,
            }
        }
        207 => {
            let results = json
                .as_ref()
                .and_then(|v| v.get("results"))
                .and_then(Value::as_array);
            let Some(results) = results.filter(|r| r.len() == signals.len()) else {
                return Completion::failed(
                    Outcome::Unexpected,
                    signals,
                    SignalStatus::Failed,
                    format!(
                        "207 whose results do not match the {} alerts sent",
                        signals.len()
                    ),
                );
            };
            let signals = signals
                .iter()
                .zip(results)
                .enumerate()
                .map(|(i, (s, r))| {
                    let status = match str_field(r, "status") {
                        Some("created") => SignalStatus::Created,
                        Some("duplicate") => SignalStatus::Duplicate,
                        Some("rejected") => SignalStatus::Rejected,
                        _ => SignalStatus::Failed,
                    };
                    let fp = str_field(r, "fingerprint");
                    let count = match status {
                        SignalStatus::Created => {
                            Some(r.get("count").and_then(Value::as_u64).unwrap_or(1))
                        }
                        SignalStatus::Duplicate => r.get("count").and_then(Value::as_u64),
                        _ => None,
                    };
                    SignalResult {
                        fp: s.fp,
                        status,
                        count,
                        rr: str_field(r, "remediationRequestName").map(str::to_owned),
                        fingerprint_ok: !status.accepted()
                            || fp.is_some_and(|f| expected.get(i).is_some_and(|e| e == f)),
                    }
                })
                .collect();
            Completion {
                outcome: Outcome::MultiStatus,
                signals,
                detail: None,
                k8s_writes: 0,
            }
        }
        400..=599 => {
            let title = json
                .as_ref()
                .and_then(|v| str_field(v, "title").or_else(|| str_field(v, "detail")))
                .unwrap_or("no problem body");
            let detail = json
                .as_ref()
                .and_then(|v| str_field(v, "detail"))
                .unwrap_or("");
            let (outcome, sig) = if status < 500 {
                (Outcome::ClientError, SignalStatus::Rejected)
            } else {
                (Outcome::ServerError, SignalStatus::Failed)
            };
            Completion::failed(outcome, signals, sig, format!("{status} {title}: {detail}"))
        }
        _ => Completion::failed(
            Outcome::Unexpected,
            signals,
            SignalStatus::Failed,
            format!("unexpected status {status}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(fp: u32) -> PlannedSignal {
        PlannedSignal {
            fp,
            variant: 0,
            first: false,
        }
    }

    fn fps(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{i:064x}")).collect()
    }

    #[test]
    fn created() {
        let e = fps(1);
        let body = format!(
            r#"{{"status":"created","fingerprint":"{}","duplicate":false,"remediationRequestName":"rr-a","remediationRequestNamespace":"ns"}}"#,
            e[0]
        );
        let c = classify_response(201, body.as_bytes(), &[sig(7)], &e);
        assert_eq!(c.outcome, Outcome::Created);
        assert_eq!(
            c.signals,
            vec![SignalResult {
                fp: 7,
                status: SignalStatus::Created,
                count: Some(1),
                rr: Some("rr-a".into()),
                fingerprint_ok: true
            }]
        );
        assert!(c.detail.is_none());
    }

    #[test]
    fn duplicate_reads_metadata_count() {
        let e = fps(1);
        let body = format!(
            r#"{{"status":"duplicate","fingerprint":"{}","duplicate":true,"remediationRequestName":"rr-a","metadata":{{"count":17,"remediationRequestRef":"ns/rr-a"}}}}"#,
            e[0]
        );
        let c = classify_response(202, body.as_bytes(), &[sig(1)], &e);
        assert_eq!(c.outcome, Outcome::Duplicate);
        assert_eq!(c.signals[0].count, Some(17));
        assert_eq!(c.signals[0].status, SignalStatus::Duplicate);
        assert!(c.signals[0].fingerprint_ok);
    }

    #[test]
    fn wrong_fingerprint_is_flagged() {
        let e = fps(2);
        let body = format!(
            r#"{{"fingerprint":"{}","remediationRequestName":"rr-a","metadata":{{"count":2}}}}"#,
            e[1]
        );
        let c = classify_response(202, body.as_bytes(), &[sig(0)], &e[..1]);
        assert!(!c.signals[0].fingerprint_ok);
    }

    #[test]
    fn batch_maps_results_in_order() {
        let e = fps(3);
        let body = format!(
            r#"{{"results":[
                {{"status":"created","fingerprint":"{}","remediationRequestName":"rr-0","count":1}},
                {{"status":"duplicate","fingerprint":"{}","remediationRequestName":"rr-1","count":5}},
                {{"status":"failed","fingerprint":"{}","message":"x"}}],
              "summary":{{"total":3,"created":1,"deduplicated":1,"rejected":0,"failed":1}}}}"#,
            e[0], e[1], e[2]
        );
        let c = classify_response(207, body.as_bytes(), &[sig(0), sig(1), sig(2)], &e);
        assert_eq!(c.outcome, Outcome::MultiStatus);
        let st: Vec<_> = c
            .signals
            .iter()
            .map(|s| (s.status, s.count, s.fingerprint_ok))
            .collect();
        assert_eq!(
            st,
            vec![
                (SignalStatus::Created, Some(1), true),
                (SignalStatus::Duplicate, Some(5), true),
                (SignalStatus::Failed, None, true)
            ]
        );
    }

    #[test]
    fn batch_with_wrong_length_is_unexpected() {
        let c = classify_response(207, br#"{"results":[]}"#, &[sig(0), sig(1)], &fps(2));
        assert_eq!(c.outcome, Outcome::Unexpected);
        assert!(c.signals.iter().all(|s| s.status == SignalStatus::Failed));
    }

    #[test]
    fn errors() {
        let problem = br#"{"type":"https://kubernaut.ai/problems/unavailable","title":"Service Unavailable","detail":"kubernetes deadline","status":503}"#;
        let c = classify_response(503, problem, &[sig(0)], &fps(1));
        assert_eq!(c.outcome, Outcome::ServerError);
        assert_eq!(c.signals[0].status, SignalStatus::Failed);
        assert!(
            c.detail
                .as_deref()
                .is_some_and(|d| d.contains("Service Unavailable"))
        );
        let c = classify_response(400, b"not json", &[sig(0)], &fps(1));
        assert_eq!(c.outcome, Outcome::ClientError);
        assert_eq!(c.signals[0].status, SignalStatus::Rejected);
        let c = classify_response(200, b"{}", &[sig(0)], &fps(1));
        assert_eq!(c.outcome, Outcome::Unexpected);
        assert!(c.outcome.is_failure());
        assert!(!Outcome::MultiStatus.is_failure());
    }

    #[test]
    fn single_answer_to_a_batch_names_its_alert() {
        let e = fps(2);
        let body = format!(
            r#"{{"fingerprint":"{}","remediationRequestName":"rr-1"}}"#,
            e[1]
        );
        let c = classify_response(201, body.as_bytes(), &[sig(0), sig(1)], &e);
        assert_eq!(c.signals[0].status, SignalStatus::Rejected);
        assert_eq!(c.signals[1].status, SignalStatus::Created);
        assert!(c.signals[1].fingerprint_ok);
    }
}
