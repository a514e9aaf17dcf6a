//! The one place a new RR object is built from a signal: deterministic name, generation label,
//! the spec with every field cut to the CRD's limits. The engine creates what this builds; the
//! load tool's floor and the tests build their RRs here too, so they send the same object.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::index::{GENERATION_LABEL, rr_name};
use crate::ingest::Signal;
use crate::k8s::types::{
    ANNOTATION_VALUE_MAX, LABEL_VALUE_MAX, ORIGINAL_PAYLOAD_MAX, RemediationRequest,
    RemediationRequestSpec, ResourceRef, SignalType, TargetType, truncate_bytes, truncate_chars,
};

/// The RR of `signal`'s fingerprint with this `generation`, in `namespace`, first received at
/// `received`. No status: the engine initialises it after the create.
pub fn build(
    signal: &Signal,
    namespace: &str,
    generation: u32,
    received: Timestamp,
) -> RemediationRequest {
    let cut = |map: &BTreeMap<String, String>, max: usize| {
        (!map.is_empty()).then(|| {
            map.iter()
                .map(|(k, v)| (k.clone(), truncate_chars(v, max).to_owned()))
                .collect()
        })
    };
    let spec = RemediationRequestSpec {
        signal_fingerprint: signal.fingerprint.to_string(),
        signal_name: signal.name.clone(),
        severity: signal.severity.clone(),
        signal_type: SignalType::Alert,
        signal_source: signal.source,
        target_type: TargetType::Kubernetes,
        target_resource: ResourceRef {
            kind: signal.resource.kind.clone(),
            name: signal.resource.name.clone(),
            namespace: signal.resource.namespace.clone(),
            api_version: signal.resource.api_version.clone(),
        },
        cluster_id: signal.cluster.clone(),
        firing_time: Time(signal.firing_time),
        received_time: Time(received),
        signal_labels: cut(&signal.labels, LABEL_VALUE_MAX),
        signal_annotations: cut(&signal.annotations, ANNOTATION_VALUE_MAX),
        original_payload: Some(truncate_bytes(&signal.raw, ORIGINAL_PAYLOAD_MAX).to_owned()),
    };
    RemediationRequest {
        metadata: ObjectMeta {
            name: Some(rr_name(&signal.fingerprint, generation)),
            namespace: Some(namespace.to_owned()),
            labels: Some([(GENERATION_LABEL.to_string(), generation.to_string())].into()),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}
