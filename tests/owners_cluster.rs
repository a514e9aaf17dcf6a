//! Owner-chain resolution and the scope rule against the real control plane. Workloads are
//! created through the API with their `ownerReferences` set by hand (no controller runs on
//! the test plane, so nothing else creates or deletes them): Deployment → ReplicaSet → Pods,
//! StatefulSet → Pod, CronJob → Job → Pod, and an orphan Pod. Gateway processes watch them
//! through their metadata cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use gateway::fingerprint::Fingerprint;
use gateway::k8s::types::LABELLED_TARGET_ANNOTATION;
use gateway_envtest::ControlPlane;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use serde_json::json;
use support::{Gateway, Http, alert, count_of, eventually, rrs_of};

/// Creates `object` in `ns` and returns (uid, name) for its dependents' ownerReferences.
async fn create<K>(client: &kube::Client, ns: &str, object: serde_json::Value) -> K
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object).unwrap();
    Api::<K>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &object)
        .await
        .unwrap()
}

/// An `ownerReferences` list naming `owner` as controller.
fn controlled_by<K: Resource<DynamicType = ()>>(owner: &K) -> serde_json::Value {
    let meta = owner.meta();
    json!([{
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "name": meta.name,
        "uid": meta.uid,
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

fn pod_template() -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "registry.example/c:1"}]},
    })
}

fn pod(name: &str, owners: serde_json::Value, labels: serde_json::Value) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "ownerReferences": owners, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "registry.example/c:1"}]},
    })
}

/// The workloads of one namespace: Deployment `api` (labels `deployment_labels`) → ReplicaSet
/// `api-7d9f8` → Pods `api-7d9f8-aaaaa`, `api-7d9f8-bbbbb`; StatefulSet `db` → Pod `db-0`;
/// CronJob `report` → Job `report-29000` → Pod `report-29000-q8v2x`; orphan Pod `lonely`.
async fn workloads(client: &kube::Client, ns: &str, deployment_labels: serde_json::Value) {
    let deployment: Deployment = create(
        client,
        ns,
        json!({
            "metadata": {"name": "api", "labels": deployment_labels},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": pod_template()},
        }),
    )
    .await;
    let replica_set: ReplicaSet = create(
        client,
        ns,
        json!({
            "metadata": {"name": "api-7d9f8", "ownerReferences": controlled_by(&deployment)},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": pod_template()},
        }),
    )
    .await;
    for name in ["api-7d9f8-aaaaa", "api-7d9f8-bbbbb"] {
        let _: Pod = create(
            client,
            ns,
            pod(name, controlled_by(&replica_set), json!({})),
        )
        .await;
    }
    let stateful_set: StatefulSet = create(
        client,
        ns,
        json!({
            "metadata": {"name": "db"},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": pod_template()},
        }),
    )
    .await;
    let _: Pod = create(
        client,
        ns,
        pod("db-0", controlled_by(&stateful_set), json!({})),
    )
    .await;
    let cron_job: CronJob = create(
        client,
        ns,
        json!({
            "metadata": {"name": "report"},
            "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "registry.example/c:1"}]}
            }}}},
        }),
    )
    .await;
    let job: Job = create(
        client,
        ns,
        json!({
            "metadata": {"name": "report-29000", "ownerReferences": controlled_by(&cron_job)},
            "spec": {"template": {
                "metadata": {"labels": {"batch.kubernetes.io/controller-uid": "x"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "registry.example/c:1"}]}
            }, "manualSelector": true, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "x"}}},
        }),
    )
    .await;
    let _: Pod = create(
        client,
        ns,
        pod("report-29000-q8v2x", controlled_by(&job), json!({})),
    )
    .await;
    let _: Pod = create(client, ns, pod("lonely", json!([]), json!({}))).await;
}

fn fp(ns: &str, kind: &str, name: &str) -> String {
    Fingerprint::of(None, ns, kind, name).to_string()
}

