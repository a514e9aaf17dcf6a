//! The one place a new RR object is built from a signal: deterministic name, generation label,
//! the spec with every field cut to the CRD's limits. The engine creates what this builds; the
//! load tool's floor and the tests build their RRs here too, so they send the same object.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::index::{GENERATION_LABEL, rr_name};
use crate::ingest::Signal;
use crate::k8s::types::{
    ANNOTATION_VALUE_MAX, LABEL_VALUE_MAX, LABELLED_TARGET_ANNOTATION, ORIGINAL_PAYLOAD_MAX,
    RemediationRequest, RemediationRequestSpec, ResourceRef, SignalSource, SignalType, TargetType,
    truncate_bytes, truncate_chars,
};

/// Annotation naming the authenticated identity whose signal created the RR.
pub const CREATED_BY_ANNOTATION: &str = "kubernaut.ai/created-by";
/// Annotation with the IP address the creating signal came from (the sender, or the last proxy
/// before the gateway).
pub const CREATED_FROM_ANNOTATION: &str = "kubernaut.ai/created-from";

/// What `spec.originalPayload` carries (`kubernetes.original_payload`).
#[derive(Clone, Copy, Debug, Default, serde::Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// The alert or Event as received (capped at 64 KiB).
    #[default]
    Full,
    /// An Alertmanager alert without its `labels` and `annotations` when `signalLabels` and
    /// `signalAnnotations` hold them unabridged (nothing is lost: put them back to get the alert
    /// as received); Events, and alerts with a value cut to the CRD's limits, stay whole.
    Compact,
}

/// The RR of `signal`'s fingerprint with this `generation`, in `namespace`, first received at
/// `received`, with the whole payload. No status: the engine initialises it after the create.
pub fn build(
    signal: &Signal,
    namespace: &str,
    generation: u32,
    received: Timestamp,
) -> RemediationRequest {
    build_with(signal, namespace, generation, received, Payload::Full)
}

/// [`build`] with the given `originalPayload` form.
pub fn build_with(
    signal: &Signal,
    namespace: &str,
    generation: u32,
    received: Timestamp,
    payload: Payload,
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
        original_payload: Some(original_payload(signal, payload)),
    };
    let mut annotations = BTreeMap::new();
    if let Some(sender) = &signal.origin.sender {
        annotations.insert(
            CREATED_BY_ANNOTATION.to_owned(),
            truncate_chars(sender, ANNOTATION_VALUE_MAX).to_owned(),
        );
    }
    if let Some(peer) = signal.origin.peer {
        annotations.insert(CREATED_FROM_ANNOTATION.to_owned(), peer.ip().to_string());
    }
    if let Some(labelled) = &signal.labelled {
        annotations.insert(
            LABELLED_TARGET_ANNOTATION.to_owned(),
            format!("{}/{}", labelled.kind, labelled.name),
        );
    }
    RemediationRequest {
        metadata: ObjectMeta {
            name: Some(rr_name(&signal.fingerprint, generation)),
            namespace: Some(namespace.to_owned()),
            labels: Some([(GENERATION_LABEL.to_string(), generation.to_string())].into()),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

fn original_payload(signal: &Signal, payload: Payload) -> String {
    let whole = || truncate_bytes(&signal.raw, ORIGINAL_PAYLOAD_MAX).to_owned();
    let unabridged = |map: &BTreeMap<String, String>, max: usize| {
        map.values().all(|v| v.chars().nth(max).is_none())
    };
    if payload == Payload::Full
        || signal.source != SignalSource::Prometheus
        || !unabridged(&signal.labels, LABEL_VALUE_MAX)
        || !unabridged(&signal.annotations, ANNOTATION_VALUE_MAX)
    {
        return whole();
    }
    match serde_json::from_str::<serde_json::Value>(&signal.raw) {
        Ok(serde_json::Value::Object(mut alert)) => {
            alert.remove("labels");
            alert.remove("annotations");
            serde_json::Value::Object(alert).to_string()
        }
        _ => whole(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ingest::adapters::alertmanager;

    fn signal(pod: &str) -> Signal {
        let body = format!(
            r#"{{"version":"4","status":"firing","alerts":[{{"status":"firing","labels":{{"alertname":"A","namespace":"ns","pod":"{pod}"}},"annotations":{{"summary":"s"}},"startsAt":"2026-03-01T11:59:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://p/g","fingerprint":"0123"}}]}}"#
        );
        let now = "2026-03-01T12:00:00Z".parse().unwrap();
        alertmanager::parse(&mut body.into_bytes(), None, now)
            .unwrap()
            .remove(0)
            .unwrap()
    }

    fn payload(rr: &RemediationRequest) -> serde_json::Value {
        serde_json::from_str(rr.spec.original_payload.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn compact_payload_plus_labels_and_annotations_is_the_alert() {
        let signal = signal("api-0");
        let now = Timestamp::now();
        let full = payload(&build_with(&signal, "gw", 0, now, Payload::Full));
        let rr = build_with(&signal, "gw", 0, now, Payload::Compact);
        let mut compact = payload(&rr);
        assert!(compact.get("labels").is_none() && compact.get("annotations").is_none());
        compact["labels"] = serde_json::to_value(rr.spec.signal_labels.unwrap()).unwrap();
        compact["annotations"] = serde_json::to_value(rr.spec.signal_annotations.unwrap()).unwrap();
        assert_eq!(compact, full);
    }

    #[test]
    fn a_label_cut_to_the_crd_limit_keeps_the_payload_whole() {
        let long = "p".repeat(LABEL_VALUE_MAX + 1);
        let signal = signal(&long);
        let rr = build_with(&signal, "gw", 0, Timestamp::now(), Payload::Compact);
        assert_eq!(payload(&rr)["labels"]["pod"], long.as_str());
    }
}
