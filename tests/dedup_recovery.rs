//! Index recovery (DESIGN.md §5, invariant 4) across an apiserver restart, on a control plane
//! of its own (the restart would disturb tests sharing one).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{Stack, alert, count_of, eventually, pod_fingerprint, rrs_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_recovers_after_an_apiserver_restart() {
    let plane = support::own_plane().await;
    let stack = Stack::open(&plane, "restart", &[&[], &[]]).await;
    let (ns, http, gateways) = (&stack.ns, &stack.http, &stack.gateways);
    let url = |i: usize| stack.prometheus_url(i);
    let (status, body) = http.post(&url(0), &alert("NodeDown", ns, "edge-0")).await;
    assert_eq!(status, 201, "{body}");

    plane.stop_apiserver().await.unwrap();
    for g in gateways {
        eventually(Duration::from_secs(30), "readiness lost", || async {
            matches!(
                http.get(&format!("{}/readyz", g.health)).await,
                Ok((503, _))
            )
            .then_some(())
        })
        .await;
    }
    let (status, body) = http.post(&url(1), &alert("NodeDown", ns, "edge-0")).await;
    assert_eq!(
        status, 503,
        "a signal during the outage is refused for retry: {body}"
    );

    plane.start_apiserver().await.unwrap();
    for g in gateways {
        g.ready(http).await;
        assert!(g.metric(http, "gateway_watch_restarts_total", &[]).await >= 1.0);
    }
    for (i, expected) in [(1, 2), (0, 3)] {
        let (status, body) = http.post(&url(i), &alert("NodeDown", ns, "edge-0")).await;
        assert_eq!(
            (status, body["metadata"]["count"].as_i64()),
            (202, Some(expected)),
            "{body}"
        );
    }
    let rrs = rrs_of(&stack.client, ns, &pod_fingerprint(ns, "edge-0")).await;
    assert_eq!(
        rrs.len(),
        1,
        "no second RR for a fingerprint with an active one"
    );
    assert_eq!(count_of(&rrs[0]), 3, "the refused signal counted nothing");
}
