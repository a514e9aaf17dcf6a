//! Alert ingestion gateway for Kubernetes remediation: receives Alertmanager webhooks and
//! Kubernetes Events, turns each into a `RemediationRequest` custom resource, counts repeats
//! onto the RR that already exists, and marks alert storms. All state lives in Kubernetes.
//!
//! # Layout
//! - [`config`]: the YAML configuration, every limit a documented field with a default.
//! - [`api`]: the three HTTP listeners, limits, and the one error → response mapping.
//! - [`ingest`]: wire formats ([`ingest::adapters`]) into [`ingest::Signal`]s.
//! - [`fingerprint`]: the identity of a problem.
//! - [`processor`]: the seam between the HTTP layer and the engine.
//! - [`dedup`]: the watch-fed index and the create-or-count engine with group commit.
//! - [`k8s`]: RR types, Kubernetes calls with deadlines, circuit breaker.
//! - [`telemetry`]: metric names, typed handles, exporter and logs.
//! - [`clock`]: injectable time.
#![deny(missing_docs)]

pub mod api;
pub mod clock;
pub mod config;
pub mod dedup;
pub mod fingerprint;
pub mod ingest;
pub mod k8s;
pub mod processor;
pub mod storm;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::server::{ServeOptions, serve};
use crate::api::{App, Health};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, StormUpdates};
use crate::dedup::{Engine, EngineSettings, Index};
use crate::k8s::breaker::Breaker;
use crate::k8s::store::KubeStore;
use crate::storm::{Storm, StormQueue, StormRule};
use crate::telemetry::Metrics;

/// The three bound listeners.
pub struct Listeners {
    /// Signal API.
    pub api: TcpListener,
    /// `/healthz`, `/readyz`.
    pub health: TcpListener,
    /// `/metrics`.
    pub metrics: TcpListener,
}

/// Runs the gateway until `shutdown` completes, then shuts down in three steps: readiness
/// turns false and the API listener stops accepting; in-flight requests drain within
/// `api.shutdown_grace`; background work (the watch, the storm queue) ends.
///
/// `namespace` is the resolved controller namespace.
pub async fn run(
    config: Config,
    client: kube::Client,
    namespace: String,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) {
    let metrics = Metrics::new();
    let health = Arc::new(Health::new());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let index = Arc::new(Index::new());
    let (stop_tx, stop) = watch::channel(false);

    let breaker = Arc::new(Breaker::new(
        config.kubernetes.breaker_failures,
        config.kubernetes.breaker_cooldown,
        metrics.circuit_breaker_state.clone(),
    ));
    let store = KubeStore::new(
        client.clone(),
        &namespace,
        config.kubernetes.call_timeout,
        breaker,
        metrics.clone(),
        health.clone(),
    );
    let store = Arc::new(store);
    let rule = StormRule {
        threshold: config.storm.threshold,
        window: config.storm.window,
        history_size: config.storm.history_size,
    };
    let queue = Arc::new(StormQueue::new(
        config.storm.queue_capacity,
        metrics.clone(),
    ));
    let storm = Storm::new(
        rule,
        config.storm.updates,
        queue.clone(),
        store.clone(),
        index.clone(),
        metrics.clone(),
    );
    let (storm_stop_tx, storm_stop) = watch::channel(false);
    let storm_task = tokio::spawn(storm::queue::run(
        queue,
        store.clone(),
        index.clone(),
        metrics.clone(),
        config.storm.flush_interval,
        config.storm.max_concurrent_patches,
        storm_stop,
    ));
    let settings = EngineSettings {
        namespace: namespace.clone(),
        rule,
        max_attempts: config.kubernetes.max_attempts,
        inline_storm: config.storm.updates == StormUpdates::Inline,
    };
    let engine = Engine::new(
        store,
        index.clone(),
        settings,
        clock.clone(),
        metrics.clone(),
        storm,
    );
    let watch_task = tokio::spawn(dedup::watch::run(
        kube::Api::namespaced(client, &namespace),
        index,
        health.clone(),
        metrics.clone(),
        stop.clone(),
    ));

    let app = Arc::new(App::new(
        Arc::new(engine),
        config.api.clone(),
        health.clone(),
        metrics,
        clock.clone(),
    ));
    let options = ServeOptions {
        max_connections: config.api.max_connections,
        header_read_timeout: config.api.read_timeout,
        grace: config.api.shutdown_grace,
    };
    let api_task = tokio::spawn(serve(
        listeners.api,
        options.clone(),
        move |request| api::routes::handle(app.clone(), request),
        stop.clone(),
    ));
    let probe_health = health.clone();
    let health_task = tokio::spawn(serve(
        listeners.health,
        options.clone(),
        move |request| {
            let response = api::health::handle(&probe_health, &*clock, &request);
            async move { response }
        },
        stop.clone(),
    ));
    let metrics_task = tokio::spawn(serve(
        listeners.metrics,
        options,
        |_request| {
            let body = telemetry::render();
            async move {
                let mut response = http::Response::new(bytes::Bytes::from(body));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                response
            }
        },
        stop.clone(),
    ));

    shutdown.await;
    tracing::info!("shutting down: readiness off, draining in-flight requests");
    health.set_shutting_down();
    let _ = stop_tx.send(true);
    match api_task.await {
        Ok(true) => tracing::info!("in-flight requests drained"),
        _ => tracing::warn!("shutdown grace period ended with requests still open"),
    }
    // Last step: the storm queue writes what is pending, after the requests that fed it.
    let _ = storm_stop_tx.send(true);
    let _ = tokio::join!(health_task, metrics_task, watch_task, storm_task);
}
