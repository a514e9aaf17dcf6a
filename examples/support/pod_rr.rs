//! A signal about a Pod and its RemediationRequest, built by the gateway's own RR builder;
//! shared by the index bench, the memory examples and the tests (`#[path]`-included).
#![allow(dead_code)]

use std::collections::BTreeMap;

use gateway::fingerprint::Fingerprint;
use gateway::ingest::Signal;
use gateway::k8s::RemediationRequest;
use gateway::k8s::types::{
    DeduplicationStatus, RemediationRequestStatus, ResourceRef, SignalSource,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// A valid Alertmanager signal about Pod `pod` in `namespace`, as the adapter produces it: a
/// delivery of its own (its firing time is now, to the nanosecond).
pub fn pod_signal(namespace: &str, pod: &str) -> Signal {
    let fingerprint = Fingerprint::of(None, namespace, "Pod", pod);
    let firing_time = jiff::Timestamp::now();
    Signal {
        fingerprint,
        delivery: gateway::ingest::Delivery::digest(SignalSource::Prometheus, &fingerprint)
            .time("startsAt", Some(firing_time))
            .finish(),
        name: "HighErrorRate".into(),
        severity: "critical".into(),
        source: SignalSource::Prometheus,
        resource: ResourceRef {
            kind: "Pod".into(),
            name: pod.into(),
            namespace: Some(namespace.into()),
            api_version: None,
        },
        labelled: None,
        cluster: None,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        firing_time,
        raw: "{}".into(),
        origin: Default::default(),
    }
}

/// The first RR of `pod` in namespace `shop`. With arrivals in `recent`, it carries
/// `status.deduplication` counting them; with a `resource_version`, it looks as the apiserver
/// returns it.
pub fn pod_rr(
    pod: &str,
    recent: Vec<i64>,
    resource_version: Option<u64>,
) -> (Fingerprint, RemediationRequest) {
    let signal = pod_signal("shop", pod);
    let now = jiff::Timestamp::now();
    let mut rr = gateway::dedup::rr::build(&signal, "gateway", 0, now);
    rr.metadata.namespace = None;
    rr.metadata.resource_version = resource_version.map(|rv| rv.to_string());
    if !recent.is_empty() {
        rr.status = Some(RemediationRequestStatus {
            deduplication: Some(DeduplicationStatus {
                occurrence_count: recent.len() as i64,
                first_seen_at: Time(now),
                last_seen_at: Time(now),
                recent_occurrences: recent,
                storm_detected_at: None,
                storm_detected_count: None,
            }),
            ..RemediationRequestStatus::default()
        });
    }
    (signal.fingerprint, rr)
}
