//! Criterion benches of the request hot path, one group per stage so each module adds its own:
//! `ingest/*` (decode + validate + fingerprint of a webhook body), `fingerprint/*`, `owners/*`
//! (the owner stage over a preloaded cache). Group
//! functions are listed in `criterion_group!` at the bottom.
//!
//! Run: `cargo bench --bench hot_path -- --warm-up-time 1 --measurement-time 3`
//! (add a filter such as `ingest/` to run one group). Figures go to PERF.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use gateway::fingerprint::Fingerprint;
use gateway::ingest::adapters::{alertmanager, kubernetes_event};
use jiff::Timestamp;

/// The clock of every bench: the payloads' timestamps sit just before it.
fn now() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

/// One kube-state-metrics alert as Alertmanager sends it: 13 labels, 3 annotations.
fn alert_json(i: usize) -> String {
    format!(
        r#"{{"status":"firing","labels":{{"alertname":"KubePodCrashLooping","container":"api","endpoint":"http","instance":"10.128.2.15:8443","job":"kube-state-metrics","namespace":"payments","pod":"payment-api-7d9f8b6c5-{i:05}","prometheus":"monitoring/k8s","reason":"CrashLoopBackOff","service":"kube-state-metrics","severity":"warning","cluster":"eu-west-1-prod","uid":"0a1b2c3d-4e5f-6a7b-8c9d-{i:012}"}},"annotations":{{"description":"Pod payments/payment-api-7d9f8b6c5-{i:05} (api) is in waiting state (reason: \"CrashLoopBackOff\").","runbook_url":"https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping","summary":"Pod is crash looping."}},"startsAt":"2026-03-01T11:57:30.123Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus-k8s-0:9090/graph?g0.expr=max_over_time%28kube_pod_container_status_waiting_reason%7Breason%3D%22CrashLoopBackOff%22%7D%5B5m%5D%29+%3E%3D+1&g0.tab=1","fingerprint":"{i:016x}"}}"#
    )
}

/// An Alertmanager v4 webhook body carrying `n` alerts.
fn webhook_json(n: usize) -> Vec<u8> {
    let alerts: Vec<String> = (0..n).map(alert_json).collect();
    format!(
        r#"{{"receiver":"kubernaut-gateway","status":"firing","alerts":[{}],"groupLabels":{{"alertname":"KubePodCrashLooping"}},"commonLabels":{{"alertname":"KubePodCrashLooping","cluster":"eu-west-1-prod","namespace":"payments","severity":"warning"}},"commonAnnotations":{{"summary":"Pod is crash looping."}},"externalURL":"http://alertmanager-main-0:9093","version":"4","groupKey":"{{}}:{{alertname=\"KubePodCrashLooping\"}}","truncatedAlerts":0}}"#,
        alerts.join(",")
    )
    .into_bytes()
}

const EVENT_JSON: &str = r#"{"apiVersion":"v1","kind":"Event","metadata":{"name":"payment-api-7d9f8b6c5-x2x4z.18a3f1c2d4e5f6a7","namespace":"payments","uid":"5f0e8d2c-1b3a-4c5d-9e8f-7a6b5c4d3e2f","resourceVersion":"8812734","creationTimestamp":"2026-03-01T11:41:07Z"},"involvedObject":{"kind":"Pod","namespace":"payments","name":"payment-api-7d9f8b6c5-x2x4z","uid":"0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d","apiVersion":"v1","resourceVersion":"8811002","fieldPath":"spec.containers{api}"},"reason":"BackOff","message":"Back-off restarting failed container api in pod payment-api-7d9f8b6c5-x2x4z","source":{"component":"kubelet","host":"worker-1"},"firstTimestamp":"2026-03-01T11:41:07Z","lastTimestamp":"2026-03-01T11:59:12Z","count":42,"type":"Warning","eventTime":null,"reportingComponent":"kubelet","reportingInstance":"worker-1"}"#;

