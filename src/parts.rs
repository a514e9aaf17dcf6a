//! What [`crate::run`] serves with: the [`Processor`] behind the routes, who may call them,
//! readiness, the clock, the shutdown tokens, the ring shared with other replicas, and the
//! background tasks the processor needs.
//! Built against a cluster ([`Parts::kube`]: the dedup engine behind the redelivery window
//! behind the owner stage), around any [`RrStore`] ([`Parts::store`]: the engine behind the
//! redelivery window, for an in-memory store), or around any [`Processor`]
//! ([`Parts::processor`], for the HTTP contract alone).

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::auth::{self, Authenticator};
use crate::clock::{Clock, SystemClock};
use crate::cluster::Cluster;
use crate::config::{AuthMode, Config};
use crate::dedup::{self, Engine, redelivery};
use crate::health::Health;
use crate::index::Index;
use crate::k8s::breaker::Breaker;
use crate::k8s::store::{KubeStore, RrStore};
use crate::owners::{self, cache::Cache};
use crate::processor::{Owners, Processor, Redeliveries};
use crate::shutdown::Shutdown;
use crate::storm;
use crate::telemetry::Metrics;

/// The parts of one gateway. Constructors spawn background tasks, so they must be called
/// inside a tokio runtime; the tasks end with [`Parts::shutdown`].
pub struct Parts<P> {
    /// Records the signals the routes accept.
    pub processor: Arc<P>,
    /// Decides who may send them. Against a cluster it follows `auth.mode`; the constructors
    /// without one ([`Parts::store`], [`Parts::processor`]) start [`auth::Open`], and
    /// [`Parts::with_auth`] replaces it.
    pub auth: Arc<dyn Authenticator>,
    /// Readiness, shared with the watch, the Kubernetes calls and the shutdown sequence.
    pub health: Arc<Health>,
    /// Time for the routes' freshness checks (the engine holds its own handle).
    pub clock: Arc<dyn Clock>,
    /// The tokens the background tasks stop on.
    pub shutdown: Shutdown,
    /// The ring shared with the other replicas (`cluster.*`), once joined with
    /// [`Parts::with_cluster`]; `None` records every signal here.
    pub cluster: Option<Arc<Cluster>>,
    /// Spawned background tasks, awaited at the end of shutdown.
    pub(crate) tasks: Vec<JoinHandle<()>>,
}

impl Parts<Owners<Redeliveries<Engine<KubeStore>>, Cache>> {
    /// Against a cluster: the owner stage over its metadata cache and watches (when
    /// `owners.resolve` or `scope.managed_only` is on), the redelivery window, the real store
    /// over RRs in `namespace`, the watch that feeds the index, and, in
    /// `storm.updates: async`, the storm flusher.
    pub fn kube(config: &Config, client: kube::Client, namespace: &str) -> Self {
        let engine = Parts::<Engine<KubeStore>>::engine_parts(config, client.clone(), namespace);
        let settings = owners::cache::Settings {
            enabled: config.owners.resolve || config.scope.managed_only,
            namespaces: config.owners.namespaces.clone(),
            namespaces_metadata: config.scope.managed_only,
        };
        let cache = Cache::new(&settings, engine.health.clone());
        let mut tasks = engine.tasks;
        tasks.extend(cache.spawn(&client, &engine.shutdown.intake()));
        let stage = owners::Stage::new(
            cache,
            owners::stage::Settings {
                resolve: config.owners.resolve,
                managed_only: config.scope.managed_only,
            },
        );
        let recorder = Arc::new(redeliveries(config, engine.processor, engine.clock.clone()));
        Parts {
            processor: Arc::new(Owners::new(recorder, stage)),
            auth: engine.auth,
            health: engine.health,
            clock: engine.clock,
            shutdown: engine.shutdown,
            cluster: None,
            tasks,
        }
    }
}

impl Parts<Engine<KubeStore>> {
    fn engine_parts(config: &Config, client: kube::Client, namespace: &str) -> Self {
        let metrics = Metrics::new();
        let health = Arc::new(Health::new());
        let breaker = Arc::new(Breaker::new(
            config.kubernetes.breaker_failures,
            config.kubernetes.breaker_cooldown,
            metrics.circuit_breaker_state.clone(),
        ));
        let store = Arc::new(KubeStore::new(
            client.clone(),
            namespace,
            config.kubernetes.call_timeout,
            breaker,
            metrics.clone(),
            health.clone(),
        ));
        let mut parts = Self::engine(config, store, namespace, Arc::new(SystemClock), health);
        parts.auth = match config.auth.mode {
            AuthMode::None => {
                tracing::warn!(
                    "auth.mode is none: anyone who can reach the API port can create RemediationRequests"
                );
                Arc::new(auth::Open)
            }
            AuthMode::Kubernetes => {
                let authorize = &config.auth.authorize;
                let access = auth::kube::Access {
                    verb: authorize.verb.clone(),
                    group: authorize.group.clone(),
                    resource: authorize.resource.clone(),
                    namespace: authorize
                        .namespace
                        .clone()
                        .unwrap_or_else(|| namespace.to_owned()),
                };
                let reviewer = auth::kube::KubeReviewer::new(
                    client.clone(),
                    access,
                    config.auth.audiences.clone(),
                    config.kubernetes.call_timeout,
                    metrics.clone(),
                );
                let limits = auth::cache::Limits {
                    ttl: config.auth.cache_ttl,
                    negative_ttl: config.auth.negative_cache_ttl,
                    capacity: config.auth.cache_size,
                };
                Arc::new(auth::cache::Cached::new(reviewer, limits, metrics.clone()))
            }
        };
        let watch = dedup::watch::run(
            kube::Api::namespaced(client, namespace),
            parts.processor.index().clone(),
            parts.health.clone(),
            metrics,
            parts.shutdown.intake(),
        );
        parts.tasks.push(tokio::spawn(watch));
        parts
    }
}

