//! The HTTP side: the API listener ([`routes`]: signal routes, limits, errors; optionally over
//! [`tls`]), the health listener ([`probes`]: `/healthz`, `/readyz`), the metrics listener
//! ([`metrics`]), the peer listener ([`peer`]: signals forwarded by other replicas), and the
//! accept loop they share ([`server`]).
//!
//! Errors become responses in one place ([`error`]); the processing behind the routes is a
//! [`Processor`] so this layer is tested on its own.

pub mod error;
pub mod metrics;
pub mod peer;
pub mod probes;
pub mod routes;
pub mod server;
pub mod tls;

use std::sync::Arc;

use tokio::sync::Semaphore;

pub use error::ApiError;

use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::config::ApiConfig;
use crate::health::Health;
use crate::processor::Processor;
use crate::telemetry::Metrics;

/// Shared state of the API listener.
pub struct App<P> {
    /// Records valid signals.
    pub processor: Arc<P>,
    /// Decides who may send them.
    pub auth: Arc<dyn Authenticator>,
    /// Limits and listener settings.
    pub config: ApiConfig,
    /// Readiness flags, shared with the engine and the shutdown sequence.
    pub health: Arc<Health>,
    /// Hot-path metric handles.
    pub metrics: Metrics,
    /// Time source for freshness checks.
    pub clock: Arc<dyn Clock>,
    /// One permit per signal (alert or Event) being processed (`api.max_in_flight`).
    pub in_flight: Arc<Semaphore>,
    /// The ring this replica shares with its peers; `None` records every signal here.
    pub cluster: Option<Arc<Cluster>>,
}

impl<P: Processor> App<P> {
    /// Builds the state.
    pub fn new(
        processor: Arc<P>,
        auth: Arc<dyn Authenticator>,
        config: ApiConfig,
        health: Arc<Health>,
        metrics: Metrics,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
        App {
            processor,
            auth,
            config,
            health,
            metrics,
            clock,
            in_flight,
            cluster: None,
        }
    }

    /// The same state, forwarding each signal to the replica of `cluster` that owns it.
    pub fn with_cluster(mut self, cluster: Option<Arc<Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }
}