/// `ingest/alertmanager/*`: decode, validate and fingerprint a whole webhook, simd-json (the
/// product path) against serde_json (same wire structs and rules). Each iteration gets a fresh
/// copy of the body, made outside the timing (simd-json rewrites its buffer; the HTTP layer
/// hands over a body it owns), and the signals are dropped outside the timing too.
fn bench_ingest_alertmanager(c: &mut Criterion) {
    let mut group = c.benchmark_group("ingest/alertmanager");
    for n in [1usize, 50] {
        let body = webhook_json(n);
        // Sanity: every alert of the bench payload is accepted by both decoders.
        let mut check = body.clone();
        let accepted = alertmanager::parse(&mut check, None, now()).unwrap();
        assert_eq!(accepted.iter().filter(|r| r.is_ok()).count(), n);
        assert_eq!(
            accepted,
            alertmanager::parse_with_serde_json(&body, None, now()).unwrap()
        );

        group.throughput(Throughput::Bytes(body.len() as u64));
        let label = if n == 1 { "1_alert" } else { "50_alerts" };
        group.bench_function(format!("simd_json/{label}"), |b| {
            b.iter_batched_ref(
                || body.clone(),
                |buf| black_box(alertmanager::parse(buf, None, now()).unwrap()),
                BatchSize::SmallInput,
            )
        });
        // Same harness as above (input set up and output dropped outside the timing), so the
        // two differ only by the decoder.
        group.bench_function(format!("serde_json/{label}"), |b| {
            b.iter_batched_ref(
                || body.clone(),
                |buf| black_box(alertmanager::parse_with_serde_json(buf, None, now()).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// `ingest/kubernetes_event/*`: one Event, decoded through simd-json's borrowed DOM.
fn bench_ingest_kubernetes_event(c: &mut Criterion) {
    let mut group = c.benchmark_group("ingest/kubernetes_event");
    let body = EVENT_JSON.as_bytes().to_vec();
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("simd_json/1_event", |b| {
        b.iter_batched_ref(
            || body.clone(),
            |buf| black_box(kubernetes_event::parse(buf, now()).unwrap()),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// `fingerprint/*`: the hash alone.
fn bench_fingerprint(c: &mut Criterion) {
    let mut group = c.benchmark_group("fingerprint");
    group.bench_function("of/cluster_namespaced", |b| {
        b.iter(|| {
            Fingerprint::of(
                black_box(Some("eu-west-1-prod")),
                black_box("payments"),
                black_box("Pod"),
                black_box("payment-api-7d9f8b6c5-x2x4z"),
            )
        })
    });
    group.finish();
}

/// `owners/*`: the owner stage on one alert's signal (cloned outside the timing), over a cache
/// holding 10 000 pods of 100 Deployments (Pod → ReplicaSet → Deployment): resolution found
/// (three lookups and a new fingerprint), a pod not in the cache (the fallback), and the stage
/// with resolution off.
fn bench_owners(c: &mut Criterion) {
    use gateway::health::Health;
    use gateway::owners::cache::{Cache, Settings};
    use gateway::owners::{Kind, Stage, stage};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    let meta = |name: String, owner: Option<(&str, &str, String)>| ObjectMeta {
        name: Some(name),
        namespace: Some("payments".into()),
        owner_references: owner.map(|(kind, api_version, name)| {
            vec![OwnerReference {
                api_version: api_version.into(),
                kind: kind.into(),
                name,
                uid: "u".into(),
                controller: Some(true),
                ..OwnerReference::default()
            }]
        }),
        ..ObjectMeta::default()
    };
    let settings = Settings {
        enabled: true,
        namespaces: Vec::new(),
        namespaces_metadata: false,
    };
    let cache = Cache::new(&settings, std::sync::Arc::new(Health::new()));
    let deployments: Vec<_> = (0..100)
        .map(|d| meta(format!("payment-api-{d}"), None))
        .collect();
    let sets: Vec<_> = (0..100)
        .map(|d| {
            let owner = ("Deployment", "apps/v1", format!("payment-api-{d}"));
            meta(format!("payment-api-7d9f8b6c5-{d}"), Some(owner))
        })
        .collect();
    let pods: Vec<_> = (0..10_000)
        .map(|i| {
            let owner = (
                "ReplicaSet",
                "apps/v1",
                format!("payment-api-7d9f8b6c5-{}", i % 100),
            );
            meta(format!("payment-api-7d9f8b6c5-{i:05}"), Some(owner))
        })
        .collect();
    cache.preload(Kind::Deployment, &deployments);
    cache.preload(Kind::ReplicaSet, &sets);
    cache.preload(Kind::Pod, &pods);
    let signal = |i: usize| {
        let mut body = format!(
            r#"{{"version":"4","status":"firing","alerts":[{}]}}"#,
            alert_json(i)
        )
        .into_bytes();
        alertmanager::parse(&mut body, None, now())
            .unwrap()
            .remove(0)
            .unwrap()
    };
    let found = signal(42);
    let missing = signal(99_999);
    let mut group = c.benchmark_group("owners");
    for (label, resolve, input) in [
        ("resolved/3_lookups", true, &found),
        ("fallback/not_found", true, &missing),
        ("off", false, &found),
    ] {
        let stage = Stage::new(
            cache.clone(),
            stage::Settings {
                resolve,
                managed_only: false,
            },
        );
        if label.starts_with("resolved") {
            let mut check = input.clone();
            stage.apply(&mut check);
            assert_eq!(check.resource.kind, "Deployment");
        }
        group.bench_function(label, |b| {
            b.iter_batched_ref(
                || input.clone(),
                |signal| stage.apply(black_box(signal)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_ingest_alertmanager,
    bench_ingest_kubernetes_event,
    bench_fingerprint,
    bench_owners
);
criterion_main!(benches);
