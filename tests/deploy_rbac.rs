//! The checked-in RBAC is exactly what the gateway needs. On a control plane of its own (with
//! an audit log), the rendered base is applied for real — its CRD, Namespace, ServiceAccount,
//! Role and RoleBinding, the ClusterRoles and ClusterRoleBindings of sender authentication and
//! of the owner cache, ConfigMap — and gateway processes run with the ConfigMap's config,
//! authenticated by a token of the base's ServiceAccount (TokenRequest API). A sender bound to
//! the shipped `gateway-signal-source` takes them through the full path: authentication
//! (TokenReview and SubjectAccessReview), create, duplicate, storm, and a lost create race (the
//! one place the gateway GETs). The apiserver's audit log then shows every call they made: each
//! was allowed, and the set of (resource, verb) they used equals the set the Role, the reviewer
//! ClusterRole and the owner cache's ClusterRole grant — nothing missing, nothing unused — and
//! signals add no call on the workload kinds. The same identity is refused what the gateway must never do: delete RRs, write their
//! spec, write their status other than by patch, touch another namespace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod observe_support;
mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use gateway::k8s::RemediationRequest;
use gateway_envtest::{ControlPlane, Options};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use observe_support::{deploy_dir, kind_name, one, run};
use serde_yaml::Value;
use support::{Gateway, Http, alert, count_of, eventually, pod_fingerprint, rrs_of};

const NAMESPACE: &str = "remediation";
const SERVICE_ACCOUNT: &str = "gateway";

/// (resource or resource/subresource, verb), as RBAC and the audit log name them.
type Grant = (String, String);

/// Audit `Metadata` for every request of a service account; nothing else.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: [\"system:serviceaccounts\"]
  - level: None
";