/// Posts an alert about `pod` in `ns` to `gateway`; returns status and body.
async fn send(http: &Http, gateway: &Gateway, ns: &str, pod: &str) -> (u16, serde_json::Value) {
    let url = format!("{}/api/v1/signals/prometheus", gateway.api);
    http.post(&url, &alert("HighErrorRate", ns, pod)).await
}

async fn plane_and_namespace(prefix: &str) -> (&'static ControlPlane, kube::Client, String) {
    let plane = gateway_envtest::shared().await.unwrap();
    let ns = plane.create_namespace(prefix).await.unwrap();
    plane.warm_up_rr_writes(&ns).await.unwrap();
    (plane, plane.client().unwrap(), ns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_resolve_to_their_top_controller_and_siblings_share_one_rr() {
    let (plane, client, ns) = plane_and_namespace("owners").await;
    workloads(&client, &ns, json!({})).await;
    let http = Http::authorized(&support::sender_token(plane, &ns).await);
    let gateway = Gateway::start(plane.kubeconfig_path(), &ns, &[]);
    gateway.ready(&http).await;

    // Two sibling pods of one Deployment: one RR, count 2, the Deployment as its target.
    let (status, first) = send(&http, &gateway, &ns, "api-7d9f8-aaaaa").await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["fingerprint"], fp(&ns, "Deployment", "api"));
    let (status, second) = send(&http, &gateway, &ns, "api-7d9f8-bbbbb").await;
    assert_eq!(status, 202, "{second}");
    assert_eq!(second["metadata"]["count"], 2);
    assert_eq!(
        second["remediationRequestName"],
        first["remediationRequestName"]
    );
    let rrs = rrs_of(&client, &ns, &fp(&ns, "Deployment", "api")).await;
    assert_eq!(rrs.len(), 1);
    let rr = &rrs[0];
    let target = &rr.spec.target_resource;
    assert_eq!(
        (
            target.kind.as_str(),
            target.name.as_str(),
            target.namespace.as_deref(),
            target.api_version.as_deref()
        ),
        ("Deployment", "api", Some(ns.as_str()), Some("apps/v1"))
    );
    let annotations = rr.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get(LABELLED_TARGET_ANNOTATION)
            .map(String::as_str),
        Some("Pod/api-7d9f8-aaaaa")
    );
    let rr = eventually(Duration::from_secs(10), "count 2 on the RR", || async {
        let rr = rrs_of(&client, &ns, &fp(&ns, "Deployment", "api"))
            .await
            .pop()?;
        (count_of(&rr) == 2).then_some(rr)
    })
    .await;
    assert_eq!(count_of(&rr), 2);

    // The other chains, and an orphan, which is its own top.
    for (pod, kind, name) in [
        ("db-0", "StatefulSet", "db"),
        ("report-29000-q8v2x", "CronJob", "report"),
        ("lonely", "Pod", "lonely"),
    ] {
        let (status, body) = send(&http, &gateway, &ns, pod).await;
        assert_eq!(status, 201, "{pod}: {body}");
        assert_eq!(body["fingerprint"], fp(&ns, kind, name), "{pod}");
    }
    let lonely = rrs_of(&client, &ns, &fp(&ns, "Pod", "lonely")).await;
    assert!(
        !lonely[0]
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(LABELLED_TARGET_ANNOTATION)),
        "a target taken as labelled has no labelled-target annotation"
    );

    // A pod created after the first list reaches the cache through the watch.
    let objects = gateway
        .metric(&http, "gateway_owner_cache_objects", &[])
        .await;
    let replica_set = Api::<ReplicaSet>::namespaced(client.clone(), &ns)
        .get("api-7d9f8")
        .await
        .unwrap();
    let _: Pod = create(
        &client,
        &ns,
        pod("api-7d9f8-ccccc", controlled_by(&replica_set), json!({})),
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the new pod in the cache",
        || async {
            let now = gateway
                .metric(&http, "gateway_owner_cache_objects", &[])
                .await;
            (now > objects).then_some(())
        },
    )
    .await;
    let (status, third) = send(&http, &gateway, &ns, "api-7d9f8-ccccc").await;
    assert_eq!(
        (status, &third["metadata"]["count"]),
        (202, &json!(3)),
        "{third}"
    );

    // A kubelet Event about a sibling pod resolves the same way.
    let now = jiff::Timestamp::now().to_string();
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "api-7d9f8-aaaaa.17f3a1b2c3d4e5f6", "namespace": ns},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": "api-7d9f8-aaaaa", "apiVersion": "v1"},
        "reason": "BackOff", "message": "Back-off restarting failed container",
        "firstTimestamp": now, "lastTimestamp": now, "count": 1, "type": "Warning",
    });
    let url = format!("{}/api/v1/signals/kubernetes-event", gateway.api);
    let (status, body) = http.post(&url, &event).await;
    assert_eq!(
        (status, &body["metadata"]["count"]),
        (202, &json!(4)),
        "{body}"
    );
    assert_eq!(body["fingerprint"], fp(&ns, "Deployment", "api"));

    // A pod that does not exist keeps its labelled resource, and the fallback is counted.
    let fallbacks = |reason: &'static str| {
        let (gateway, http) = (&gateway, &http);
        async move {
            gateway
                .metric(http, "gateway_owner_fallbacks_total", &[("reason", reason)])
                .await
        }
    };
    assert_eq!(fallbacks("not_found").await, 0.0);
    let (status, body) = send(&http, &gateway, &ns, "api-7d9f8-deleted").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["fingerprint"], fp(&ns, "Pod", "api-7d9f8-deleted"));
    assert_eq!(fallbacks("not_found").await, 1.0);
    assert_eq!(
        gateway
            .metric(
                &http,
                "gateway_owner_resolutions_total",
                &[("result", "controller")]
            )
            .await,
        6.0,
        "aaaaa, bbbbb, db-0, report pod, ccccc, the Event's aaaaa"
    );

    // Resolution adds no Kubernetes call: the gateway's calls are the RR writes alone (one
    // create per new RR, one status patch per duplicate, plus the count-1 initialisations and
    // the managed-fields clearings).
    let (_, text) = http
        .get(&format!("{}/metrics", gateway.metrics))
        .await
        .unwrap();
    let calls = |labels: &[(&str, &str)]| {
        support::metric_value(&text, "gateway_k8s_requests_total", labels)
    };
    let (creates, patches) = (calls(&[("verb", "create")]), calls(&[("verb", "patch")]));
    // An RR that reached count 3 had its managed fields cleared: an RR write too.
    let clearings = calls(&[("verb", "patch_metadata")]);
    // Sender authentication reviewed the one token once.
    let reviews = calls(&[("verb", "token_review")]) + calls(&[("verb", "access_review")]);
    assert_eq!(reviews, 2.0);
    let calls = calls(&[]);
    assert_eq!(creates, 5.0);
    assert_eq!(
        calls,
        creates + patches + clearings + reviews,
        "only RR writes (creates, status patches, clearings) and the reviews of the sender"
    );

    // Switched off, the same pod is its own target.
    let off = Gateway::start(plane.kubeconfig_path(), &ns, &["--owners-resolve", "false"]);
    off.ready(&http).await;
    let (status, body) = send(&http, &off, &ns, "db-0").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["fingerprint"], fp(&ns, "Pod", "db-0"));
}

