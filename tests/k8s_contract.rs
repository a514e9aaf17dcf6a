//! What the gateway relies on Kubernetes for, checked against a real kube-apiserver and etcd
//! (`gateway-envtest`) with the CRD generated from the gateway's own types installed: the
//! spec round-trips, optimistic concurrency on `/status`, field selection by fingerprint,
//! watch events, schema and CEL validation, and RBAC.
//!
//! One control plane serves the whole binary (`gateway_envtest::shared`); each test works in
//! a namespace of its own. The control-plane binaries are built by the envtest build script
//! when they are missing, so these tests never skip.

// A failed unwrap is a failed test, with the error in the message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use gateway::fingerprint::Fingerprint;
use gateway::k8s::types::{
    RemediationRequest, RemediationRequestSpec, ResourceRef, SignalSource, SignalType, TargetType,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

/// Limit for a watch to deliver the events a test waits for.
const WATCH_DEADLINE: Duration = Duration::from_secs(20);

/// The RR API in a fresh namespace, with an admin client.
async fn rr_api(test: &str) -> Api<RemediationRequest> {
    let control_plane = gateway_envtest::shared().await.unwrap();
    let namespace = control_plane.create_namespace(test).await.unwrap();
    Api::namespaced(control_plane.client().unwrap(), &namespace)
}

/// Whole seconds: `metav1.Time` is serialized at second precision.
fn time(unix_seconds: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(unix_seconds).unwrap())
}

/// A complete spec (every optional field set) for a Pod named `pod`.
fn spec(pod: &str) -> RemediationRequestSpec {
    RemediationRequestSpec {
        signal_fingerprint: Fingerprint::of(Some("prod"), "shop", "Pod", pod)
            .as_str()
            .to_owned(),
        signal_name: "KubePodCrashLooping".to_owned(),
        severity: "critical".to_owned(),
        signal_type: SignalType::Alert,
        signal_source: SignalSource::Prometheus,
        target_type: TargetType::Kubernetes,
        target_resource: ResourceRef {
            kind: "Pod".to_owned(),
            name: pod.to_owned(),
            namespace: Some("shop".to_owned()),
            api_version: Some("v1".to_owned()),
        },
        cluster_id: Some("prod".to_owned()),
        firing_time: time(1_800_000_000),
        received_time: time(1_800_000_005),
        signal_labels: Some(BTreeMap::from([("team".to_owned(), "payments".to_owned())])),
        signal_annotations: Some(BTreeMap::from([(
            "summary".to_owned(),
            "it crashes".to_owned(),
        )])),
        original_payload: Some(r#"{"status":"firing"}"#.to_owned()),
    }
}

/// The status code of a failed API call.
fn api_code(error: kube::Error) -> (u16, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.message),
        other => panic!("expected an API error status, got {other:?}"),
    }
}

/// A merge patch of `status.deduplication`, guarded by `resource_version`.
fn count_patch(resource_version: &str, count: i64) -> Patch<serde_json::Value> {
    Patch::Merge(json!({
        "metadata": {"resourceVersion": resource_version},
        "status": {"deduplication": {
            "occurrenceCount": count,
            "firstSeenAt": "2027-01-15T08:00:00Z",
            "lastSeenAt": "2027-01-15T08:00:00Z",
        }},
    }))
}

fn count_of(rr: &RemediationRequest) -> Option<i64> {
    Some(rr.status.as_ref()?.deduplication.as_ref()?.occurrence_count)
}

#[tokio::test]
async fn a_created_rr_round_trips_its_whole_spec() {
    let api = rr_api("create").await;
    let created = api
        .create(
            &PostParams::default(),
            &RemediationRequest::new("rr-create", spec("web-0")),
        )
        .await
        .unwrap();
    // A field missing from the schema would be pruned silently; equality proves none is.
    assert_eq!(created.spec, spec("web-0"));
    assert_eq!(api.get("rr-create").await.unwrap().spec, spec("web-0"));
}

#[tokio::test]
async fn status_patch_with_the_current_resource_version_succeeds_and_a_stale_one_conflicts() {
    let api = rr_api("status-patch").await;
    let created = api
        .create(
            &PostParams::default(),
            &RemediationRequest::new("rr-patch", spec("web-0")),
        )
        .await
        .unwrap();
    let version = created.metadata.resource_version.unwrap();

    let patched = api
        .patch_status(
            "rr-patch",
            &PatchParams::default(),
            &count_patch(&version, 2),
        )
        .await
        .unwrap();
    assert_eq!(count_of(&patched), Some(2));
    assert_ne!(
        patched.metadata.resource_version.as_deref(),
        Some(version.as_str())
    );

    let stale = api
        .patch_status(
            "rr-patch",
            &PatchParams::default(),
            &count_patch(&version, 3),
        )
        .await
        .unwrap_err();
    let (code, message) = api_code(stale);
    assert_eq!(code, 409, "{message}");
    assert_eq!(
        count_of(&api.get("rr-patch").await.unwrap()),
        Some(2),
        "the stale patch must not land"
    );
}

