//! Redeliveries are not occurrences (DESIGN.md §5, invariant 2): the same delivery sent again
//! within the redelivery window — by a second Alertmanager, or as a retry after a 503 — is
//! answered with the RR and ordinal of the one it repeats and counted once. Against the real
//! control plane and one gateway process, and once over an in-memory store behind the
//! library's own parts (`Parts::store`), where one alert of a batch fails on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use gateway::clock::SystemClock;
use gateway::config::Config;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::fake::FakeStore;
use support::{Http, Stack, alert, count_of, eventually, pod_fingerprint, rrs_of, unique_now};

/// One webhook carrying a fresh alert about each of `pods`.
fn batch(alertname: &str, namespace: &str, pods: &[&str]) -> Value {
    let mut body = alert(alertname, namespace, pods[0]);
    let alerts: Vec<Value> = pods
        .iter()
        .map(|pod| alert(alertname, namespace, pod)["alerts"][0].clone())
        .collect();
    body["alerts"] = alerts.into();
    body
}

/// A kubelet Event about `pod`, seen `count` times.
fn event(namespace: &str, pod: &str, count: u32) -> Value {
    let now = unique_now().to_string();
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{pod}.17f3a1b2c3d4e5f6"), "namespace": namespace, "uid": "6f1c2d3e-4b5a"},
        "involvedObject": {"kind": "Pod", "namespace": namespace, "name": pod, "apiVersion": "v1"},
        "reason": "BackOff",
        "message": "Back-off restarting failed container",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": count,
        "type": "Warning"
    })
}

/// `(status, rr name, ordinal)` of a 201 / 202 answer.
fn ordinal((status, body): &(u16, Value)) -> (u16, String, i64) {
    let count = match status {
        201 => 1,
        202 => body["metadata"]["count"].as_i64().unwrap(),
        other => panic!("unexpected {other}: {body}"),
    };
    let name = body["remediationRequestName"].as_str().unwrap().to_owned();
    (*status, name, count)
}