impl<S: RrStore> Parts<Redeliveries<Engine<S>>> {
    /// Around `store`, behind the redelivery window, with no watch: the index learns only from
    /// the engine's own writes and counts as listed at once. For tests and benches over an
    /// in-memory store.
    pub fn store(config: &Config, store: Arc<S>, namespace: &str, clock: Arc<dyn Clock>) -> Self {
        let health = Arc::new(Health::new());
        health.set_index_synced(true);
        let parts = Parts::<Engine<S>>::engine(config, store, namespace, clock, health);
        Parts {
            processor: Arc::new(redeliveries(config, parts.processor, parts.clock.clone())),
            auth: parts.auth,
            health: parts.health,
            clock: parts.clock,
            shutdown: parts.shutdown,
            cluster: None,
            tasks: parts.tasks,
        }
    }
}

/// `inner` behind the redelivery window of `redelivery.*`; a repeat waits for its original at
/// most as long as the engine may take to answer it (`api.request_timeout`).
fn redeliveries<P>(config: &Config, inner: Arc<P>, clock: Arc<dyn Clock>) -> Redeliveries<P> {
    let settings = redelivery::Settings {
        window: config.redelivery.window,
        max_entries: config.redelivery.max_entries,
        wait: config.api.request_timeout,
    };
    Redeliveries::new(inner, settings, clock, Metrics::new())
}

impl<S: RrStore> Parts<Engine<S>> {
    fn engine(
        config: &Config,
        store: Arc<S>,
        namespace: &str,
        clock: Arc<dyn Clock>,
        health: Arc<Health>,
    ) -> Self {
        let metrics = Metrics::new();
        let index = Arc::new(Index::new());
        let shutdown = Shutdown::new();
        let rule = storm::Rule {
            threshold: config.storm.threshold,
            window: config.storm.window,
            history_size: config.storm.history_size(),
        };
        let storm = storm::Writer::new(
            rule,
            config.storm.updates,
            config.storm.queue_capacity,
            store.clone(),
            index.clone(),
            metrics.clone(),
        );
        // The storm queue flushes last, after the requests that feed it drained.
        let flusher = storm.flusher(
            config.storm.flush_interval,
            config.storm.max_concurrent_patches,
            config.storm.final_flush_timeout,
            shutdown.last(),
        );
        let settings = dedup::Settings {
            namespace: namespace.to_owned(),
            max_attempts: config.kubernetes.max_attempts,
            status_init_delay: config.kubernetes.status_init_delay,
            payload: config.kubernetes.original_payload,
            managed_fields: config.kubernetes.managed_fields,
            request_timeout: config.api.request_timeout,
            call_timeout: config.kubernetes.call_timeout,
        };
        let engine = Engine::new(store, index, settings, clock.clone(), metrics, storm);
        Parts {
            processor: Arc::new(engine),
            auth: Arc::new(auth::Open),
            health,
            clock,
            shutdown,
            cluster: None,
            tasks: flusher.map(tokio::spawn).into_iter().collect(),
        }
    }
}

impl<P: Processor> Parts<P> {
    /// The same parts, with `auth` deciding who may send signals.
    pub fn with_auth(mut self, auth: Arc<dyn Authenticator>) -> Self {
        self.auth = auth;
        self
    }

    /// The same parts in the ring `cluster` (from [`Cluster::join`] with these parts'
    /// shutdown tokens), whose `tasks` end with them.
    pub fn with_cluster(mut self, cluster: Arc<Cluster>, tasks: Vec<JoinHandle<()>>) -> Self {
        self.cluster = Some(cluster);
        self.tasks.extend(tasks);
        self
    }

    /// Around `processor`, ready at once, with no background task.
    pub fn processor(processor: Arc<P>, clock: Arc<dyn Clock>) -> Self {
        let health = Arc::new(Health::new());
        health.set_index_synced(true);
        Parts {
            processor,
            auth: Arc::new(auth::Open),
            health,
            clock,
            shutdown: Shutdown::new(),
            cluster: None,
            tasks: Vec::new(),
        }
    }
}