/// Grants `user` `rules` in `ns`.
async fn grant(client: &kube::Client, ns: &str, user: &str, rules: serde_json::Value) {
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "gateway-test"}, "rules": rules,
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "gateway-test"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gateway-test"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

/// Lets `user` make the reviews of sender authentication: the shipped ClusterRole
/// `gateway-auth-reviewer` (deploy/rbac.yaml), bound to it cluster-wide.
async fn may_review(client: &kube::Client, user: &str) {
    use serde::Deserialize as _;
    let text = std::fs::read_to_string(gateway_envtest::workspace_root().join("deploy/rbac.yaml"))
        .unwrap();
    let role: ClusterRole = serde_yaml::Deserializer::from_str(&text)
        .map(|document| serde_yaml::Value::deserialize(document).unwrap())
        .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "gateway-auth-reviewer")
        .map(|o| serde_yaml::from_value(o).unwrap())
        .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{user}-auth-reviews")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gateway-auth-reviewer"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .unwrap();
    for result in [
        Api::<ClusterRole>::all(client.clone())
            .create(&PostParams::default(), &role)
            .await
            .map(drop),
        Api::<ClusterRoleBinding>::all(client.clone())
            .create(&PostParams::default(), &binding)
            .await
            .map(drop),
    ] {
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => panic!("{error}"),
        }
    }
}