fn kubectl_apply(plane: &ControlPlane, objects: &[Value]) {
    let yaml = objects
        .iter()
        .map(|o| serde_yaml::to_string(o).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    let mut command = Command::new(plane.bin_dir().join("kubectl"));
    command
        .arg("--kubeconfig")
        .arg(plane.kubeconfig_path())
        .args([
            "apply",
            "--server-side",
            "--field-manager=deploy-test",
            "-f",
            "-",
        ]);
    let (ok, out, err) = run(command, Some(&yaml), Duration::from_secs(120));
    assert!(ok, "kubectl apply failed:\n{out}\n{err}");
}

/// What a Role or ClusterRole of the base grants.
fn granted(role: &Value) -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    for rule in role["rules"].as_sequence().unwrap() {
        for resource in rule["resources"].as_sequence().unwrap() {
            for verb in rule["verbs"].as_sequence().unwrap() {
                grants.insert((
                    resource.as_str().unwrap().to_owned(),
                    verb.as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    grants
}

/// The audit log's view of `user`'s requests: (resource[/subresource] or path, verb,
/// authorization decision); a watch appears twice (response started, completed).
fn audited(log: &std::path::Path, user: &str) -> Vec<(String, String, String)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["user"]["username"] == user)
        .map(|event| {
            let object = &event["objectRef"];
            let what = match (object["resource"].as_str(), object["subresource"].as_str()) {
                (Some(resource), Some(sub)) => format!("{resource}/{sub}"),
                (Some(resource), None) => resource.to_owned(),
                _ => event["requestURI"].as_str().unwrap_or("?").to_owned(),
            };
            let decision = event["annotations"]["authorization.k8s.io/decision"]
                .as_str()
                .unwrap_or("?")
                .to_owned();
            (what, event["verb"].as_str().unwrap().to_owned(), decision)
        })
        .collect()
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_account_runs_the_gateway_with_exactly_the_role() {
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("audit-policy.yaml");
    std::fs::write(&policy, AUDIT_POLICY).unwrap();
    let audit_log = dir.path().join("audit.log");
    let plane = ControlPlane::start(Options {
        // The CRD comes from the base, like everything else.
        crds: Vec::new(),
        apiserver_args: vec![
            format!("--audit-policy-file={}", policy.display()),
            format!("--audit-log-path={}", audit_log.display()),
            "--audit-log-mode=blocking".to_owned(),
        ],
        ..Options::default()
    })
    .await
    .unwrap();
    let admin = plane.client().unwrap();

    // The base, for real: the Namespace first (the rest lives in it), then everything else.
    let objects = observe_support::yaml_documents(&observe_support::kustomize(
        &plane.bin_dir().join("kubectl"),
        &deploy_dir(),
    ));
    kubectl_apply(&plane, &[one(&objects, "Namespace").clone()]);
    kubectl_apply(&plane, &objects);
    let role = one(&objects, "Role");
    let binding = one(&objects, "RoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], SERVICE_ACCOUNT);
    for rule in role["rules"].as_sequence().unwrap() {
        let group = rule["apiGroups"][0].as_str().unwrap();
        let resource = rule["resources"][0].as_str().unwrap();
        assert!(
            group == "kubernaut.ai" || (group == "coordination.k8s.io" && resource == "leases"),
            "the Role grants RRs and the ring's Leases only: {rule:?}"
        );
    }
    // The reviews of sender authentication, cluster-wide (they read nothing), and the owner
    // cache's list + watch of the workload kinds.
    let cluster_role = |name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("ClusterRole {name}"))
    };
    for binding in objects.iter().filter(|o| o["kind"] == "ClusterRoleBinding") {
        assert_eq!(binding["subjects"][0]["name"], SERVICE_ACCOUNT);
        assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
        cluster_role(binding["roleRef"]["name"].as_str().unwrap());
    }
    let reviewer_role = cluster_role("gateway-auth-reviewer");
    let owner_cache_role = cluster_role("gateway-owner-cache");
    let config_map = one(&objects, "ConfigMap");
    let config_file = dir.path().join("config.yaml");
    // The base's config, with the scope rule on so that the ClusterRole's namespaces grant is
    // used too (owner resolution is on by default); the signals' namespace opts in.
    std::fs::write(
        &config_file,
        format!(
            "{}\nscope:\n  managed_only: true\n",
            config_map["data"]["config.yaml"].as_str().unwrap()
        ),
    )
    .unwrap();
    let managed = serde_json::json!({"metadata": {"labels": {"kubernaut.ai/managed": "true"}}});
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .patch(NAMESPACE, &PatchParams::default(), &Patch::Merge(&managed))
        .await
        .unwrap();
    // The CRD is served once the apiserver has built its handlers.
    support::warm_up(&admin, NAMESPACE).await;
    eprintln!(
        "[{:?}] base applied: {:?}",
        began.elapsed(),
        objects.iter().map(kind_name).collect::<Vec<_>>()
    );

    // A token of the base's ServiceAccount, as the kubelet would mount it.
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), NAMESPACE)
        .create_token_request(
            SERVICE_ACCOUNT,
            &PostParams::default(),
            &TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(3600),
                    ..TokenRequestSpec::default()
                }),
                ..TokenRequest::default()
            },
        )
        .await
        .unwrap()
        .status
        .and_then(|status| status.token)
        .expect("a token");
    let kubeconfig = dir.path().join("kubeconfig-gateway");
    support::kubeconfig_for_token(&plane, &token, NAMESPACE, &kubeconfig);
    let config_arg = config_file.to_str().unwrap();
    // Two replicas in the ring (renewing their Leases every second, so the renewal is seen),
    // and one outside it, so that a create race between replicas still happens.
    let ring = ["--config", config_arg, "--lease-renew-interval", "1s"];
    let gateways = [
        Gateway::start(&kubeconfig, NAMESPACE, &ring),
        Gateway::start(&kubeconfig, NAMESPACE, &ring),
        Gateway::start(
            &kubeconfig,
            NAMESPACE,
            &["--config", config_arg, "--cluster-enabled", "false"],
        ),
    ];
    let http = Http::authorized(&support::sender_token(&plane, NAMESPACE).await);
    for gateway in &gateways {
        gateway.ready(&http).await;
    }
    let url = |i: usize| format!("{}/api/v1/signals/prometheus", gateways[i].api);

    // The owner cache's watches are open; from here on, signals must not add calls on the
    // workload kinds (no GET per signal: the ClusterRole grants none).
    let user = format!("system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}");
    let workload_calls = || {
        audited(&audit_log, &user)
            .into_iter()
            .filter(|(resource, _, _)| {
                !resource.starts_with("remediationrequests")
                    && resource != "leases"
                    && resource != "tokenreviews"
                    && resource != "subjectaccessreviews"
            })
            .count()
    };
    // Each gateway opens 8 watches (7 workload kinds, namespaces), each audited as its list
    // and its watch's start; readiness waits for the lists, not for the watches to start.
    let opened = gateways.len() * 8 * 2;
    eventually(
        Duration::from_secs(30),
        "the owner cache's watches",
        || async { (workload_calls() >= opened).then_some(()) },
    )
    .await;
    let before_signals = workload_calls();
    assert_eq!(
        before_signals, opened,
        "one list and one watch per kind and gateway"
    );

    // Create, duplicate, storm (the config's threshold is 5 within 60 s).
    let (status, body) = http
        .post(&url(0), &alert("Crash", NAMESPACE, "api-0"))
        .await;
    assert_eq!(status, 201, "{body}");
    for expected in 2..=7 {
        let (status, body) = http
            .post(&url(0), &alert("Crash", NAMESPACE, "api-0"))
            .await;
        assert_eq!(
            (status, body["metadata"]["count"].as_i64()),
            (202, Some(expected)),
            "{body}"
        );
    }
    let fingerprint = pod_fingerprint(NAMESPACE, "api-0");
    let rr = eventually(Duration::from_secs(30), "stormAggregation", || async {
        let rrs = rrs_of(&admin, NAMESPACE, &fingerprint).await;
        let rr = rrs.into_iter().next()?;
        let storm = rr.status.as_ref()?.storm_aggregation.as_ref()?;
        storm.is_part_of_storm.then_some(rr)
    })
    .await;
    assert_eq!(count_of(&rr), 7);

    // A lost create race: a replica in the ring and the one outside it see a first
    // occurrence at once; the loser GETs the winner's RR and counts onto it. Retried on
    // fresh fingerprints until a GET happened.
    let mut races = 0;
    loop {
        races += 1;
        let pod = format!("race-{races}");
        // Two deliveries (two firings), so both count wherever they land.
        let (first, second) = (
            alert("Crash", NAMESPACE, &pod),
            alert("Crash", NAMESPACE, &pod),
        );
        let (url0, url1) = (url(0), url(2));
        let (a, b) = tokio::join!(http.post(&url0, &first), http.post(&url1, &second));
        let mut statuses = [a.0, b.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 202], "{a:?} {b:?}");
        let mut gets = 0.0;
        for gateway in &gateways {
            gets += gateway
                .metric(&http, "gateway_k8s_requests_total", &[("verb", "get")])
                .await;
        }
        if gets >= 1.0 {
            break;
        }
        assert!(races < 40, "no lost create race in {races} tries");
    }
    eprintln!("[{:?}] a lost race after {races} tries", began.elapsed());

    // No call was refused: the store reports a 401/403 as outcome "unavailable". (A stale
    // storm write is "stale": its JSON-patch test failed, by design.)
    for gateway in &gateways {
        let refused = gateway
            .metric(
                &http,
                "gateway_k8s_requests_total",
                &[("outcome", "unavailable")],
            )
            .await;
        assert_eq!(refused, 0.0, "Kubernetes calls failed as unavailable");
    }
    assert_eq!(
        workload_calls(),
        before_signals,
        "signals made calls on the workload kinds or namespaces"
    );
    for gateway in gateways {
        assert!(gateway.terminate().success());
    }

    // The audit log: everything the gateways did, allowed, and exactly the roles bound to them.
    let user = format!("system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}");
    let mut expected = granted(role);
    expected.extend(granted(reviewer_role));
    expected.extend(granted(owner_cache_role));
    // The log is written before each response (blocking mode); the poll only covers the
    // last events of the terminated gateways' watches.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (calls, used) = loop {
        let calls = audited(&audit_log, &user);
        let used: BTreeSet<Grant> = calls
            .iter()
            .map(|(r, v, _)| (r.clone(), v.clone()))
            .collect();
        if used == expected || Instant::now() > deadline {
            break (calls, used);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        used, expected,
        "(resource, verb) the gateways used (left) vs what the roles grant (right)"
    );
    for (resource, verb, decision) in &calls {
        assert_eq!(decision, "allow", "{verb} {resource}");
    }
    eprintln!(
        "[{:?}] {} audited calls by {user}, (resource, verb) used = granted = {:?}",
        began.elapsed(),
        calls.len(),
        expected
    );

    // The same identity may not delete RRs or write their spec.
    let as_gateway = plane.client_for_token(&token).unwrap();
    let rrs: Api<RemediationRequest> = Api::namespaced(as_gateway.clone(), NAMESPACE);
    let name = rr.metadata.name.clone().unwrap();
    forbidden(rrs.delete(&name, &DeleteParams::default()).await, "delete");
    forbidden(
        rrs.delete_collection(&DeleteParams::default(), &ListParams::default())
            .await,
        "deletecollection",
    );
    let mut changed = rrs.get(&name).await.unwrap();
    changed.spec.severity = "changed".into();
    forbidden(
        rrs.replace(&name, &PostParams::default(), &changed).await,
        "update of the spec",
    );
    // Patch is granted (to clear managed fields); the spec-immutable policy refuses a
    // spec change all the same.
    match rrs
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"severity": "changed"}})),
        )
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 422 => {
            assert!(status.message.contains("immutable"), "{}", status.message);
        }
        other => panic!("patch of the spec: expected 422 from the policy, got {other:?}"),
    }
    forbidden(
        rrs.replace_status(&name, &PostParams::default(), &changed)
            .await,
        "update of the status (only patch is granted)",
    );
    let elsewhere: Api<RemediationRequest> = Api::namespaced(as_gateway.clone(), "default");
    forbidden(
        elsewhere.list(&ListParams::default()).await,
        "list in another namespace",
    );
    forbidden(
        Api::<RemediationRequest>::all(as_gateway)
            .list(&ListParams::default())
            .await,
        "list across namespaces",
    );
    let after = rrs_of(&admin, NAMESPACE, &fingerprint).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].spec.severity, rr.spec.severity);
    eprintln!("[{:?}] done", began.elapsed());
}
