//! Feeds the [`Index`] from a watch on RRs in the controller namespace: a full list at start
//! and after every watch failure (410 Gone, a dropped connection, an apiserver restart), each
//! swapped in atomically, with backoff between attempts. Readiness follows the list.

use std::sync::Arc;

use futures::StreamExt;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch as signal;

use super::index::Index;
use crate::api::Health;
use crate::api::server::stopped;
use crate::k8s::types::RemediationRequest;
use crate::telemetry::Metrics;

/// Runs until `stop` turns true.
pub async fn run(
    api: Api<RemediationRequest>,
    index: Arc<Index>,
    health: Arc<Health>,
    metrics: Metrics,
    mut stop: signal::Receiver<bool>,
) {
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let mut lists = 0u64;
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = stopped(&mut stop) => return,
        };
        match event {
            None => return,
            Some(Ok(Event::Init)) => {
                if lists > 0 {
                    metrics.watch_restarts.increment(1);
                }
                index.begin_relist();
            }
            Some(Ok(Event::InitApply(rr))) => index.relist_apply(&rr),
            Some(Ok(Event::InitDone)) => {
                lists += 1;
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
                index.apply(&rr);
                metrics.index_entries.set(index.len() as f64);
            }
            Some(Ok(Event::Delete(rr))) => {
                index.remove_rr(&rr);
                metrics.index_entries.set(index.len() as f64);
            }
            Some(Err(error)) => {
                // The watcher relists after this (with backoff); until it does, the index may
                // miss changes, but every write stays exact because patches are conditional.
                health.set_kube_reachable(false);
                tracing::warn!(%error, "RemediationRequest watch failed; relisting");
            }
        }
    }
}