/// Each item of a 207 as `(status, count)`.
fn items(body: &Value) -> Vec<(String, i64)> {
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {body}"))
        .iter()
        .map(|r| {
            let status = r["status"].as_str().unwrap().to_owned();
            (status, r["count"].as_i64().unwrap_or(0))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_payload_sent_at_once_counts_once_and_every_answer_carries_its_ordinal() {
    let stack = Stack::shared("resend-at-once", &[&[]]).await;
    let (ns, http) = (&stack.ns, &stack.http);
    let url = stack.prometheus_url(0);
    const N: usize = 24;

    // A first sighting, as N Alertmanagers would send it at the same instant.
    let body = alert("HighErrorRate", ns, "api-0");
    let answers = join_all((0..N).map(|_| http.post(&url, &body))).await;
    let answers: Vec<_> = answers.iter().map(ordinal).collect();
    let created: Vec<_> = answers.iter().filter(|(s, ..)| *s == 201).collect();
    assert_eq!(created.len(), 1, "one of them created the RR: {answers:?}");
    let name = &created[0].1;
    for (status, rr, count) in &answers {
        assert_eq!((rr, *count), (name, 1), "{status}: {answers:?}");
    }

    // A new delivery of the alert counts, once however often it comes at once.
    let second = alert("HighErrorRate", ns, "api-0");
    let answers = join_all((0..N).map(|_| http.post(&url, &second))).await;
    for answer in &answers {
        assert_eq!(ordinal(answer), (202, name.clone(), 2), "{answer:?}");
    }
    // And so does an Event about the same Pod, sent three times at once.
    let events = format!("{}/api/v1/signals/kubernetes-event", stack.gateways[0].api);
    let kubelet = event(ns, "api-0", 3);
    let answers = join_all((0..3).map(|_| http.post(&events, &kubelet))).await;
    for answer in &answers {
        assert_eq!(ordinal(answer), (202, name.clone(), 3), "{answer:?}");
    }

    let rrs = rrs_of(&stack.client, ns, &pod_fingerprint(ns, "api-0")).await;
    assert_eq!(rrs.len(), 1);
    assert_eq!(count_of(&rrs[0]), 3, "three deliveries, three occurrences");
    let gateway = &stack.gateways[0];
    let metric = "gateway_redeliveries_total";
    let resent = gateway
        .metric(http, metric, &[("source_type", "prometheus")])
        .await;
    assert_eq!(resent, 2.0 * (N as f64 - 1.0));
    let resent = gateway
        .metric(http, metric, &[("source_type", "kubernetes-event")])
        .await;
    assert_eq!(resent, 2.0);
}

/// Waits until the apiserver's quota admission admits a new RR in `ns` (`admits`) or refuses
/// it, probing with server-side dry runs so that nothing is created meanwhile.
async fn quota_admits(client: &kube::Client, ns: &str, admits: bool) {
    let rrs: Api<gateway::k8s::RemediationRequest> = Api::namespaced(client.clone(), ns);
    let probe =
        gateway::k8s::RemediationRequest::new("quota-probe", support::test_spec("probe", ns));
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let what = if admits {
        "quota admits"
    } else {
        "quota refuses"
    };
    eventually(Duration::from_secs(30), what, || {
        let (rrs, probe, dry_run) = (&rrs, &probe, &dry_run);
        async move {
            match rrs.create(dry_run, probe).await {
                Ok(_) => admits.then_some(()),
                Err(kube::Error::Api(status)) if status.code == 403 => (!admits).then_some(()),
                Err(other) => panic!("dry-run create: {other}"),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answered_503_and_resent_counts_each_alert_once() {
    let stack = Stack::shared("resend-batch", &[&[]]).await;
    let (ns, http, client) = (&stack.ns, &stack.http, &stack.client);
    let url = stack.prometheus_url(0);
    let (status, body) = http.post(&url, &alert("DiskFull", ns, "db-0")).await;
    assert_eq!(status, 201, "{body}");

    // A quota leaves no room for a second RR: the batch's new alert is refused (403 from the
    // apiserver), the other one is counted, and the batch as a whole is answered 503.
    let quota = |n: u32| json!({"count/remediationrequests.kubernaut.ai": n.to_string()});
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
    let object = serde_json::from_value(json!({
        "metadata": {"name": "rrs"},
        "spec": {"hard": quota(1)},
    }))
    .unwrap();
    quotas
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    // No controller manager runs here to compute the quota's usage; admission needs it.
    let status_of = |hard: u32, used: u32| {
        Patch::Merge(json!({"status": {"hard": quota(hard), "used": quota(used)}}))
    };
    quotas
        .patch_status("rrs", &PatchParams::default(), &status_of(1, 1))
        .await
        .unwrap();
    quota_admits(client, ns, false).await;
    let resent = batch("DiskFull", ns, &["db-0", "db-1"]);
    let (status, body) = http.post(&url, &resent).await;
    assert_eq!(status, 503, "{body}");
    let db0 = || async {
        let rrs = rrs_of(client, ns, &pod_fingerprint(ns, "db-0")).await;
        assert_eq!(rrs.len(), 1);
        count_of(&rrs[0])
    };
    assert_eq!(db0().await, 2, "the alert that could be recorded was");
    assert!(
        rrs_of(client, ns, &pod_fingerprint(ns, "db-1"))
            .await
            .is_empty()
    );

    // Room again; Alertmanager resends the same body: each alert counts once in all.
    let spec = Patch::Merge(json!({"spec": {"hard": quota(10)}}));
    quotas
        .patch("rrs", &PatchParams::default(), &spec)
        .await
        .unwrap();
    quotas
        .patch_status("rrs", &PatchParams::default(), &status_of(10, 1))
        .await
        .unwrap();
    quota_admits(client, ns, true).await;
    let (status, body) = http.post(&url, &resent).await;
    assert_eq!(status, 207, "{body}");
    assert_eq!(
        items(&body),
        [("duplicate".to_owned(), 2), ("created".to_owned(), 1)],
        "{body}"
    );
    assert_eq!(db0().await, 2, "the resent alert was not counted again");
    let db1 = rrs_of(client, ns, &pod_fingerprint(ns, "db-1")).await;
    assert_eq!((db1.len(), count_of(&db1[0])), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_payload_after_the_window_counts_again() {
    const WINDOW: Duration = Duration::from_secs(2);
    let stack = Stack::shared("resend-late", &[&["--redelivery-window", "2s"]]).await;
    let (ns, http) = (&stack.ns, &stack.http);
    let url = stack.prometheus_url(0);
    let body = alert("HighLatency", ns, "cache-0");
    let (status, first) = http.post(&url, &body).await;
    assert_eq!(status, 201, "{first}");
    let started = std::time::Instant::now();
    let again = ordinal(&http.post(&url, &body).await);
    assert!(
        started.elapsed() < WINDOW,
        "the resend came within the window"
    );
    assert_eq!(
        (again.0, again.2),
        (202, 1),
        "within the window: a redelivery"
    );

    // The test is about time passing: once the window is over, the same body is a new
    // occurrence (Alertmanager's repeat notification of an unchanged alert).
    tokio::time::sleep(WINDOW + Duration::from_millis(500)).await;
    let late = ordinal(&http.post(&url, &body).await);
    assert_eq!((late.0, late.2), (202, 2), "after the window: counted");
    let rrs = rrs_of(&stack.client, ns, &pod_fingerprint(ns, "cache-0")).await;
    assert_eq!(count_of(&rrs[0]), 2);
}

// ---- the library's parts over an in-memory store ----

/// Serves `Parts::store` over `store` on loopback ports; returns the Alertmanager route's URL.
async fn serve(store: &Arc<FakeStore>) -> String {
    let mut config = Config::default();
    // A fresh RR's count-1 status write would land at a moment of its own; pushed out of the
    // test, every write the store takes is one a signal made.
    config.kubernetes.status_init_delay = Duration::from_secs(3600);
    let parts = gateway::Parts::store(&config, store.clone(), "ns", Arc::new(SystemClock));
    let listeners = gateway::Listeners::loopback().await.unwrap();
    let url = format!(
        "http://{}/api/v1/signals/prometheus",
        listeners.api.local_addr().unwrap()
    );
    tokio::spawn(gateway::run(
        config,
        parts,
        listeners,
        std::future::pending(),
    ));
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_refused_alert_counts_the_others_once_when_resent() {
    let store = Arc::new(FakeStore::default());
    let url = serve(&store).await;
    let http = Http::new();
    let (status, body) = http.post(&url, &alert("Batch", "ns", "a")).await;
    assert_eq!(status, 201, "{body}");
    let count = |pod: &str| {
        let fingerprint = pod_fingerprint("ns", pod);
        let counts = store.counts();
        let mut of_pod = counts.values().filter(|(fp, _)| *fp == fingerprint);
        of_pod.next().map(|(_, count)| *count)
    };

    // `b`'s create is refused: `a` is counted and `c` created, the batch answered 503.
    *store.refuse_creates_of.lock().unwrap() = Some(pod_fingerprint("ns", "b"));
    let resent = batch("Batch", "ns", &["a", "b", "c"]);
    let (status, body) = http.post(&url, &resent).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        (count("a"), count("b"), count("c")),
        (Some(2), None, Some(1))
    );

    // The sender resends it: `b` is recorded, `a` and `c` answered with their ordinals.
    *store.refuse_creates_of.lock().unwrap() = None;
    let (status, body) = http.post(&url, &resent).await;
    assert_eq!(status, 207, "{body}");
    let expected = [("duplicate", 2), ("created", 1), ("duplicate", 1)];
    let expected: Vec<_> = expected.iter().map(|(s, n)| (s.to_string(), *n)).collect();
    assert_eq!(items(&body), expected, "{body}");
    assert_eq!(
        (count("a"), count("b"), count("c")),
        (Some(2), Some(1), Some(1))
    );

    // Once more: everything is a redelivery now, nothing is written.
    let writes = store.next_rv.load(std::sync::atomic::Ordering::SeqCst);
    let (status, again) = http.post(&url, &resent).await;
    assert_eq!(status, 207, "{again}");
    let expected = [("duplicate", 2), ("duplicate", 1), ("duplicate", 1)];
    let expected: Vec<_> = expected.iter().map(|(s, n)| (s.to_string(), *n)).collect();
    assert_eq!(items(&again), expected, "{again}");
    assert_eq!(
        store.next_rv.load(std::sync::atomic::Ordering::SeqCst),
        writes,
        "no Kubernetes write for a redelivery"
    );
    // This test is the only one in this binary recording metrics in-process.
    let resent = support::metric_value(
        &gateway::telemetry::render(),
        "gateway_redeliveries_total",
        &[("source_type", "prometheus")],
    );
    assert_eq!(resent, 2.0 + 3.0);
}
