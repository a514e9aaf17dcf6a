//! One RemediationRequest about a Pod in namespace `shop`, shaped and named as the gateway
//! creates it; shared by the index bench and the memory examples (`#[path]`-included).

use gateway::fingerprint::Fingerprint;
use gateway::k8s::RemediationRequest;
use gateway::k8s::types::{
    DeduplicationStatus, RemediationRequestSpec, RemediationRequestStatus, ResourceRef,
    SignalSource, SignalType, TargetType,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The RR of `pod`. With arrivals in `recent`, it carries `status.deduplication` counting
/// them; with a `resource_version`, it looks as the apiserver returns it.
pub fn pod_rr(
    pod: &str,
    recent: Vec<i64>,
    resource_version: Option<u64>,
) -> (Fingerprint, RemediationRequest) {
    let fingerprint = Fingerprint::of(None, "shop", "Pod", pod);
    let now = Time(jiff::Timestamp::now());
    let spec = RemediationRequestSpec {
        signal_fingerprint: fingerprint.to_string(),
        signal_name: "HighErrorRate".into(),
        severity: "critical".into(),
        signal_type: SignalType::Alert,
        signal_source: SignalSource::Prometheus,
        target_type: TargetType::Kubernetes,
        target_resource: ResourceRef {
            kind: "Pod".into(),
            name: pod.into(),
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
    rr.metadata.resource_version = resource_version.map(|rv| rv.to_string());
    if !recent.is_empty() {
        rr.status = Some(RemediationRequestStatus {
            deduplication: Some(DeduplicationStatus {
                occurrence_count: recent.len() as i64,
                first_seen_at: now.clone(),
                last_seen_at: now,
                recent_occurrences: recent,
                storm_detected_at: None,
                storm_detected_count: None,
            }),
            ..RemediationRequestStatus::default()
        });
    }
    (fingerprint, rr)
}
