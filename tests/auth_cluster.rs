//! Sender authentication against a real kube-apiserver: gateway processes run as a
//! ServiceAccount with the shipped RBAC (deploy/rbac.yaml: the Role on RRs, the reviewer
//! ClusterRole), senders carry ServiceAccount tokens minted with the TokenRequest API, and the
//! apiserver's audit log counts the reviews the gateway makes.
//!
//! - A sender bound to `gateway-signal-source` gets 201 then 202s; one without the binding
//!   403; no token or a garbage token 401. Twenty requests with one token cost one TokenReview
//!   and one SubjectAccessReview. The RR names its creator and where it came from.
//! - When the reviews cannot be made (the gateway's own RBAC for them revoked, or the
//!   apiserver paused), a token not yet cached gets 503 — never 401/403, which Alertmanager
//!   would drop — while a cached one still gets its 2xx.
//! - `auth.mode: none` lets anyone send.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use gateway_envtest::ControlPlane;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde::Deserialize as _;
use support::{Gateway, Http, alert, eventually, pod_fingerprint, rrs_of};

/// One control plane for this binary; its tests take turns (one pauses the apiserver).
async fn plane() -> &'static ControlPlane {
    static PLANE: tokio::sync::OnceCell<ControlPlane> = tokio::sync::OnceCell::const_new();
    PLANE.get_or_init(support::own_plane).await
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The objects of deploy/rbac.yaml, by kind and name.
fn shipped<T: serde::de::DeserializeOwned>(kind: &str, name: &str) -> T {
    let path = gateway_envtest::workspace_root().join("deploy/rbac.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| serde_yaml::Value::deserialize(document).unwrap())
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .map(|o| serde_yaml::from_value(o).unwrap())
        .unwrap_or_else(|| panic!("deploy/rbac.yaml has no {kind} {name}"))
}

fn created<T>(result: Result<T, kube::Error>) {
    match result {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => panic!("{error}"),
    }
}

/// A gateway identity in `ns` with the shipped RBAC: the ServiceAccount `gateway`, the Role and
/// RoleBinding on RRs, and the reviewer ClusterRole bound by a ClusterRoleBinding of this
/// namespace (returned, for revoking). Returns the kubeconfig path and the binding's name.
async fn gateway_identity(
    plane: &ControlPlane,
    ns: &str,
    dir: &std::path::Path,
) -> (std::path::PathBuf, String) {
    let client = plane.direct_client().unwrap();
    let token = plane
        .service_account_token(ns, "gateway", Duration::from_secs(3600))
        .await
        .unwrap();
    let mut role: Role = shipped("Role", "gateway");
    role.metadata.namespace = Some(ns.to_owned());
    created(
        Api::<Role>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &role)
            .await,
    );
    let mut binding: RoleBinding = shipped("RoleBinding", "gateway");
    binding.metadata.namespace = Some(ns.to_owned());
    binding.subjects.as_mut().unwrap()[0].namespace = Some(ns.to_owned());
    created(
        Api::<RoleBinding>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &binding)
            .await,
    );
    let reviewer: ClusterRole = shipped("ClusterRole", "gateway-auth-reviewer");
    created(
        Api::<ClusterRole>::all(client.clone())
            .create(&PostParams::default(), &reviewer)
            .await,
    );
    let mut reviews: ClusterRoleBinding = shipped("ClusterRoleBinding", "gateway-auth-reviewer");
    let name = format!("gateway-auth-reviewer-{ns}");
    reviews.metadata.name = Some(name.clone());
    reviews.subjects.as_mut().unwrap()[0].namespace = Some(ns.to_owned());
    created(
        Api::<ClusterRoleBinding>::all(client.clone())
            .create(&PostParams::default(), &reviews)
            .await,
    );
    wait_may_review(&client, ns, true).await;
    let kubeconfig = dir.join("kubeconfig-gateway");
    support::kubeconfig_for_token(plane, &token, ns, &kubeconfig);
    (kubeconfig, name)
}

