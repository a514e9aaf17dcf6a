//! Managed fields (`kubernetes.managed_fields`, README "Cheaper writes"), against the real
//! control plane and one gateway process per test: an RR that repeats has its
//! `metadata.managedFields` cleared once, after which kube-apiserver tracks none of its status
//! writes and the count goes on without a conflict; `keep` leaves them as Kubernetes keeps
//! them; an RR that someone server-side applies to keeps them whatever the setting; and an
//! identity without `patch` on RRs turns clearing off after one refusal, counting on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use gateway::k8s::RemediationRequest;
use kube::Api;
use kube::api::{Patch, PatchParams};
use support::{
    Gateway, Stack, alert, count_of, eventually, pod_fingerprint, restricted_identity, rrs_of, rule,
};

/// `(manager, operation, subresource)` of each managed-fields entry.
fn managed(rr: &RemediationRequest) -> Vec<(String, String, String)> {
    let entries = rr.metadata.managed_fields.as_deref().unwrap_or_default();
    entries
        .iter()
        .map(|e| {
            let field = |f: &Option<String>| f.clone().unwrap_or_default();
            (
                field(&e.manager),
                field(&e.operation),
                field(&e.subresource),
            )
        })
        .collect()
}

/// Posts `n` distinct deliveries about `pod` to gateway 0 and checks each was counted in turn,
/// starting after `before`.
async fn send(stack: &Stack, pod: &str, before: i64, n: i64) {
    for count in before + 1..=before + n {
        let body = alert("DiskFull", &stack.ns, pod);
        let (status, answer) = stack.http.post(&stack.prometheus_url(0), &body).await;
        let expected = if count == 1 { 201 } else { 202 };
        assert_eq!(status, expected, "{answer}");
        if count > 1 {
            assert_eq!(answer["metadata"]["count"], count, "{answer}");
        }
    }
}

/// The only RR about `pod`.
async fn the_rr(stack: &Stack, pod: &str) -> RemediationRequest {
    let mut rrs = rrs_of(&stack.client, &stack.ns, &pod_fingerprint(&stack.ns, pod)).await;
    assert_eq!(rrs.len(), 1);
    rrs.remove(0)
}

