//! Alert ingestion gateway for Kubernetes remediation: receives Alertmanager webhooks and
//! Kubernetes Events, turns each into a `RemediationRequest` custom resource, counts repeats
//! onto the RR that already exists, and marks alert storms. All state lives in Kubernetes.
//!
//! # Layout
//! Dependencies point one way, from the top of this list to the bottom; no module imports one
//! listed above it.
//! - [`run`] and [`parts`]: the entry point and what it serves with.
//! - [`api`]: the HTTP listeners (API, peer, health, metrics), limits, and the one error →
//!   response mapping.
//! - [`cluster`]: replicas sharing the work: Lease membership, ownership by fingerprint, the
//!   forward to the owner.
//! - [`auth`]: who may send signals (TokenReview + SubjectAccessReview, cached).
//! - [`config`]: the YAML configuration, every limit a documented field with a default.
//! - [`processor`]: the seam between the HTTP layer and deduplication, with the owner stage
//!   in front of the engine.
//! - [`owners`]: owner-chain resolution and the scope rule over a metadata-only cache of the
//!   workloads.
//! - [`dedup`]: the create-or-count engine with group commit, the RR builder, the watch.
//! - [`storm`]: the storm rule, the coalescing queue, and how storm status is written.
//! - [`ingest`]: wire formats ([`ingest::adapters`]) into [`ingest::Signal`]s, with the
//!   target-name rules ([`ingest::target`]) and the replay guard.
//! - [`index`]: the watch-fed fingerprint index and the deterministic RR names.
//! - [`k8s`]: RR types, the deduplication history in their status, Kubernetes calls with
//!   deadlines, circuit breaker.
//! - [`health`], [`shutdown`]: process-wide readiness and the shutdown tokens.
//! - [`fingerprint`]: the identity of a problem.
//! - [`telemetry`]: metric names, typed handles, `/proc` figures, exporter and logs.
//! - [`clock`]: injectable time.
#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod dedup;
pub mod fingerprint;
pub mod health;
pub mod index;
pub mod ingest;
pub mod k8s;
pub mod owners;
pub mod parts;
pub mod processor;
pub mod shutdown;
pub mod storm;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::server::{ServeOptions, serve};
use crate::api::{App, metrics, probes, routes};
use crate::config::Config;
pub use crate::parts::Parts;
use crate::processor::Processor;
use crate::telemetry::Metrics;

/// The bound listeners.
pub struct Listeners {
    /// Signal API.
    pub api: TcpListener,
    /// Signals forwarded by other replicas (`cluster.peer_listen`); served only when the parts
    /// joined a ring.
    pub peer: Option<TcpListener>,
    /// `/healthz`, `/readyz`.
    pub health: TcpListener,
    /// `/metrics`.
    pub metrics: TcpListener,
    /// TLS for the signal API ([`api::tls::Tls::load`] from `tls.*`); `None` serves plain HTTP.
    pub api_tls: Option<api::tls::Tls>,
}

impl Listeners {
    /// Three listeners on free loopback ports, for tests and benches.
    pub async fn loopback() -> std::io::Result<Listeners> {
        let bind = || TcpListener::bind("127.0.0.1:0");
        Ok(Listeners {
            api: bind().await?,
            peer: None,
            health: bind().await?,
            metrics: bind().await?,
            api_tls: None,
        })
    }
}

/// How long the peer listener keeps serving after the API drained, for forwards from peers
/// that have not yet seen this replica's Lease go.
pub const PEER_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves `parts` on `listeners` until `shutdown` completes, then shuts down in three steps:
/// readiness turns false and the listeners stop accepting (the watch ends too); in-flight
/// requests drain within `api.shutdown_grace`; the background work that runs last (the storm
/// queue's final flush) ends.
pub async fn run<P: Processor>(
    config: Config,
    parts: Parts<P>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) {
    let Parts {
        processor,
        auth,
        health,
        clock,
        shutdown: tokens,
        cluster,
        tasks,
    } = parts;
    let options = |name, max_connections| ServeOptions {
        name,
        max_connections,
        header_read_timeout: config.api.read_timeout,
        max_header_bytes: config.api.max_header_bytes,
        idle_timeout: config.api.idle_timeout,
        grace: config.api.shutdown_grace,
    };
    let api_options = options("api", config.api.max_connections);
    let health_options = options("health", config.api.health_max_connections);
    let metrics_options = options("metrics", config.api.metrics_max_connections);
    let peer_options = options("peer", config.cluster.max_connections);
    let handles = Metrics::new();
    let mut tasks = tasks;
    let acceptor = listeners.api_tls.map(|tls| {
        tasks.push(tokio::spawn(tls.reloader(tokens.intake())));
        tls.acceptor
    });
    let serve_peers = cluster.is_some();
    let app = Arc::new(
        App::new(
            processor,
            auth,
            config.api,
            health.clone(),
            handles.clone(),
            clock.clone(),
        )
        .with_cluster(cluster),
    );
    // The peer listener outlives the API's drain: this replica released its Lease at the first
    // step, and peers that have not seen that yet still get their forwards processed.
    let peer_stop = tokio_util::sync::CancellationToken::new();
    let peers = match listeners.peer.filter(|_| serve_peers) {
        Some(listener) => {
            let app = app.clone();
            Some(tokio::spawn(serve(
                listener,
                peer_options,
                None,
                handles.clone(),
                move |request| api::peer::handle(app.clone(), request),
                peer_stop.clone(),
            )))
        }
        None => None,
    };
    let api = tokio::spawn(serve(
        listeners.api,
        api_options,
        acceptor,
        handles.clone(),
        move |request| routes::handle(app.clone(), request),
        tokens.intake(),
    ));
    let probe_health = health.clone();
    let probes = tokio::spawn(serve(
        listeners.health,
        health_options,
        None,
        handles.clone(),
        move |request| {
            let response = probes::handle(&probe_health, &*clock, &request);
            async move { response }
        },
        tokens.intake(),
    ));
    let scrapes = tokio::spawn(serve(
        listeners.metrics,
        metrics_options,
        None,
        handles,
        |_request| async { metrics::handle() },
        tokens.intake(),
    ));

    shutdown.await;
    tracing::info!("shutting down: readiness off, draining in-flight requests");
    health.set_shutting_down();
    tokens.stop_intake();
    match api.await {
        Ok(true) => tracing::info!("in-flight requests drained"),
        _ => tracing::warn!("shutdown grace period ended with requests still open"),
    }
    if let Some(peers) = peers {
        // Long enough for every peer's Lease watch to see the release.
        tokio::time::sleep(PEER_LINGER).await;
        peer_stop.cancel();
        let _ = peers.await;
    }
    tokens.stop_all();
    let _ = tokio::join!(probes, scrapes);
    futures::future::join_all(tasks).await;
}