/// Waits until RBAC lets (or no longer lets) the gateway of `ns` create TokenReviews.
async fn wait_may_review(client: &kube::Client, ns: &str, allowed: bool) {
    let review: SubjectAccessReview = serde_json::from_value(serde_json::json!({"spec": {
        "user": format!("system:serviceaccount:{ns}:gateway"),
        "groups": ["system:serviceaccounts", "system:authenticated"],
        "resourceAttributes": {"verb": "create", "group": "authentication.k8s.io", "resource": "tokenreviews"},
    }}))
    .unwrap();
    eventually(
        Duration::from_secs(30),
        "the reviewer binding in effect",
        || async {
            let answer = Api::<SubjectAccessReview>::all(client.clone())
                .create(&PostParams::default(), &review)
                .await
                .ok()?;
            (answer.status?.allowed == allowed).then_some(())
        },
    )
    .await;
}

/// Reviews of `resource` the gateway of `ns` has made so far, by the audit log.
fn reviews_by_gateway(plane: &ControlPlane, ns: &str, resource: &str) -> usize {
    let user = format!("system:serviceaccount:{ns}:gateway");
    plane
        .audit_events(resource)
        .unwrap()
        .iter()
        .filter(|event| event["user"]["username"] == user.as_str())
        .count()
}

async fn ready_gateway(kubeconfig: &std::path::Path, ns: &str, extra: &[&str]) -> Gateway {
    let gateway = Gateway::start(kubeconfig, ns, extra);
    gateway.ready(&Http::new()).await;
    gateway
}

