//! Feeds the [`Index`] from a watch on RRs in the controller namespace: a full list at start,
//! a restarted watch after every failure (a dropped connection, an apiserver restart), and a
//! relist, swapped in atomically, when the watch cannot resume (410 Gone); backoff between
//! attempts. Readiness follows the first list and the API's reachability.

use std::sync::Arc;

use futures::StreamExt;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::index::Index;
use crate::k8s::types::RemediationRequest;
use crate::telemetry::Metrics;

/// RRs per list page. Each page is decoded whole (full objects, managed fields included) before
/// its items reach the index, and with glibc's allocator that transient heap stays resident
/// after the list: with 100 000 RRs a gateway settled at 41 MiB with pages of 500 and 30 MiB
/// with pages of 100, for a first list 8–17 s longer (PERF.md, 2026-12-02 "a smaller index").
const LIST_PAGE_SIZE: u32 = 100;

/// How often a lost API is probed for readiness.
const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs until `stop` is cancelled.
pub async fn run(
    api: Api<RemediationRequest>,
    index: Arc<Index>,
    health: Arc<Health>,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let probe_api = api.clone();
    let stream = watcher::watcher(api, watcher::Config::default().page_size(LIST_PAGE_SIZE))
        .default_backoff();
    futures::pin_mut!(stream);
    let mut probe = tokio::time::interval(PROBE_INTERVAL);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = probe.tick() => {
                // After a watch error the watcher may resume without a relist (and so without
                // an event) once the API answers again: probe so readiness comes back.
                if !health.is_kube_reachable() {
                    let params = ListParams::default().limit(1);
                    let list = probe_api.list(&params);
                    if let Ok(Ok(_)) = tokio::time::timeout(PROBE_INTERVAL, list).await {
                        health.set_kube_reachable(true);
                    }
                }
                continue;
            }
            _ = stop.cancelled() => return,
        };
        match event {
            None => return,
            Some(Ok(Event::Init)) => index.begin_relist(),
            Some(Ok(Event::InitApply(rr))) => index.relist_apply(&rr),
            Some(Ok(Event::InitDone)) => {
                index.finish_relist();
                metrics.index_entries.set(index.len() as f64);
                health.set_kube_reachable(true);
                health.set_index_synced(true);
                tracing::info!(
                    fingerprints = index.len(),
                    "RemediationRequest index listed"
                );
            }
            Some(Ok(Event::Apply(rr))) => {
                health.set_kube_reachable(true);
                index.apply(&rr);
                metrics.index_entries.set(index.len() as f64);
            }
            Some(Ok(Event::Delete(rr))) => {
                index.remove_rr(&rr);
                metrics.index_entries.set(index.len() as f64);
            }
            Some(Err(error)) => {
                // The watcher restarts after this (with backoff): from its last
                // resourceVersion when it can, with a relist (swapped in atomically) when that
                // version is gone. Meanwhile the index may miss changes, but every write stays
                // exact because dedup patches are conditional.
                health.set_kube_reachable(false);
                metrics.watch_restarts.increment(1);
                tracing::warn!(%error, "RemediationRequest watch failed; restarting it");
            }
        }
    }
}