/// `gateway_k8s_requests_total` of gateway 0 for one verb and outcome.
async fn calls(stack: &Stack, verb: &str, outcome: &str) -> f64 {
    let labels = [("verb", verb), ("outcome", outcome)];
    let name = "gateway_k8s_requests_total";
    stack.gateways[0].metric(&stack.http, name, &labels).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rr_that_repeats_has_its_managed_fields_cleared_once() {
    let stack = Stack::shared("managed-strip", &[&[]]).await;
    send(&stack, "api-0", 0, 2).await;
    let before = eventually(Duration::from_secs(10), "count 2 stored", || async {
        let rr = the_rr(&stack, "api-0").await;
        (count_of(&rr) == 2).then_some(rr)
    })
    .await;
    let tracked = managed(&before);
    assert!(
        tracked.iter().any(|(_, _, sub)| sub.is_empty())
            && tracked.iter().any(|(_, _, sub)| sub == "status"),
        "under the clearing count, Kubernetes tracks the create and the status writes: {tracked:?}"
    );
    assert_eq!(calls(&stack, "patch_metadata", "success").await, 0.0);

    // The third occurrence: answered, then the managed fields go.
    send(&stack, "api-0", 2, 1).await;
    let cleared = eventually(
        Duration::from_secs(10),
        "managed fields cleared",
        || async {
            let rr = the_rr(&stack, "api-0").await;
            managed(&rr).is_empty().then_some(rr)
        },
    )
    .await;
    assert_eq!(count_of(&cleared), 3);
    assert_eq!(
        cleared.spec, before.spec,
        "the clearing leaves the spec alone"
    );
    assert_eq!(calls(&stack, "patch_metadata", "success").await, 1.0);

    // Later counts are not tracked again, nor cleared again, and the index learnt the
    // clearing's resourceVersion: no conflict, no GET.
    send(&stack, "api-0", 3, 3).await;
    let after = the_rr(&stack, "api-0").await;
    assert_eq!(count_of(&after), 6);
    assert_eq!(managed(&after), Vec::new());
    assert_eq!(calls(&stack, "patch_metadata", "success").await, 1.0);
    assert_eq!(calls(&stack, "patch", "conflict").await, 0.0);
    assert_eq!(calls(&stack, "get", "success").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_leaves_the_managed_fields_as_kubernetes_keeps_them() {
    let stack = Stack::shared("managed-keep", &[&["--managed-fields", "keep"]]).await;
    send(&stack, "api-0", 0, 5).await;
    let rr = the_rr(&stack, "api-0").await;
    assert_eq!(count_of(&rr), 5);
    let tracked = managed(&rr);
    assert!(
        tracked.iter().any(|(_, _, sub)| sub == "status"),
        "{tracked:?}"
    );
    assert_eq!(calls(&stack, "patch_metadata", "success").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rr_someone_applies_to_keeps_its_managed_fields() {
    let stack = Stack::shared("managed-applied", &[&[]]).await;
    send(&stack, "api-0", 0, 1).await;
    let name = the_rr(&stack, "api-0").await.metadata.name.unwrap();
    // An orchestrator that owns the phase through server-side apply.
    let rrs: Api<RemediationRequest> = Api::namespaced(stack.client.clone(), &stack.ns);
    let phase = serde_json::json!({
        "apiVersion": "kubernaut.ai/v1alpha1",
        "kind": "RemediationRequest",
        "status": { "overallPhase": "Processing" }
    });
    let params = PatchParams::apply("orchestrator");
    rrs.patch_status(&name, &params, &Patch::Apply(&phase))
        .await
        .unwrap();

    send(&stack, "api-0", 1, 4).await;
    let rr = the_rr(&stack, "api-0").await;
    assert_eq!(count_of(&rr), 5);
    let tracked = managed(&rr);
    assert!(
        tracked.contains(&("orchestrator".into(), "Apply".into(), "status".into())),
        "the applier's ownership survives: {tracked:?}"
    );
    assert_eq!(calls(&stack, "patch_metadata", "success").await, 0.0);
}

const GROUP: &str = "kubernaut.ai";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_clearing_turns_clearing_off_and_counting_goes_on() {
    let plane = gateway_envtest::shared().await.unwrap();
    let mut stack = Stack::open(plane, "managed-refused", &[]).await;
    // The gateway's RR grants as they were before clearing existed: no patch of the RR itself.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let rules = vec![
        rule(
            GROUP,
            "remediationrequests",
            &["get", "list", "watch", "create"],
        ),
        rule(GROUP, "remediationrequests/status", &["patch"]),
    ];
    restricted_identity(
        plane,
        &stack.client,
        &stack.ns,
        "no-rr-patch",
        rules,
        &kubeconfig,
    )
    .await;
    // Only the RR grants: no sender reviews, no owner cache, no ring.
    let args = [
        "--auth-mode",
        "none",
        "--owners-resolve",
        "false",
        "--cluster-enabled",
        "false",
    ];
    let gateway = Gateway::start(&kubeconfig, &stack.ns, &args);
    gateway.ready(&stack.http).await;
    stack.gateways.push(gateway);

    send(&stack, "api-0", 0, 6).await;
    let rr = the_rr(&stack, "api-0").await;
    assert_eq!(count_of(&rr), 6);
    assert!(!managed(&rr).is_empty(), "nothing cleared them");
    assert_eq!(
        calls(&stack, "patch_metadata", "invalid").await,
        1.0,
        "asked once"
    );
    assert_eq!(calls(&stack, "patch_metadata", "success").await, 0.0);
    let warned = stack.gateways[0].logs_with("refused to clear");
    assert_eq!(warned.len(), 1, "{warned:?}");
}