fn url(gateway: &Gateway) -> String {
    format!("{}/api/v1/signals/prometheus", gateway.api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_are_authenticated_and_authorised_with_real_tokens() {
    let _turn = SERIAL.lock().await;
    let plane = plane().await;
    let dir = tempfile::tempdir().unwrap();
    let ns = plane.create_namespace("auth").await.unwrap();
    plane.warm_up_rr_writes(&ns).await.unwrap();
    let (kubeconfig, _) = gateway_identity(plane, &ns, dir.path()).await;
    let sender = plane
        .signal_sender_token(&ns, "alertmanager")
        .await
        .unwrap();
    let stranger = plane
        .service_account_token(&ns, "stranger", Duration::from_secs(3600))
        .await
        .unwrap();
    let gateway = ready_gateway(&kubeconfig, &ns, &[]).await;

    let body = alert("Authenticated", &ns, "api-0");
    let authorised = Http::authorized(&sender);
    for expected in 1..=20 {
        // A delivery of its own each time: a resent body would not count again.
        let body = if expected == 1 {
            body.clone()
        } else {
            alert("Authenticated", &ns, "api-0")
        };
        let (status, answer) = authorised.post(&url(&gateway), &body).await;
        let want = if expected == 1 { 201 } else { 202 };
        assert_eq!(status, want, "{answer}");
        if expected > 1 {
            assert_eq!(answer["metadata"]["count"], expected, "{answer}");
        }
    }
    // Twenty requests, one token: one review of each kind.
    assert_eq!(reviews_by_gateway(plane, &ns, "tokenreviews"), 1);
    assert_eq!(reviews_by_gateway(plane, &ns, "subjectaccessreviews"), 1);
    let hits = gateway
        .metric(
            &Http::new(),
            "gateway_auth_decisions_total",
            &[("outcome", "allowed"), ("cache", "hit")],
        )
        .await;
    assert_eq!(hits, 19.0);

    for _ in 0..3 {
        let (status, answer) = Http::authorized(&stranger)
            .post(&url(&gateway), &body)
            .await;
        assert_eq!(status, 403, "{answer}");
        assert_eq!(answer["detail"], "this identity may not send signals");
        let (status, answer) = Http::new().post(&url(&gateway), &body).await;
        assert_eq!(status, 401, "{answer}");
        let (status, answer) = Http::authorized("not.a.token")
            .post(&url(&gateway), &body)
            .await;
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["detail"], "the bearer token is not valid");
    }
    // Refusals are cached too: one more TokenReview each for the stranger and the garbage
    // token, one more SubjectAccessReview for the stranger.
    assert_eq!(reviews_by_gateway(plane, &ns, "tokenreviews"), 3);
    assert_eq!(reviews_by_gateway(plane, &ns, "subjectaccessreviews"), 2);

    // The RR says who created it, and from where.
    let rr = rrs_of(
        &plane.client().unwrap(),
        &ns,
        &pod_fingerprint(&ns, "api-0"),
    )
    .await
    .remove(0);
    let annotations = rr.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations
            .get("kubernaut.ai/created-by")
            .map(String::as_str),
        Some(format!("system:serviceaccount:{ns}:alertmanager").as_str())
    );
    assert_eq!(
        annotations
            .get("kubernaut.ai/created-from")
            .map(String::as_str),
        Some("127.0.0.1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_that_cannot_be_made_are_503_while_cached_senders_go_on() {
    let _turn = SERIAL.lock().await;
    let plane = plane().await;
    let dir = tempfile::tempdir().unwrap();
    let ns = plane.create_namespace("auth-outage").await.unwrap();
    plane.warm_up_rr_writes(&ns).await.unwrap();
    let (kubeconfig, binding) = gateway_identity(plane, &ns, dir.path()).await;
    let cached = Http::authorized(&plane.signal_sender_token(&ns, "cached").await.unwrap());
    let fresh = Http::authorized(&plane.signal_sender_token(&ns, "fresh").await.unwrap());
    let gateway = ready_gateway(&kubeconfig, &ns, &[]).await;
    let (status, answer) = cached
        .post(&url(&gateway), &alert("Outage", &ns, "cached-0"))
        .await;
    assert_eq!(status, 201, "{answer}");

    // The gateway may no longer make reviews: its ClusterRoleBinding is gone.
    let client = plane.direct_client().unwrap();
    Api::<ClusterRoleBinding>::all(client.clone())
        .delete(&binding, &DeleteParams::default())
        .await
        .unwrap();
    wait_may_review(&client, &ns, false).await;
    let (status, answer) = cached
        .post(&url(&gateway), &alert("Outage", &ns, "cached-0"))
        .await;
    assert_eq!(
        (status, answer["metadata"]["count"].as_i64()),
        (202, Some(2)),
        "{answer}"
    );
    let (status, answer) = fresh
        .post(&url(&gateway), &alert("Outage", &ns, "fresh-0"))
        .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["detail"], "Authentication unavailable; retry later");
    // Not cached as a refusal: once the binding is back, the same token gets through.
    let (kubeconfig_again, _) = gateway_identity(plane, &ns, dir.path()).await;
    assert_eq!(kubeconfig_again, kubeconfig);
    let (status, answer) = fresh
        .post(&url(&gateway), &alert("Outage", &ns, "fresh-0"))
        .await;
    assert_eq!(status, 201, "{answer}");

    // The apiserver itself stops answering: a new token gets 503 within the call deadline.
    let paused = Http::authorized(&plane.signal_sender_token(&ns, "paused").await.unwrap());
    plane.pause_apiserver().await.unwrap();
    let outcome = paused
        .try_post(
            &url(&gateway),
            &alert("Outage", &ns, "paused-0"),
            Duration::from_secs(10),
        )
        .await;
    plane.resume_apiserver().unwrap();
    let (status, _, answer) = outcome.unwrap();
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["detail"], "Authentication unavailable; retry later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_mode_none_lets_anyone_send() {
    let _turn = SERIAL.lock().await;
    let plane = plane().await;
    let dir = tempfile::tempdir().unwrap();
    let ns = plane.create_namespace("auth-none").await.unwrap();
    plane.warm_up_rr_writes(&ns).await.unwrap();
    let (kubeconfig, _) = gateway_identity(plane, &ns, dir.path()).await;
    let gateway = ready_gateway(&kubeconfig, &ns, &["--auth-mode", "none"]).await;
    let (status, answer) = Http::new()
        .post(&url(&gateway), &alert("Anyone", &ns, "api-0"))
        .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(reviews_by_gateway(plane, &ns, "tokenreviews"), 0);
    let rr = rrs_of(
        &plane.client().unwrap(),
        &ns,
        &pod_fingerprint(&ns, "api-0"),
    )
    .await
    .remove(0);
    let annotations = rr.metadata.annotations.unwrap_or_default();
    assert!(!annotations.contains_key("kubernaut.ai/created-by"));
}
