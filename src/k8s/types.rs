//! The `RemediationRequest` custom resource (DESIGN.md §4): the Rust types are the source of
//! truth, and `deploy/crds/remediationrequests.yaml` is generated from them (`gateway crd`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// What the gateway asks the remediation platform to look at. The spec is written once, at
/// creation, and is immutable; everything that changes afterwards lives in the status. The
/// immutability is not a CRD rule (a transition rule is evaluated on every status update too)
/// but the admission policy `deploy/policy/spec-immutable.yaml`, which matches updates of the
/// RR itself only.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kubernaut.ai",
    version = "v1alpha1",
    kind = "RemediationRequest",
    plural = "remediationrequests",
    shortname = "rr",
    namespaced,
    status = "RemediationRequestStatus",
    selectable = ".spec.signalFingerprint",
    selectable = ".spec.signalType",
    selectable = ".spec.severity",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.overallPhase"}"#,
    printcolumn = r#"{"name":"Alert","type":"string","jsonPath":".spec.signalName"}"#,
    printcolumn = r#"{"name":"Count","type":"integer","jsonPath":".status.deduplication.occurrenceCount"}"#,
    printcolumn = r#"{"name":"Storm","type":"boolean","jsonPath":".status.stormAggregation.isPartOfStorm"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RemediationRequestSpec {
    /// Lowercase hex SHA-256 of the target resource (DESIGN.md §3).
    #[schemars(regex(pattern = r"^[a-f0-9]{64}$"))]
    pub signal_fingerprint: String,
    /// Alert name (Alertmanager `alertname`) or Event `reason`.
    #[schemars(length(min = 1, max = 253))]
    pub signal_name: String,
    /// Severity as the source gave it (`critical`, `Warning`, ... or `unknown`).
    #[schemars(length(min = 1, max = 50))]
    pub severity: String,
    /// Always `alert` for now; kept for field selection by the orchestrator.
    pub signal_type: SignalType,
    /// Which adapter produced the signal.
    pub signal_source: SignalSource,
    /// Always `kubernetes`.
    pub target_type: TargetType,
    /// The workload the signal is about.
    pub target_resource: ResourceRef,
    /// The `cluster` label, when the alert carried one (a label value: at most 63 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub cluster_id: Option<String>,
    /// When the source says the problem started.
    pub firing_time: Time,
    /// When the gateway received the first signal.
    pub received_time: Time,
    /// Labels of the first signal, values truncated to 63 characters; at most
    /// 256 of them (`SIGNAL_MAP_MAX_ENTRIES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 256))]
    pub signal_labels: Option<BTreeMap<String, String>>,
    /// Annotations of the first signal, values truncated to 262000 characters; at most
    /// 256 of them (`SIGNAL_MAP_MAX_ENTRIES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 256))]
    pub signal_annotations: Option<BTreeMap<String, String>>,
    /// The raw alert or event as received, capped at 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub original_payload: Option<String>,
}

/// Annotation on an RR whose `spec.targetResource` is the controller owner resolution found:
/// the object the creating signal named, as `<Kind>/<name>` (same namespace as the target, since
/// owners share their dependents' namespace). An annotation, not a spec field, so the CRD and
/// its validation stay as they are; absent when the target is as labelled.
pub const LABELLED_TARGET_ANNOTATION: &str = "kubernaut.ai/labelled-target";

/// Cap on `spec.originalPayload`; keeps RRs small so creates stay fast.
pub const ORIGINAL_PAYLOAD_MAX: usize = 65536;
/// Cap on each `spec.signalLabels` value.
pub const LABEL_VALUE_MAX: usize = 63;
/// Most entries `spec.signalLabels` and `spec.signalAnnotations` each take (the CRD's
/// `maxProperties`, checked by the gateway before the apiserver sees them).
pub const SIGNAL_MAP_MAX_ENTRIES: usize = 256;
/// Cap on each `spec.signalAnnotations` value.
pub const ANNOTATION_VALUE_MAX: usize = 262_000;

/// `spec.signalType`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignalType {
    /// A monitoring signal.
    Alert,
}

/// `spec.signalSource`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum SignalSource {
    /// Alertmanager webhook.
    #[serde(rename = "prometheus")]
    Prometheus,
    /// A core/v1 Event.
    #[serde(rename = "kubernetes-events")]
    KubernetesEvents,
}

/// `spec.targetType`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    /// A Kubernetes object.
    Kubernetes,
}

/// `spec.targetResource`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    /// Kind, e.g. `Pod`, `Deployment`, `Node`.
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    /// Object name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace; absent for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// API version, when the source named one (Events do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
}

/// `status`. The gateway writes `deduplication` and `stormAggregation` only; the other fields
/// belong to the remediation orchestrator and are read to decide whether the RR is active.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemediationRequestStatus {
    /// Written synchronously by the gateway on every occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplication: Option<DeduplicationStatus>,
    /// Written asynchronously by the gateway's storm queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm_aggregation: Option<StormAggregationStatus>,
    /// Lifecycle phase, owned by the orchestrator: Pending, Processing, Analyzing,
    /// AwaitingApproval, Executing, Verifying, Blocked, Completed, Failed, TimedOut, Skipped,
    /// Cancelled. Kept a free string so an unknown phase reads as active instead of failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overall_phase: Option<String>,
    /// Outcome of a finished remediation, owned by the orchestrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_status: Option<CompletionStatus>,
    /// Routing decisions, owned by the orchestrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_status: Option<RoutingStatus>,
}

/// `status.deduplication`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeduplicationStatus {
    /// Signals received for this RR, the first included.
    #[schemars(range(min = 1))]
    pub occurrence_count: i64,
    /// When the first signal arrived.
    pub first_seen_at: Time,
    /// When the latest signal arrived.
    pub last_seen_at: Time,
    /// Arrival times (Unix milliseconds, oldest first) of the latest occurrences, at most
    /// `storm.history_size`: the storm rule's input, kept here so that it is written with the
    /// count, under the same `resourceVersion`, and every replica derives the same storm.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub recent_occurrences: Vec<i64>,
    /// When the storm threshold was crossed (absent until then); the storm's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm_detected_at: Option<Time>,
    /// The occurrence count at which the storm threshold was crossed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm_detected_count: Option<i64>,
}

/// `status.stormAggregation`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StormAggregationStatus {
    /// Stays true for the RR's life once a storm was detected.
    pub is_part_of_storm: bool,
    /// `storm-<fp[0..8]>-<rr name suffix>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm_id: Option<String>,
    /// When the threshold was crossed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm_detected_at: Option<Time>,
    /// Occurrences since the storm was detected, the crossing one included.
    #[schemars(range(min = 0))]
    pub aggregated_count: i64,
    /// Occurrences within the trailing storm window at the latest signal.
    #[schemars(range(min = 0))]
    pub window_occurrences: i64,
}

/// `status.completionStatus`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompletionStatus {
    /// e.g. `ManualReviewRequired`, which keeps a terminal RR active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// `status.routingStatus`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingStatus {
    /// While in the future, a terminal RR stays active (new signals are its duplicates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_allowed_execution: Option<Time>,
}

/// The CRD as YAML, exactly as checked in at `deploy/crds/remediationrequests.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let header = "# Generated from src/k8s/types.rs (UPDATE_CRD=1 cargo test --test crd_checked_in); do not edit by hand.\n";
    Ok(format!(
        "{header}{}",
        serde_yaml::to_string(&RemediationRequest::crd())?
    ))
}

/// `text` cut to at most `max` characters (not bytes: the CRD's `maxLength` counts characters).
pub fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn truncate_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut at = max;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    &text[..at]
}
