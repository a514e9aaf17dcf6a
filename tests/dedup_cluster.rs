//! DESIGN.md §5 invariants against the real control plane, with several gateway processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use gateway::k8s::RemediationRequest;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use support::{Gateway, Http, Stack, alert, count_of, eventually, pod_fingerprint, rrs_of};

/// A fresh namespace on the shared plane with `n` default gateways, ready.
async fn stack(prefix: &str, n: usize) -> Stack {
    Stack::shared(prefix, &vec![&[][..]; n]).await
}

/// Sends `alert(pod)` `n` times at once, spread over the gateways; returns (status, count, rr).
/// A delivery answered 503 (an overloaded machine: its deadline passed before the write) is
/// sent again, as Alertmanager would, with the same body; the redelivery window and the
/// engine must still count it exactly once.
async fn burst(
    gateways: &[Gateway],
    http: &Http,
    ns: &str,
    pod: &str,
    n: usize,
) -> Vec<(u16, i64, String)> {
    join_all((0..n).map(|i| {
        let url = format!(
            "{}/api/v1/signals/prometheus",
            gateways[i % gateways.len()].api
        );
        let body = alert("HighErrorRate", ns, pod);
        let http = http.clone();
        async move {
            let mut retries = 0;
            let (status, body) = loop {
                match http.post(&url, &body).await {
                    (503, answer) if retries < MAX_RETRIES => {
                        eprintln!("503, sent again: {answer}");
                        retries += 1;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    answer => break answer,
                }
            };
            let count = match status {
                201 => 1,
                202 => body["metadata"]["count"].as_i64().unwrap(),
                other => panic!("unexpected {other} after {retries} retries: {body}"),
            };
            (
                status,
                count,
                body["remediationRequestName"].as_str().unwrap().to_string(),
            )
        }
    }))
    .await
}

/// Resends of one delivery answered 503 before the test gives up on it.
const MAX_RETRIES: u32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_first_sighting_300_concurrent() {
    let Stack {
        ns,
        client,
        gateways,
        http,
        ..
    } = stack("first", 3).await;
    let results = burst(&gateways, &http, &ns, "api-0", 300).await;

    let mut counts: Vec<i64> = results.iter().map(|r| r.1).collect();
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=300).collect::<Vec<_>>(),
        "each count 1..=300 answered exactly once"
    );
    assert_eq!(
        results.iter().filter(|r| r.0 == 201).count(),
        1,
        "exactly one 201"
    );
    let rrs = rrs_of(&client, &ns, &pod_fingerprint(&ns, "api-0")).await;
    assert_eq!(rrs.len(), 1, "exactly one RR");
    assert_eq!(count_of(&rrs[0]), 300);
    assert!(
        results
            .iter()
            .all(|r| r.2 == rrs[0].metadata.name.clone().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_50_fingerprints_40_each() {
    let Stack {
        ns,
        client,
        gateways,
        http,
        ..
    } = stack("many", 3).await;
    let all = join_all((0..50).map(|f| {
        let (gateways, http, ns) = (&gateways, &http, &ns);
        async move { (f, burst(gateways, http, ns, &format!("web-{f}"), 40).await) }
    }))
    .await;
    for (f, results) in all {
        let mut counts: Vec<i64> = results.iter().map(|r| r.1).collect();
        counts.sort_unstable();
        assert_eq!(counts, (1..=40).collect::<Vec<_>>(), "fingerprint {f}");
        let rrs = rrs_of(&client, &ns, &pod_fingerprint(&ns, &format!("web-{f}"))).await;
        assert_eq!(rrs.len(), 1, "fingerprint {f}: one RR");
        assert_eq!(count_of(&rrs[0]), 40, "fingerprint {f}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncontended_duplicate_costs_one_patch_and_no_get() {
    let Stack {
        ns,
        client,
        gateways,
        http,
        ..
    } = stack("budget", 1).await;
    let gw = &gateways[0];
    let url = format!("{}/api/v1/signals/prometheus", gw.api);
    let (status, _) = http.post(&url, &alert("DiskFull", &ns, "db-0")).await;
    assert_eq!(status, 201);
    // The creation's background status initialisation must be done before counting.
    let fp = pod_fingerprint(&ns, "db-0");
    eventually(Duration::from_secs(10), "status initialised", || async {
        rrs_of(&client, &ns, &fp)
            .await
            .first()?
            .status
            .as_ref()?
            .deduplication
            .as_ref()
            .map(|_| ())
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "initialisation patch counted",
        || async {
            (gw.metric(&http, "gateway_k8s_requests_total", &[("verb", "patch")])
                .await
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    let calls = |verb: &'static str| {
        let (gw, http) = (gw, &http);
        async move {
            gw.metric(http, "gateway_k8s_requests_total", &[("verb", verb)])
                .await
        }
    };
    let (patches, gets, creates) = (
        calls("patch").await,
        calls("get").await,
        calls("create").await,
    );

    let (status, body) = http.post(&url, &alert("DiskFull", &ns, "db-0")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["metadata"]["count"], 2);
    assert_eq!(
        calls("patch").await - patches,
        1.0,
        "exactly one status patch"
    );
    assert_eq!(calls("get").await - gets, 0.0, "no GET on the hot path");
    assert_eq!(calls("create").await - creates, 0.0);
    let rr = rrs_of(&client, &ns, &fp).await.remove(0);
    assert_eq!(count_of(&rr), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_phase_starts_a_new_rr() {
    let Stack {
        ns,
        client,
        gateways,
        http,
        ..
    } = stack("terminal", 1).await;
    let url = format!("{}/api/v1/signals/prometheus", gateways[0].api);
    let fp = pod_fingerprint(&ns, "job-0");
    for _ in 0..3 {
        let (status, _) = http.post(&url, &alert("CrashLoop", &ns, "job-0")).await;
        assert!(status == 201 || status == 202);
    }
    let old = rrs_of(&client, &ns, &fp).await.remove(0);
    let old_name = old.metadata.name.clone().unwrap();
    assert_eq!(count_of(&old), 3);

    // The orchestrator finishes the remediation.
    let api: Api<RemediationRequest> = Api::namespaced(client.clone(), &ns);
    api.patch_status(
        &old_name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {"overallPhase": "Completed"}})),
    )
    .await
    .unwrap();

    let (status, body) = http.post(&url, &alert("CrashLoop", &ns, "job-0")).await;
    assert_eq!(status, 201, "{body}");
    let new_name = body["remediationRequestName"].as_str().unwrap().to_string();
    assert_ne!(new_name, old_name);
    let (status, body) = http.post(&url, &alert("CrashLoop", &ns, "job-0")).await;
    assert_eq!((status, body["metadata"]["count"].as_i64()), (202, Some(2)));
    assert_eq!(body["remediationRequestName"], new_name.as_str());

    let old_after = api.get(&old_name).await.unwrap();
    assert_eq!(count_of(&old_after), 3, "the finished RR is untouched");
    assert_eq!(
        old_after.status.unwrap().overall_phase.as_deref(),
        Some("Completed")
    );
}

/// A new generation after a terminal RR is decided from the apiserver's field-selector list,
/// so replicas agree even after RRs were deleted: with all of a fingerprint's RRs gone, a
/// replica that saw them and a fresh one that never did both use generation 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_after_deleted_rrs_agree_across_replicas() {
    let Stack {
        ns,
        client,
        kubeconfig,
        gateways,
        http,
        ..
    } = stack("regen", 1).await;
    let url = format!("{}/api/v1/signals/prometheus", gateways[0].api);
    let fp = pod_fingerprint(&ns, "db-0");
    let api: Api<RemediationRequest> = Api::namespaced(client.clone(), &ns);
    let complete = |name: String| {
        let api = api.clone();
        async move {
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"status": {"overallPhase": "Completed"}})),
            )
            .await
            .unwrap();
        }
    };
    let lists = || gateways[0].metric(&http, "gateway_k8s_requests_total", &[("verb", "list")]);

    let (status, body) = http.post(&url, &alert("DiskFull", &ns, "db-0")).await;
    assert_eq!(status, 201, "{body}");
    let first = body["remediationRequestName"].as_str().unwrap().to_string();
    assert_eq!(lists().await, 0.0, "a first sighting lists nothing");
    complete(first.clone()).await;
    let (status, body) = eventually(Duration::from_secs(10), "a new RR after Completed", || {
        let (http, url, ns) = (&http, &url, &ns);
        async move {
            let (status, body) = http.post(url, &alert("DiskFull", ns, "db-0")).await;
            (status == 201).then_some((status, body))
        }
    })
    .await;
    let second = body["remediationRequestName"].as_str().unwrap().to_string();
    assert_eq!((status, second != first), (201, true));
    assert!(lists().await >= 1.0, "the new generation came from a list");

    complete(second.clone()).await;
    for name in [&first, &second] {
        api.delete(name, &Default::default()).await.unwrap();
    }
    eventually(
        Duration::from_secs(10),
        "the deletions on the watch",
        || async {
            let entries = gateways[0]
                .metric(&http, "gateway_index_entries", &[])
                .await;
            (entries == 0.0).then_some(())
        },
    )
    .await;
    let (status, body) = http.post(&url, &alert("DiskFull", &ns, "db-0")).await;
    assert_eq!(status, 201, "{body}");
    let third = body["remediationRequestName"].as_str().unwrap().to_string();
    let fingerprint = gateway::fingerprint::Fingerprint::parse(&fp).unwrap();
    assert_eq!(third, gateway::index::rr_name(&fingerprint, 0));

    // A replica that never saw the deleted RRs lands on the same RR.
    let fresh = Gateway::start(&kubeconfig, &ns, &[]);
    fresh.ready(&http).await;
    let fresh_url = format!("{}/api/v1/signals/prometheus", fresh.api);
    let (status, body) = http.post(&fresh_url, &alert("DiskFull", &ns, "db-0")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["remediationRequestName"], third.as_str());
    assert_eq!(body["metadata"]["count"], 2);
    let active: Vec<_> = rrs_of(&client, &ns, &fp).await;
    assert_eq!(active.len(), 1, "one RR for the fingerprint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_review_keeps_a_terminal_rr_active() {
    let Stack {
        ns,
        client,
        gateways,
        http,
        ..
    } = stack("review", 1).await;
    let url = format!("{}/api/v1/signals/prometheus", gateways[0].api);
    let (status, body) = http.post(&url, &alert("OOMKilled", &ns, "worker-0")).await;
    assert_eq!(status, 201);
    let name = body["remediationRequestName"].as_str().unwrap().to_string();
    let api: Api<RemediationRequest> = Api::namespaced(client.clone(), &ns);
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {"overallPhase": "Failed", "completionStatus": {"outcome": "ManualReviewRequired"}}})),
    )
    .await
    .unwrap();
    let (status, body) = http.post(&url, &alert("OOMKilled", &ns, "worker-0")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["remediationRequestName"], name.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rr_created_out_of_band_is_deduplicated_onto() {
    let Stack {
        ns,
        client,
        gateways,
        http,
        ..
    } = stack("oob", 1).await;
    let gw = &gateways[0];
    let fp = pod_fingerprint(&ns, "cache-0");
    let api: Api<RemediationRequest> = Api::namespaced(client.clone(), &ns);
    let spec = support::test_spec("cache-0", &ns);
    let mut rr = RemediationRequest::new("made-by-hand", spec);
    rr.metadata.labels = Some(BTreeMap::new());
    api.create(&PostParams::default(), &rr).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the watch to index the RR",
        || async { (gw.metric(&http, "gateway_index_entries", &[]).await >= 1.0).then_some(()) },
    )
    .await;

    let url = format!("{}/api/v1/signals/prometheus", gw.api);
    let (status, body) = http.post(&url, &alert("HighLatency", &ns, "cache-0")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["remediationRequestName"], "made-by-hand");
    assert_eq!(body["metadata"]["count"], 2);
    assert_eq!(rrs_of(&client, &ns, &fp).await.len(), 1);
}
