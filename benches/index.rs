//! The dedup index on the hot path: lookup, update from a write response, and lookup while
//! another thread updates (two-thread contention, as with a busy watch and request traffic).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::dedup::Index;
use gateway::fingerprint::Fingerprint;
use gateway::k8s::RemediationRequest;
use gateway::k8s::types::{
    DeduplicationStatus, RemediationRequestSpec, RemediationRequestStatus, ResourceRef,
    SignalSource, SignalType, TargetType,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

const ENTRIES: usize = 100_000;

fn rr(i: usize, resource_version: u64) -> (Fingerprint, RemediationRequest) {
    let fingerprint = Fingerprint::of(None, "shop", "Pod", &format!("api-{i}"));
    let now = Time(jiff::Timestamp::now());
    let spec = RemediationRequestSpec {
        signal_fingerprint: fingerprint.to_string(),
        signal_name: "HighErrorRate".into(),
        severity: "critical".into(),
        signal_type: SignalType::Alert,
        signal_source: SignalSource::Prometheus,
        target_type: TargetType::Kubernetes,
        target_resource: ResourceRef {
            kind: "Pod".into(),
            name: format!("api-{i}"),
            namespace: Some("shop".into()),
            api_version: None,
        },
        cluster_id: None,
        firing_time: now.clone(),
        received_time: now.clone(),
        signal_labels: None,
        signal_annotations: None,
        original_payload: None,
    };
    let mut rr = RemediationRequest::new(&format!("rr-{i}"), spec);
    rr.metadata.resource_version = Some(resource_version.to_string());
    rr.status = Some(RemediationRequestStatus {
        deduplication: Some(DeduplicationStatus {
            occurrence_count: 3,
            first_seen_at: now.clone(),
            last_seen_at: now,
            recent_occurrences: vec![1, 2, 3],
            storm_detected_at: None,
            storm_detected_count: None,
        }),
        ..RemediationRequestStatus::default()
    });
    (fingerprint, rr)
}

fn filled() -> (Arc<Index>, Vec<(Fingerprint, RemediationRequest)>) {
    let index = Arc::new(Index::new());
    let rrs: Vec<_> = (0..ENTRIES).map(|i| rr(i, 1)).collect();
    for (_, rr) in &rrs {
        index.apply(rr);
    }
    (index, rrs)
}

fn index(c: &mut Criterion) {
    let (index, rrs) = filled();
    let now = jiff::Timestamp::now();
    let mut group = c.benchmark_group("index");
    let mut i = 0;
    group.bench_function("lookup_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % ENTRIES;
            black_box(index.active(&rrs[i].0, now))
        })
    });
    let mut rv = 2;
    group.bench_function("apply_write_response", |b| {
        b.iter(|| {
            i = (i + 7919) % ENTRIES;
            rv += 1;
            let mut rr = rrs[i].1.clone();
            rr.metadata.resource_version = Some(rv.to_string());
            index.apply(black_box(&rr));
        })
    });
    // Lookups on this thread while another thread applies updates as fast as it can.
    group.bench_function("lookup_while_other_thread_applies", |b| {
        b.iter_custom(|iters| {
            let stop = Arc::new(AtomicBool::new(false));
            let writer = {
                let (index, stop) = (index.clone(), stop.clone());
                let updates: Vec<RemediationRequest> = (0..1000)
                    .map(|j| rr(j * 97 % ENTRIES, 1_000_000 + j as u64).1)
                    .collect();
                std::thread::spawn(move || {
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        index.apply(&updates[n % updates.len()]);
                        n += 1;
                    }
                })
            };
            std::thread::sleep(Duration::from_millis(1));
            let started = Instant::now();
            for _ in 0..iters {
                i = (i + 7919) % ENTRIES;
                black_box(index.active(&rrs[i].0, now));
            }
            let elapsed = started.elapsed();
            stop.store(true, Ordering::Relaxed);
            let _ = writer.join();
            elapsed
        })
    });
    group.finish();
}

criterion_group!(benches, index);
criterion_main!(benches);