#[tokio::test]
async fn a_field_selector_on_the_fingerprint_returns_only_matching_rrs() {
    let api = rr_api("field-selector").await;
    // Two RRs share a fingerprint (an old one and its successor), a third is another problem.
    for (name, pod) in [("rr-a1", "web-0"), ("rr-a2", "web-0"), ("rr-b", "web-1")] {
        api.create(
            &PostParams::default(),
            &RemediationRequest::new(name, spec(pod)),
        )
        .await
        .unwrap();
    }
    let fingerprint = spec("web-0").signal_fingerprint;
    let selected = api
        .list(&ListParams::default().fields(&format!("spec.signalFingerprint={fingerprint}")))
        .await
        .unwrap();
    let names: BTreeSet<String> = selected
        .items
        .into_iter()
        .filter_map(|rr| rr.metadata.name)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["rr-a1".to_owned(), "rr-a2".to_owned()])
    );
}

#[tokio::test]
async fn a_watch_sees_the_create_and_the_status_patch() {
    let api = rr_api("watch").await;
    let from = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let events = api
        .watch(&WatchParams::default().timeout(30), &from)
        .await
        .unwrap();

    let created = api
        .create(
            &PostParams::default(),
            &RemediationRequest::new("rr-watch", spec("web-0")),
        )
        .await
        .unwrap();
    let version = created.metadata.resource_version.unwrap();
    api.patch_status(
        "rr-watch",
        &PatchParams::default(),
        &count_patch(&version, 2),
    )
    .await
    .unwrap();

    let seen: Vec<(String, Option<i64>)> = tokio::time::timeout(
        WATCH_DEADLINE,
        events
            .try_filter_map(|event| async move {
                Ok(match event {
                    WatchEvent::Added(rr) => Some(("ADDED".to_owned(), count_of(&rr))),
                    WatchEvent::Modified(rr) => Some(("MODIFIED".to_owned(), count_of(&rr))),
                    // Bookmarks only carry a resourceVersion.
                    WatchEvent::Bookmark(_) => None,
                    other => Some((format!("{other:?}"), None)),
                })
            })
            .take(2)
            .try_collect(),
    )
    .await
    .expect("the watch delivered fewer than two events in time")
    .unwrap();
    assert_eq!(
        seen,
        [("ADDED".to_owned(), None), ("MODIFIED".to_owned(), Some(2))]
    );
}

#[tokio::test]
async fn a_malformed_fingerprint_is_rejected_with_422() {
    let api = rr_api("invalid").await;
    let mut invalid = spec("web-0");
    invalid.signal_fingerprint = "NOT-A-SHA256".to_owned();
    let error = api
        .create(
            &PostParams::default(),
            &RemediationRequest::new("rr-invalid", invalid),
        )
        .await
        .unwrap_err();
    let (code, message) = api_code(error);
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("signalFingerprint"), "{message}");
}

#[tokio::test]
async fn a_spec_change_is_rejected() {
    let api = rr_api("immutable").await;
    api.create(
        &PostParams::default(),
        &RemediationRequest::new("rr-immutable", spec("web-0")),
    )
    .await
    .unwrap();
    let change = Patch::Merge(json!({"spec": {"severity": "warning"}}));
    let error = api
        .patch("rr-immutable", &PatchParams::default(), &change)
        .await
        .unwrap_err();
    let (code, message) = api_code(error);
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("spec is immutable"), "{message}");
    assert!(
        message.contains("remediationrequests.kubernaut.ai-spec-immutable"),
        "refused by the admission policy (deploy/policy/spec-immutable.yaml): {message}"
    );
    // A change that leaves the spec as it was (a label) is still allowed.
    let label = Patch::Merge(json!({"metadata": {"labels": {"team": "shop"}}}));
    api.patch("rr-immutable", &PatchParams::default(), &label)
        .await
        .unwrap();
    assert_eq!(
        api.get("rr-immutable").await.unwrap().spec.severity,
        "critical"
    );
}

#[tokio::test]
async fn the_unprivileged_user_is_forbidden_to_create_rrs() {
    let control_plane = gateway_envtest::shared().await.unwrap();
    let namespace = control_plane.create_namespace("rbac").await.unwrap();
    let api = Api::<RemediationRequest>::namespaced(
        control_plane.unprivileged_client().unwrap(),
        &namespace,
    );
    let error = api
        .create(
            &PostParams::default(),
            &RemediationRequest::new("rr-forbidden", spec("web-0")),
        )
        .await
        .unwrap_err();
    let (code, message) = api_code(error);
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains(gateway_envtest::UNPRIVILEGED_USER),
        "{message}"
    );
}
