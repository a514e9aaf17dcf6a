//! Replicas that cooperate (src/cluster): member Leases, ownership by fingerprint and the
//! forward to the owner, against the real control plane with several gateway processes — the
//! audited write count of a first-sighting burst, a replica SIGKILLed and one SIGTERMed under
//! load, and a replica whose view of the members lags for good (its identity may not watch
//! Leases), and the copies of one notification from Alertmanagers in HA. Counts stay exact in
//! every case.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::ListParams;
use support::{
    Gateway, Http, Stack, alert, count_of, eventually, pod_fingerprint, restricted_identity,
    rrs_of, rule,
};

/// This binary's control plane: like `gateway_envtest::shared`, with RR writes in the audit log.
async fn plane() -> &'static gateway_envtest::ControlPlane {
    static PLANE: tokio::sync::OnceCell<gateway_envtest::ControlPlane> =
        tokio::sync::OnceCell::const_new();
    PLANE
        .get_or_init(|| async {
            gateway_envtest::ControlPlane::start(gateway_envtest::Options {
                crds: gateway_envtest::default_crds(),
                audit_rr_writes: true,
                ..gateway_envtest::Options::default()
            })
            .await
            .unwrap()
        })
        .await
}

/// Fast membership for the fault tests: a killed replica leaves the ring within 3 s.
const FAST_LEASES: &[&str] = &["--lease-duration", "3s", "--lease-renew-interval", "1s"];

fn url(gateway: &Gateway) -> String {
    format!("{}/api/v1/signals/prometheus", gateway.api)
}

/// The holders (peer addresses) of the member Leases in `ns`.
async fn lease_holders(client: &kube::Client, ns: &str) -> BTreeSet<String> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app.kubernetes.io/component=gateway-member"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|lease| lease.spec?.holder_identity)
        .collect()
}

/// Waits until every gateway sees `n` members.
async fn members(gateways: &[&Gateway], http: &Http, n: usize) {
    for gateway in gateways {
        eventually(Duration::from_secs(20), "the ring's members", || async {
            let seen = gateway.metric(http, "gateway_cluster_members", &[]).await;
            (seen == n as f64).then_some(())
        })
        .await;
    }
}

/// One answer of a load run: pod, HTTP status (0 for a connection error), ordinal.
#[derive(Clone, Debug)]
struct Answer {
    pod: String,
    status: u16,
    count: Option<i64>,
    at: Instant,
}

/// A load run in the background: distinct deliveries about 12 pods, round robin over the
/// targets (which the test may change while it runs).
struct Load {
    /// The signal URLs sent to.
    targets: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    run: tokio::task::JoinHandle<Vec<Answer>>,
}

impl Load {
    /// Starts sending to `gateways`, `concurrency` requests at a time.
    fn start(http: &Http, ns: &str, gateways: &[Gateway], concurrency: usize) -> Load {
        let pods: Vec<String> = (0..12).map(|i| format!("api-{i}")).collect();
        let targets = Arc::new(Mutex::new(gateways.iter().map(url).collect::<Vec<_>>()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let run = tokio::spawn(load(
            http.clone(),
            ns.to_owned(),
            pods,
            targets.clone(),
            concurrency,
            stop.clone(),
        ));
        Load { targets, stop, run }
    }

    /// Stops sending and returns every answer.
    async fn finish(self) -> Vec<Answer> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.run.await.unwrap()
    }
}

/// Signals `gateways` forwarded to their owner and got its answer for.
async fn forwarded_ok(gateways: &[Gateway], http: &Http) -> f64 {
    let mut forwarded = 0.0;
    for gateway in gateways {
        forwarded += gateway
            .metric(
                http,
                "gateway_forwarded_signals_total",
                &[("outcome", "ok")],
            )
            .await;
    }
    forwarded
}

/// Sends distinct deliveries about `pods` (round robin over them) to the gateways `targets()`
/// returns at each send, `concurrency` at a time, until `stop` is set; collects every answer.
async fn load(
    http: Http,
    ns: String,
    pods: Vec<String>,
    targets: Arc<Mutex<Vec<String>>>,
    concurrency: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Answer> {
    let answers = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    join_all((0..concurrency).map(|_| {
        let (http, ns, pods, targets, stop, answers, next) = (
            http.clone(),
            ns.clone(),
            pods.clone(),
            targets.clone(),
            stop.clone(),
            answers.clone(),
            next.clone(),
        );
        async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let pod = pods[i % pods.len()].clone();
                let target = {
                    let targets = targets.lock().unwrap();
                    targets[i % targets.len()].clone()
                };
                let mut body = alert("HighErrorRate", &ns, &pod);
                // A label of its own: every send is a distinct delivery, counted.
                body["alerts"][0]["labels"]["delivery"] = i.to_string().into();
                let sent = http.try_post(&target, &body, Duration::from_secs(10)).await;
                let (status, count) = match sent {
                    Ok((status, _, body)) => (
                        status,
                        match status {
                            201 => Some(1),
                            202 => body["metadata"]["count"].as_i64(),
                            _ => None,
                        },
                    ),
                    Err(_) => (0, None),
                };
                answers.lock().unwrap().push(Answer {
                    pod,
                    status,
                    count,
                    at: Instant::now(),
                });
            }
        }
    }))
    .await;
    Arc::try_unwrap(answers).unwrap().into_inner().unwrap()
}

