//! Bytes kube-apiserver handles per RR: the JSON of an RR built by the gateway from a realistic
//! kube-state-metrics alert (13 labels, 3 annotations), split into spec (and its
//! `originalPayload`) and a status with a full deduplication history, for a given history size.
//!
//! Run: `cargo run --release --example rr_size -- [history_size ...]` (default 5 64).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gateway::ingest::adapters::alertmanager;
use gateway::k8s::history::History;
use gateway::k8s::types::RemediationRequestStatus;

const ALERT: &str = r#"{"status":"firing","labels":{"alertname":"KubePodCrashLooping","container":"api","endpoint":"http","instance":"10.128.2.15:8443","job":"kube-state-metrics","namespace":"payments","pod":"payment-api-7d9f8b6c5-x2x4z","prometheus":"monitoring/k8s","reason":"CrashLoopBackOff","service":"kube-state-metrics","severity":"warning","cluster":"eu-west-1-prod","uid":"0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"},"annotations":{"description":"Pod payments/payment-api-7d9f8b6c5-x2x4z (api) is in waiting state (reason: \"CrashLoopBackOff\").","runbook_url":"https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping","summary":"Pod is crash looping."},"startsAt":"2026-03-01T11:57:30.123Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus-k8s-0:9090/graph?g0.expr=max_over_time%28kube_pod_container_status_waiting_reason%7Breason%3D%22CrashLoopBackOff%22%7D%5B5m%5D%29+%3E%3D+1&g0.tab=1","fingerprint":"0123456789abcdef"}"#;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a history size"))
        .collect();
    let sizes = if sizes.is_empty() { vec![5, 64] } else { sizes };
    let body = format!(
        r#"{{"version":"4","status":"firing","receiver":"gateway","groupKey":"{{}}","alerts":[{ALERT}]}}"#
    );
    let now: jiff::Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
    let signal = alertmanager::parse(&mut body.into_bytes(), None, now)
        .unwrap()
        .remove(0)
        .unwrap();
    let rr = gateway::dedup::rr::build(&signal, "kubernaut-system", 0, now);
    let spec = serde_json::to_string(&rr.spec).unwrap();
    let payload = rr
        .spec
        .original_payload
        .as_deref()
        .unwrap_or_default()
        .len();
    println!(
        "spec {} bytes, of which originalPayload {payload}",
        spec.len()
    );
    for size in sizes {
        let history = History {
            count: 1000,
            recent: (0..size as i64)
                .map(|i| now.as_millisecond() - 1000 * i)
                .collect(),
            detected: Some((now.as_millisecond(), 5)),
        };
        let status = RemediationRequestStatus {
            deduplication: Some(history.to_status(now, now)),
            ..RemediationRequestStatus::default()
        };
        let status = serde_json::to_string(&status).unwrap();
        println!(
            "history {size}: status.deduplication {} bytes",
            status.len()
        );
    }
}