fn workload_rules() -> serde_json::Value {
    json!([
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["replicasets", "deployments", "statefulsets", "daemonsets"], "verbs": ["list", "watch"]},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["list", "watch"]},
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_the_gateway_may_not_watch_falls_back_and_says_so_once() {
    let (plane, client, home) = plane_and_namespace("owners-rbac").await;
    let allowed = plane.create_namespace("owners-allowed").await.unwrap();
    let denied = plane.create_namespace("owners-denied").await.unwrap();
    let unlisted = plane.create_namespace("owners-unlisted").await.unwrap();
    for ns in [&allowed, &denied, &unlisted] {
        workloads(&client, ns, json!({})).await;
    }
    // The unprivileged user may write RRs at home and watch workloads in `allowed` only.
    let user = gateway_envtest::UNPRIVILEGED_USER;
    grant(
        &client,
        &home,
        user,
        json!([
            {"apiGroups": ["kubernaut.ai"], "resources": ["remediationrequests"], "verbs": ["get", "list", "watch", "create"]},
            {"apiGroups": ["kubernaut.ai"], "resources": ["remediationrequests/status"], "verbs": ["patch"]},
        ]),
    )
    .await;
    grant(&client, &allowed, user, workload_rules()).await;
    may_review(&client, user).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(plane.kubeconfig_path()).unwrap()).unwrap();
    config["current-context"] = user.into();
    std::fs::write(&kubeconfig, serde_yaml::to_string(&config).unwrap()).unwrap();

    let http = Http::authorized(&support::sender_token(plane, &home).await);
    let namespaces = format!("{allowed},{denied}");
    let gateway = Gateway::start(&kubeconfig, &home, &["--owners-namespaces", &namespaces]);
    // Ready although the watches in `denied` are refused: a refusal settles them.
    gateway.ready(&http).await;

    let (status, body) = send(&http, &gateway, &allowed, "api-7d9f8-aaaaa").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["fingerprint"], fp(&allowed, "Deployment", "api"));
    for (i, pod) in ["api-7d9f8-aaaaa", "api-7d9f8-bbbbb", "db-0"]
        .iter()
        .enumerate()
    {
        let (status, body) = send(&http, &gateway, &denied, pod).await;
        assert_eq!(status, 201, "{pod}: {body}");
        assert_eq!(
            body["fingerprint"],
            fp(&denied, "Pod", pod),
            "kept as labelled"
        );
        let forbidden = gateway
            .metric(
                &http,
                "gateway_owner_fallbacks_total",
                &[("reason", "forbidden")],
            )
            .await;
        assert_eq!(forbidden, (i + 1) as f64);
    }
    let (status, body) = send(&http, &gateway, &unlisted, "db-0").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["fingerprint"], fp(&unlisted, "Pod", "db-0"));
    assert_eq!(
        gateway
            .metric(
                &http,
                "gateway_owner_fallbacks_total",
                &[("reason", "not_watched")]
            )
            .await,
        1.0
    );
    // One log line per cause, however many signals fell back for it.
    let logged = gateway.logs_with("owner resolution fell back");
    let forbidden: Vec<_> = logged
        .iter()
        .filter(|l| l.contains("\"forbidden\""))
        .collect();
    let not_watched: Vec<_> = logged
        .iter()
        .filter(|l| l.contains("\"not_watched\""))
        .collect();
    assert_eq!((forbidden.len(), not_watched.len()), (1, 1), "{logged:#?}");
    assert!(forbidden[0].contains(&denied), "{}", forbidden[0]);
    // And the refused watch itself is logged once per shard, not once per retry.
    let refused = gateway.logs_with("owner cache watch failed");
    assert!(refused.iter().all(|l| l.contains(&denied)), "{refused:#?}");
    assert!(
        refused.len() <= 7,
        "one line per refused kind: {refused:#?}"
    );

    // The scope rule in per-namespace mode reads each listed namespace alone (a
    // metadata.name field selector), which RBAC authorizes by resourceNames: granted for
    // `allowed` only (which opts out, so only a read label can refuse its signals), while
    // `denied`'s scope cannot be decided and its signals are accepted.
    let managed = json!({"metadata": {"labels": {"kubernaut.ai/managed": "false"}}});
    Api::<Namespace>::all(client.clone())
        .patch(&allowed, &PatchParams::default(), &Patch::Merge(&managed))
        .await
        .unwrap();
    let name = format!("gateway-test-{home}");
    let cluster_role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": ["namespaces"], "resourceNames": [allowed], "verbs": ["list", "watch"]}],
    }))
    .unwrap();
    Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &cluster_role)
        .await
        .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let scoped = Gateway::start(
        &kubeconfig,
        &home,
        &[
            "--owners-namespaces",
            &namespaces,
            "--scope-managed-only",
            "true",
        ],
    );
    scoped.ready(&http).await;
    let (status, body) = send(&http, &scoped, &allowed, "db-0").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("rejected")),
        "opted out by its namespace's label: {body}"
    );
    assert_eq!(body["fingerprint"], fp(&allowed, "StatefulSet", "db"));
    let (status, body) = send(&http, &scoped, &denied, "lonely").await;
    assert_eq!(status, 201, "scope undecidable: accepted: {body}");
    let undecided = scoped.logs_with("scope cannot be decided");
    assert_eq!(undecided.len(), 1, "{undecided:#?}");
    assert!(
        undecided[0].contains("\"forbidden\"") && undecided[0].contains(&denied),
        "{}",
        undecided[0]
    );
    let allowed_failures: Vec<_> = scoped
        .logs_with("owner cache watch failed")
        .into_iter()
        .filter(|l| l.contains(&format!("\"{allowed}\"")))
        .collect();
    assert!(
        allowed_failures.is_empty(),
        "the allowed namespace's watches, its Namespace's included, are granted: {allowed_failures:#?}"
    );
    Api::<ClusterRoleBinding>::all(client.clone())
        .delete(&name, &Default::default())
        .await
        .unwrap();
    Api::<ClusterRole>::all(client)
        .delete(&name, &Default::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scope_rule_answers_unmanaged_targets_200_and_records_managed_ones() {
    let (plane, client, home) = plane_and_namespace("scope").await;
    let label = |ns: String, managed: Option<&'static str>| {
        let client = client.clone();
        async move {
            if let Some(value) = managed {
                let patch = json!({"metadata": {"labels": {"kubernaut.ai/managed": value}}});
                Api::<Namespace>::all(client)
                    .patch(&ns, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .unwrap();
            }
            ns
        }
    };
    let managed = label(
        plane.create_namespace("scope-on").await.unwrap(),
        Some("true"),
    )
    .await;
    let plain = label(plane.create_namespace("scope-plain").await.unwrap(), None).await;
    // In a managed namespace, a Deployment that opts out; in a plain one, one that opts in.
    workloads(&client, &managed, json!({"kubernaut.ai/managed": "false"})).await;
    workloads(&client, &plain, json!({"kubernaut.ai/managed": "true"})).await;

    let http = Http::authorized(&support::sender_token(plane, &home).await);
    let scoped = Gateway::start(
        plane.kubeconfig_path(),
        &home,
        &["--scope-managed-only", "true"],
    );
    let open = Gateway::start(plane.kubeconfig_path(), &home, &[]);
    scoped.ready(&http).await;
    open.ready(&http).await;
    let out_of_scope = |reason: &'static str| {
        let (scoped, http) = (&scoped, &http);
        async move {
            scoped
                .metric(
                    http,
                    "gateway_signals_out_of_scope_total",
                    &[("reason", reason)],
                )
                .await
        }
    };

    // Managed namespace, nothing on the target: recorded.
    let (status, body) = send(&http, &scoped, &managed, "lonely").await;
    assert_eq!(status, 201, "{body}");
    // Managed namespace, the Deployment opts out: 200, not recorded.
    let (status, body) = send(&http, &scoped, &managed, "api-7d9f8-aaaaa").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("rejected")),
        "{body}"
    );
    assert_eq!(body["reason"], "unmanaged_resource");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("kubernaut.ai/managed=false"),
        "{body}"
    );
    assert!(
        rrs_of(&client, &home, &fp(&managed, "Deployment", "api"))
            .await
            .is_empty()
    );
    assert_eq!(out_of_scope("opted_out").await, 1.0);
    // Plain namespace: unmanaged, unless the resolved target opts in.
    let (status, body) = send(&http, &scoped, &plain, "lonely").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("rejected")),
        "{body}"
    );
    assert!(
        rrs_of(&client, &home, &fp(&plain, "Pod", "lonely"))
            .await
            .is_empty()
    );
    assert_eq!(out_of_scope("unmanaged").await, 1.0);
    let (status, body) = send(&http, &scoped, &plain, "api-7d9f8-bbbbb").await;
    assert_eq!(status, 201, "the Deployment opts in: {body}");
    assert_eq!(body["fingerprint"], fp(&plain, "Deployment", "api"));

    // Without the rule (the default), the same unmanaged signal is recorded.
    let (status, body) = send(&http, &open, &plain, "lonely").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        rrs_of(&client, &home, &fp(&plain, "Pod", "lonely"))
            .await
            .len(),
        1
    );
}

