//! The dedup index on the hot path: lookup, update from a write response, and lookup while
//! another thread updates (two-thread contention, as with a busy watch and request traffic).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::fingerprint::Fingerprint;
use gateway::index::Index;
use gateway::k8s::RemediationRequest;

#[path = "../examples/support/pod_rr.rs"]
mod pod_rr;

const ENTRIES: usize = 100_000;

fn rr(i: usize, resource_version: u64) -> (Fingerprint, RemediationRequest) {
    // Three arrivals, the last one now (the RR's last occurrence), as a repeating alert leaves.
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let recent = vec![now_ms - 2000, now_ms - 1000, now_ms];
    pod_rr::pod_rr(&format!("api-{i}"), recent, Some(resource_version))
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