/// Every acknowledged ordinal of a pod is unique, its one RR holds at least as many
/// occurrences as were acknowledged (and exactly as many when `exact`), and there is exactly
/// one RR per pod.
async fn assert_counts(client: &kube::Client, ns: &str, answers: &[Answer], exact: bool) {
    let mut acked: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for answer in answers {
        if let Some(count) = answer.count {
            acked.entry(&answer.pod).or_default().push(count);
        }
    }
    for (pod, mut counts) in acked {
        counts.sort_unstable();
        let before = counts.len();
        counts.dedup();
        assert_eq!(counts.len(), before, "{pod}: an ordinal was answered twice");
        let rrs = rrs_of(client, ns, &pod_fingerprint(ns, pod)).await;
        assert_eq!(rrs.len(), 1, "{pod}: exactly one RR");
        let count = count_of(&rrs[0]);
        let top = *counts.last().unwrap();
        assert!(count >= top, "{pod}: acknowledged {top}, RR holds {count}");
        if exact {
            assert_eq!(
                counts,
                (1..=count).collect::<Vec<_>>(),
                "{pod}: ordinals 1..=N"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_300_first_sightings_cost_one_create_and_few_patches() {
    let plane = plane().await;
    let Stack {
        ns,
        client,
        gateways,
        http,
        ..
    } = Stack::open(plane, "ring-burst", &[&[], &[], &[]]).await;
    let all: Vec<&Gateway> = gateways.iter().collect();
    members(&all, &http, 3).await;

    let results = join_all((0..300).map(|i| {
        let target = url(&gateways[i % 3]);
        let mut body = alert("HighErrorRate", &ns, "api-0");
        body["alerts"][0]["labels"]["delivery"] = i.to_string().into();
        let http = http.clone();
        async move {
            let (status, body) = http.post(&target, &body).await;
            match status {
                201 => 1,
                202 => body["metadata"]["count"].as_i64().unwrap(),
                other => panic!("unexpected {other}: {body}"),
            }
        }
    }))
    .await;
    let mut counts = results;
    counts.sort_unstable();
    assert_eq!(counts, (1..=300).collect::<Vec<_>>(), "ordinals 1..=300");
    let fingerprint = pod_fingerprint(&ns, "api-0");
    let rrs = rrs_of(&client, &ns, &fingerprint).await;
    assert_eq!(rrs.len(), 1, "one RR");
    assert_eq!(count_of(&rrs[0]), 300);

    // Two thirds of the signals arrived at a replica that does not own the fingerprint.
    let forwarded = forwarded_ok(&gateways, &http).await;
    assert!(forwarded >= 150.0, "{forwarded} signals forwarded");

    // What the apiserver saw: one create, and group commit over all three replicas' traffic.
    let name = rrs[0].metadata.name.clone().unwrap();
    let writes: Vec<serde_json::Value> = plane
        .audit_events("remediationrequests")
        .unwrap()
        .into_iter()
        .filter(|e| e["objectRef"]["namespace"] == ns.as_str())
        .filter(|e| e["objectRef"]["name"] == name.as_str())
        .collect();
    let creates = writes
        .iter()
        .filter(|e| e["verb"] == "create" && e["responseStatus"]["code"] == 201)
        .count();
    let patches = writes
        .iter()
        .filter(|e| e["verb"] == "patch" && e["objectRef"]["subresource"] == "status")
        .count();
    eprintln!("audited: {creates} create(s), {patches} status patches for 300 signals");
    assert_eq!(creates, 1, "one create");
    assert!(
        patches <= 100,
        "{patches} status patches for 300 signals: group commit should merge most"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_replica_leaves_the_ring_and_no_acknowledged_count_is_lost() {
    let plane = plane().await;
    let Stack {
        ns,
        client,
        mut gateways,
        http,
        ..
    } = Stack::open(plane, "ring-kill", &[FAST_LEASES, FAST_LEASES, FAST_LEASES]).await;
    let all: Vec<&Gateway> = gateways.iter().collect();
    members(&all, &http, 3).await;

    let load = Load::start(&http, &ns, &gateways, 8);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = Instant::now();
    gateways[2].kill();
    // Senders notice the dead endpoint a moment later, as a Service would drop it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.targets.lock().unwrap().truncate(2);
    let survivors: Vec<&Gateway> = gateways[..2].iter().collect();
    members(&survivors, &http, 2).await;
    let moved_after = killed_at.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answers = load.finish().await;

    for answer in &answers {
        assert!(
            matches!(answer.status, 0 | 201 | 202 | 503),
            "{answer:?}: only 2xx, 503 or a connection error"
        );
    }
    // Once the survivors agree, every signal is answered.
    let settled = killed_at + moved_after + Duration::from_millis(500);
    let late: Vec<&Answer> = answers.iter().filter(|a| a.at > settled).collect();
    assert!(!late.is_empty());
    assert!(
        late.iter().all(|a| matches!(a.status, 201 | 202)),
        "after ownership moved: {:?}",
        late.iter().find(|a| !matches!(a.status, 201 | 202))
    );
    let failed = answers.iter().filter(|a| a.count.is_none()).count();
    eprintln!(
        "{} answers, {failed} not acknowledged; ownership moved {moved_after:?} after the kill",
        answers.len()
    );
    // A 503 may have been counted before its answer was lost: counts are at least the
    // acknowledged ones, never fewer, and never two RRs.
    assert_counts(&client, &ns, &answers, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_terminated_replica_hands_off_and_the_others_answer_every_signal() {
    let plane = plane().await;
    let Stack {
        ns,
        client,
        mut gateways,
        http,
        ..
    } = Stack::open(plane, "ring-term", &[&[], &[], &[]]).await;
    let all: Vec<&Gateway> = gateways.iter().collect();
    members(&all, &http, 3).await;
    let leaving = gateways.pop().unwrap();
    let leaving_peer = leaving.peer.clone().unwrap();
    assert!(lease_holders(&client, &ns).await.contains(&leaving_peer));

    // Load on the two that stay; a third of it is owned by the one that leaves.
    let load = Load::start(&http, &ns, &gateways, 8);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let terminated_at = Instant::now();
    let exit = tokio::task::spawn_blocking(move || leaving.terminate());
    // The Lease goes at once (its duration is 15 s), not by expiry.
    eventually(Duration::from_secs(5), "the Lease released", || async {
        (!lease_holders(&client, &ns).await.contains(&leaving_peer)).then_some(())
    })
    .await;
    let released_after = terminated_at.elapsed();
    let stayed: Vec<&Gateway> = gateways.iter().collect();
    members(&stayed, &http, 2).await;
    assert!(exit.await.unwrap().success(), "a clean exit");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answers = load.finish().await;
    eprintln!(
        "{} answers; the Lease was released {released_after:?} after SIGTERM",
        answers.len()
    );
    assert!(released_after < Duration::from_secs(5));
    let bad: Vec<&Answer> = answers
        .iter()
        .filter(|a| !matches!(a.status, 201 | 202))
        .collect();
    assert!(bad.is_empty(), "the others answered {bad:?}");
    let forwarded = forwarded_ok(&gateways, &http).await;
    assert!(forwarded > 0.0, "the ring forwarded");
    assert_counts(&client, &ns, &answers, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_blind_to_the_members_costs_writes_never_counts() {
    let plane = plane().await;
    let Stack {
        ns,
        client,
        kubeconfig,
        mut gateways,
        http,
    } = Stack::open(plane, "ring-blind", &[&[], &[]]).await;

    // A third replica whose identity may keep its own Lease but not list or watch Leases: it
    // never learns of the others (its view lags for good), while they forward to it.
    drop(kubeconfig);
    let dir = tempfile::tempdir().unwrap();
    let blind_kubeconfig = dir.path().join("kubeconfig");
    let rules = vec![
        rule(
            "kubernaut.ai",
            "remediationrequests",
            &["get", "list", "watch", "create"],
        ),
        rule("kubernaut.ai", "remediationrequests/status", &["patch"]),
        rule(
            "coordination.k8s.io",
            "leases",
            &["create", "update", "delete"],
        ),
    ];
    restricted_identity(
        plane,
        &client,
        &ns,
        "blind-gateway",
        rules,
        &blind_kubeconfig,
    )
    .await;
    // Its identity cannot review tokens either, so it runs without sender authentication
    // (what this test is about is membership, not who may send).
    let blind = Gateway::start(
        &blind_kubeconfig,
        &ns,
        &["--auth-mode", "none", "--owners-resolve", "false"],
    );
    blind.ready(&http).await;
    gateways.push(blind);
    members(&[&gateways[0], &gateways[1]], &http, 3).await;
    assert_eq!(
        gateways[2]
            .metric(&http, "gateway_cluster_members", &[])
            .await,
        1.0,
        "the blind replica sees only itself"
    );

    let load = Load::start(&http, &ns, &gateways, 12);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let answers = load.finish().await;
    let bad: Vec<&Answer> = answers
        .iter()
        .filter(|a| !matches!(a.status, 201 | 202))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
    // The disagreement was real: the blind replica recorded signals the others would have
    // forwarded, and they forwarded to it.
    let blind_forwards = gateways[2]
        .metric(&http, "gateway_forwarded_signals_total", &[])
        .await;
    assert_eq!(blind_forwards, 0.0, "the blind replica forwards nothing");
    let forwarded = forwarded_ok(&gateways[..2], &http).await;
    assert!(forwarded > 0.0);
    eprintln!("{} answers, {forwarded} forwarded", answers.len());
    assert_counts(&client, &ns, &answers, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_notification_from_three_alertmanagers_counts_once() {
    let plane = plane().await;
    let Stack {
        ns,
        client,
        gateways,
        http,
        ..
    } = Stack::open(plane, "ring-ha", &[&[], &[], &[]]).await;
    let all: Vec<&Gateway> = gateways.iter().collect();
    members(&all, &http, 3).await;

    // Alertmanager in HA: every instance sends the same notification, each to a different
    // replica behind the Service, at the same moment. Twelve notifications about one pod,
    // then one about each of twelve pods.
    let mut deliveries = Vec::new();
    for i in 0..12 {
        let mut body = alert("HighErrorRate", &ns, "api-0");
        body["alerts"][0]["labels"]["delivery"] = i.to_string().into();
        deliveries.push(("api-0".to_owned(), body));
    }
    for i in 0..12 {
        let pod = format!("web-{i}");
        deliveries.push((pod.clone(), alert("HighErrorRate", &ns, &pod)));
    }
    let answers = join_all(deliveries.iter().map(|(pod, body)| {
        let http = http.clone();
        let gateways = &gateways;
        async move {
            let urls: Vec<String> = gateways.iter().map(url).collect();
            let copies = join_all(urls.iter().map(|u| http.post(u, body))).await;
            let ordinals: Vec<(String, i64)> = copies
                .iter()
                .map(|(status, answer)| {
                    let count = match status {
                        201 => 1,
                        202 => answer["metadata"]["count"].as_i64().unwrap(),
                        other => panic!("{other}: {answer}"),
                    };
                    (
                        answer["remediationRequestName"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                        count,
                    )
                })
                .collect();
            (pod.clone(), ordinals)
        }
    }))
    .await;
    let mut per_pod: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (pod, ordinals) in answers {
        assert!(
            ordinals.windows(2).all(|w| w[0] == w[1]),
            "{pod}: the three copies of one notification answered {ordinals:?}"
        );
        per_pod.entry(pod).or_default().push(ordinals[0].1);
    }
    for (pod, mut ordinals) in per_pod {
        ordinals.sort_unstable();
        let n = ordinals.len() as i64;
        assert_eq!(ordinals, (1..=n).collect::<Vec<_>>(), "{pod}");
        let rrs = rrs_of(&client, &ns, &pod_fingerprint(&ns, &pod)).await;
        assert_eq!(rrs.len(), 1, "{pod}");
        assert_eq!(
            count_of(&rrs[0]),
            n,
            "{pod}: each notification counted once"
        );
    }
    let mut redeliveries = 0.0;
    for gateway in &gateways {
        redeliveries += gateway
            .metric(&http, "gateway_redeliveries_total", &[])
            .await;
    }
    assert_eq!(redeliveries, 48.0, "two copies of each of 24 notifications");
}