/// An Event written by the `events.k8s.io/v1` recorder (kube-scheduler's kind), created through
/// that API and read back through `core/v1` as an event forwarder reads it: null
/// `firstTimestamp`/`lastTimestamp`, `eventTime` and `series` instead. Accepted, and resolved to
/// the pod's Deployment like any other signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_of_the_events_v1_recorder_is_accepted_and_resolved() {
    let (plane, client, ns) = plane_and_namespace("owners-events").await;
    workloads(&client, &ns, json!({})).await;
    let http = Http::authorized(&support::sender_token(plane, &ns).await);
    let gateway = Gateway::start(plane.kubeconfig_path(), &ns, &[]);
    gateway.ready(&http).await;

    let now = jiff::Timestamp::now();
    let micro = now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let recorded: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({
        "metadata": {"name": "api-7d9f8-aaaaa.scheduling", "namespace": ns},
        "eventTime": micro,
        "series": {"count": 3, "lastObservedTime": micro},
        "reportingController": "default-scheduler",
        "reportingInstance": "default-scheduler-envtest",
        "action": "Scheduling",
        "reason": "FailedScheduling",
        "regarding": {"kind": "Pod", "namespace": ns, "name": "api-7d9f8-aaaaa", "apiVersion": "v1"},
        "note": "0/3 nodes are available: 3 Insufficient memory.",
        "type": "Warning",
    }))
    .unwrap();
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &recorded)
        .await
        .unwrap();
    let read = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), &ns)
        .get("api-7d9f8-aaaaa.scheduling")
        .await
        .unwrap();
    assert!(read.first_timestamp.is_none() && read.last_timestamp.is_none());
    let mut body = serde_json::to_value(&read).unwrap();
    body["apiVersion"] = "v1".into();
    body["kind"] = "Event".into();
    let url = format!("{}/api/v1/signals/kubernetes-event", gateway.api);
    let (status, answer) = http.post(&url, &body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["fingerprint"], fp(&ns, "Deployment", "api"));
}
