//! Memory of the dedup index: resident set before and after indexing N RemediationRequests
//! shaped like the gateway's own (deterministic names, one occurrence each, or a full storm
//! history with `--storm`). Run: `cargo run --release --example index_memory -- 100000`.

use gateway::dedup::Index;
use gateway::fingerprint::Fingerprint;
use gateway::k8s::RemediationRequest;
use gateway::k8s::types::{
    DeduplicationStatus, RemediationRequestSpec, RemediationRequestStatus, ResourceRef,
    SignalSource, SignalType, TargetType,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn resident_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let storm = args.iter().any(|a| a == "--storm");
    let now = Time(jiff::Timestamp::now());
    println!(
        "size_of: RrState {} B, History {} B, Timestamp {} B",
        std::mem::size_of::<gateway::dedup::RrState>(),
        std::mem::size_of::<gateway::storm::History>(),
        std::mem::size_of::<jiff::Timestamp>()
    );
    let before = resident_mib();
    let index = Index::new();
    for i in 0..n {
        let fingerprint = Fingerprint::of(None, "shop", "Pod", &format!("api-{i}"));
        let spec = RemediationRequestSpec {
            signal_fingerprint: fingerprint.to_string(),
            signal_name: "HighErrorRate".into(),
            severity: "critical".into(),
            signal_type: SignalType::Alert,
            signal_source: SignalSource::Prometheus,
            target_type: TargetType::Kubernetes,
            target_resource: ResourceRef {
                kind: "Pod".into(),
                name: format!("api-{i}"),
                namespace: Some("shop".into()),
                api_version: None,
            },
            cluster_id: None,
            firing_time: now.clone(),
            received_time: now.clone(),
            signal_labels: None,
            signal_annotations: None,
            original_payload: None,
        };
        let name = gateway::dedup::index::rr_name(&fingerprint, 0);
        let mut rr = RemediationRequest::new(&name, spec);
        rr.metadata.resource_version = Some((i + 1).to_string());
        let recent: Vec<i64> = if storm { (0..64).collect() } else { vec![0] };
        rr.status = Some(RemediationRequestStatus {
            deduplication: Some(DeduplicationStatus {
                occurrence_count: recent.len() as i64,
                first_seen_at: now.clone(),
                last_seen_at: now.clone(),
                recent_occurrences: recent,
                storm_detected_at: None,
                storm_detected_count: None,
            }),
            ..RemediationRequestStatus::default()
        });
        index.apply(&rr);
    }
    let after = resident_mib();
    println!(
        "{n} RRs indexed ({} history): RSS {before:.1} MiB -> {after:.1} MiB ({:.0} bytes per RR)",
        if storm { "64-entry" } else { "1-entry" },
        (after - before) * 1024.0 * 1024.0 / n as f64
    );
    assert_eq!(index.len(), n);
}
