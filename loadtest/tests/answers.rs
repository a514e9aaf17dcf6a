//! The gateway's answers as this tool reads them (DESIGN.md §2): every status and body of the
//! HTTP contract mapped to a request outcome and a result per signal, and the targets it
//! accepts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use gateway_loadtest::gateway_api::{GatewaySink, classify_response, http_client, loopback_base};
use gateway_loadtest::payload::{Naming, TargetKind};
use gateway_loadtest::results::{Completion, Outcome, SignalResult, SignalStatus};
use gateway_loadtest::scenario::RequestPlan;

#[test]
fn only_loopback_targets() {
    let base = loopback_base("http://127.0.0.1:8080/").ok();
    assert_eq!(base.as_deref(), Some("http://127.0.0.1:8080"));
    for ok in [
        "http://localhost:8080",
        "http://[::1]:8080",
        "http://127.1.2.3:80",
    ] {
        assert!(loopback_base(ok).is_ok(), "{ok}");
    }
    for bad in [
        "http://10.0.0.1:8080",
        "http://example.com",
        "https://127.0.0.1:8443",
        "http://127.0.0.1:8080/api",
        "not a url",
    ] {
        assert!(loopback_base(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn refused_connection_is_a_transport_error() {
    // Bind then drop: the port is very likely closed for the instant of the test.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr());
    let target = format!("http://127.0.0.1:{}", port.map_or(1, |a| a.port()));
    let naming = Arc::new(Naming::new("t", "ns", TargetKind::Pod, 10));
    let sink = GatewaySink::new(http_client(4), vec![target], naming, Duration::from_secs(2));
    let c = sink.send(&RequestPlan::alerts(&[0]), 0).await;
    assert_eq!(c.outcome, Outcome::Transport);
    assert!(c.detail.is_some_and(|d| d.starts_with("send")));
}

fn fp(i: usize) -> String {
    format!("{i:064x}")
}

/// The answer `status` + `body` (`FP<i>` standing for fingerprint `i`) to a request of
/// `signals` signals whose first `expected` fingerprints are known.
fn answer(status: u16, body: &str, signals: u32, expected: usize) -> Completion {
    let body = (0..3).fold(body.to_owned(), |b, i| b.replace(&format!("FP{i}"), &fp(i)));
    let plan = RequestPlan::alerts(&(0..signals).map(|i| i + 7).collect::<Vec<_>>());
    let expected: Vec<String> = (0..expected).map(fp).collect();
    classify_response(status, body.as_bytes(), &plan.signals, &expected)
}

#[test]
fn created() {
    let body = r#"{"status":"created","fingerprint":"FP0","duplicate":false,
        "remediationRequestName":"rr-a","remediationRequestNamespace":"ns"}"#;
    let c = answer(201, body, 1, 1);
    assert_eq!(c.outcome, Outcome::Created);
    let want = SignalResult::new(7, SignalStatus::Created, Some(1), Some("rr-a".into()));
    assert_eq!(c.signals, [want]);
    assert!(c.detail.is_none());
}

#[test]
fn duplicate_reads_metadata_count() {
    let body = r#"{"status":"duplicate","fingerprint":"FP0","duplicate":true,
        "remediationRequestName":"rr-a","metadata":{"count":17,"remediationRequestRef":"ns/rr-a"}}"#;
    let c = answer(202, body, 1, 1);
    assert_eq!(c.outcome, Outcome::Duplicate);
    let s = &c.signals[0];
    assert_eq!(
        (s.count, s.status, s.fingerprint_ok),
        (Some(17), SignalStatus::Duplicate, true)
    );
}

#[test]
fn wrong_fingerprint_is_flagged() {
    let body = r#"{"fingerprint":"FP1","remediationRequestName":"rr-a","metadata":{"count":2}}"#;
    assert!(!answer(202, body, 1, 1).signals[0].fingerprint_ok);
}

#[test]
fn batch_maps_results_in_order() {
    let body = r#"{"results":[
        {"status":"created","fingerprint":"FP0","remediationRequestName":"rr-0","count":1},
        {"status":"duplicate","fingerprint":"FP1","remediationRequestName":"rr-1","count":5},
        {"status":"failed","fingerprint":"FP2","message":"x"}],
      "summary":{"total":3,"created":1,"deduplicated":1,"rejected":0,"failed":1}}"#;
    let c = answer(207, body, 3, 3);
    assert_eq!(c.outcome, Outcome::MultiStatus);
    let st: Vec<_> = c
        .signals
        .iter()
        .map(|s| (s.status, s.count, s.fingerprint_ok))
        .collect();
    assert_eq!(
        st,
        [
            (SignalStatus::Created, Some(1), true),
            (SignalStatus::Duplicate, Some(5), true),
            (SignalStatus::Failed, None, true)
        ]
    );
}

#[test]
fn batch_with_wrong_length_is_unexpected() {
    let c = answer(207, r#"{"results":[]}"#, 2, 2);
    assert_eq!(c.outcome, Outcome::Unexpected);
    assert!(c.signals.iter().all(|s| s.status == SignalStatus::Failed));
}

#[test]
fn errors() {
    let problem = r#"{"type":"https://kubernaut.ai/problems/unavailable",
        "title":"Service Unavailable","detail":"kubernetes deadline","status":503}"#;
    let c = answer(503, problem, 1, 1);
    assert_eq!(
        (c.outcome, c.signals[0].status),
        (Outcome::ServerError, SignalStatus::Failed)
    );
    assert!(c.detail.is_some_and(|d| d.contains("Service Unavailable")));
    let c = answer(400, "not json", 1, 1);
    assert_eq!(
        (c.outcome, c.signals[0].status),
        (Outcome::ClientError, SignalStatus::Rejected)
    );
    let c = answer(200, "{}", 1, 1);
    assert_eq!(c.outcome, Outcome::Unexpected);
    assert!(c.outcome.is_failure());
    assert!(!Outcome::MultiStatus.is_failure());
}

#[test]
fn single_answer_to_a_batch_names_its_alert() {
    let c = answer(
        201,
        r#"{"fingerprint":"FP1","remediationRequestName":"rr-1"}"#,
        2,
        2,
    );
    assert_eq!(c.signals[0].status, SignalStatus::Rejected);
    assert_eq!(c.signals[1].status, SignalStatus::Created);
    assert!(c.signals[1].fingerprint_ok);
}
