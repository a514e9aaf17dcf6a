//! The `gateway` binary: configuration, telemetry, listeners, signals, exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use gateway::config::Config;
use gateway::storm::Mode;
use gateway::telemetry::{self, LogFormat};

/// Alert ingestion gateway for Kubernetes remediation.
///
/// Every option can also be set in the YAML file given by --config, or by its environment
/// variable; flags win over environment, environment over the file.
#[derive(Parser, Debug)]
#[command(version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("GATEWAY_COMMIT"), ")"))]
#[command(args_override_self = true)]
struct Args {
    /// YAML configuration file (keys as in deploy/config.example.yaml).
    #[arg(long, env = "GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Signal API listen address [api.listen; default 0.0.0.0:8080].
    #[arg(long, env = "GATEWAY_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Health listen address [api.health_listen; default 0.0.0.0:8081].
    #[arg(long, env = "GATEWAY_HEALTH_LISTEN")]
    health_listen: Option<std::net::SocketAddr>,
    /// Metrics listen address [api.metrics_listen; default 0.0.0.0:9090].
    #[arg(long, env = "GATEWAY_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Largest request body in bytes [api.body_limit; default 262144].
    #[arg(long, env = "GATEWAY_BODY_LIMIT")]
    body_limit: Option<usize>,
    /// Signal requests in flight before answering 503 [api.max_in_flight; default 1000].
    #[arg(long, env = "GATEWAY_MAX_IN_FLIGHT")]
    max_in_flight: Option<usize>,
    /// Controller namespace holding the RRs [kubernetes.namespace; default: own namespace].
    #[arg(long, env = "GATEWAY_NAMESPACE")]
    namespace: Option<String>,
    /// Kubeconfig file [kubernetes.kubeconfig; default: in-cluster, else KUBECONFIG].
    #[arg(long, env = "GATEWAY_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Deadline of each Kubernetes call, e.g. 2s [kubernetes.call_timeout; default 2s].
    #[arg(long, env = "GATEWAY_K8S_TIMEOUT", value_parser = gateway::config::duration::parse)]
    k8s_timeout: Option<std::time::Duration>,
    /// Occurrences within the window that make a storm [storm.threshold; default 5].
    #[arg(long, env = "GATEWAY_STORM_THRESHOLD")]
    storm_threshold: Option<u32>,
    /// Storm window, 0 = RR lifetime [storm.window; default 60s].
    #[arg(long, env = "GATEWAY_STORM_WINDOW", value_parser = gateway::config::duration::parse)]
    storm_window: Option<std::time::Duration>,
    /// Storm queue flush interval [storm.flush_interval; default 200ms].
    #[arg(long, env = "GATEWAY_STORM_FLUSH_INTERVAL", value_parser = gateway::config::duration::parse)]
    storm_flush_interval: Option<std::time::Duration>,
    /// How long an identical delivery is answered with the ordinal of the one it repeats instead of counting, 0 = off; keep it well below Alertmanager's repeat_interval [redelivery.window; default 10s].
    #[arg(long, env = "GATEWAY_REDELIVERY_WINDOW", value_parser = gateway::config::duration::parse)]
    redelivery_window: Option<std::time::Duration>,
    /// spec.originalPayload: full (as received) or compact (an alert without the labels and annotations the RR holds anyway) [kubernetes.original_payload; default full].
    #[arg(long, env = "GATEWAY_ORIGINAL_PAYLOAD")]
    original_payload: Option<gateway::dedup::rr::Payload>,
    /// metadata.managedFields of RRs: strip (cleared once an RR repeats: cheaper writes) or keep [kubernetes.managed_fields; default strip].
    #[arg(long, env = "GATEWAY_MANAGED_FIELDS")]
    managed_fields: Option<gateway::config::ManagedFields>,
    /// Arrival times kept per RR, >= threshold [storm.history_size; default: the threshold].
    #[arg(long, env = "GATEWAY_STORM_HISTORY_SIZE")]
    storm_history_size: Option<usize>,
    /// Storm status writes: inline (in the dedup patch), async (queue) or sync (before responding) [storm.updates; default inline].
    #[arg(long, env = "GATEWAY_STORM_UPDATES")]
    storm_updates: Option<Mode>,
    /// Sender authentication: kubernetes (TokenReview + SubjectAccessReview) or none [auth.mode; default kubernetes].
    #[arg(long, env = "GATEWAY_AUTH_MODE")]
    auth_mode: Option<gateway::config::AuthMode>,
    /// PEM certificate chain: with --tls-key-file the API listener serves TLS only [tls.cert_file].
    #[arg(long, env = "GATEWAY_TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file [tls.key_file].
    #[arg(long, env = "GATEWAY_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// PEM CA bundle: clients must present a certificate it issued (mTLS) [tls.client_ca_file].
    #[arg(long, env = "GATEWAY_TLS_CLIENT_CA_FILE")]
    tls_client_ca_file: Option<PathBuf>,
    /// Resolve targets to the top of their controller chain: true or false [owners.resolve; default true].
    #[arg(long, env = "GATEWAY_OWNERS_RESOLVE")]
    owners_resolve: Option<bool>,
    /// Namespaces the owner cache watches, comma-separated [owners.namespaces; default: cluster-wide].
    #[arg(long, env = "GATEWAY_OWNERS_NAMESPACES", value_delimiter = ',')]
    owners_namespaces: Option<Vec<String>>,
    /// Accept only targets labelled kubernaut.ai/managed=true (or in such a namespace): true or false [scope.managed_only; default false].
    #[arg(long, env = "GATEWAY_SCOPE_MANAGED_ONLY")]
    scope_managed_only: Option<bool>,
    /// Take part in the replica ring (Leases, ownership by fingerprint): true or false [cluster.enabled; default true].
    #[arg(long, env = "GATEWAY_CLUSTER_ENABLED")]
    cluster_enabled: Option<bool>,
    /// Listener for signals forwarded by other replicas [cluster.peer_listen; default 0.0.0.0:8082].
    #[arg(long, env = "GATEWAY_PEER_LISTEN")]
    peer_listen: Option<std::net::SocketAddr>,
    /// Address peers reach this replica's peer listener at [cluster.advertise; default POD_IP with the peer port].
    #[arg(long, env = "GATEWAY_ADVERTISE")]
    advertise: Option<std::net::SocketAddr>,
    /// How long an unrenewed member Lease stays in the ring [cluster.lease_duration; default 15s].
    #[arg(long, env = "GATEWAY_LEASE_DURATION", value_parser = gateway::config::duration::parse)]
    lease_duration: Option<std::time::Duration>,
    /// How often this replica renews its Lease [cluster.renew_interval; default 5s].
    #[arg(long, env = "GATEWAY_LEASE_RENEW_INTERVAL", value_parser = gateway::config::duration::parse)]
    lease_renew_interval: Option<std::time::Duration>,
    /// Deadline of one signal forwarded to its owner [cluster.forward_timeout; default 6s].
    #[arg(long, env = "GATEWAY_FORWARD_TIMEOUT", value_parser = gateway::config::duration::parse)]
    forward_timeout: Option<std::time::Duration>,
    /// Log format [log.format; default json].
    #[arg(long, env = "GATEWAY_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// Log filter, RUST_LOG syntax [log.level; default info].
    #[arg(long, env = "GATEWAY_LOG_LEVEL")]
    log_level: Option<String>,
}

impl Args {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! set {
            ($($flag:ident => $($field:ident).+),* $(,)?) => {
                $(if let Some(value) = self.$flag { config.$($field).+ = value.into(); })*
            };
        }
        set!(
            listen => api.listen,
            health_listen => api.health_listen,
            metrics_listen => api.metrics_listen,
            body_limit => api.body_limit,
            max_in_flight => api.max_in_flight,
            namespace => kubernetes.namespace,
            kubeconfig => kubernetes.kubeconfig,
            k8s_timeout => kubernetes.call_timeout,
            storm_threshold => storm.threshold,
            storm_window => storm.window,
            storm_flush_interval => storm.flush_interval,
            original_payload => kubernetes.original_payload,
            managed_fields => kubernetes.managed_fields,
            storm_history_size => storm.history_size,
            storm_updates => storm.updates,
            redelivery_window => redelivery.window,
            auth_mode => auth.mode,
            tls_cert_file => tls.cert_file,
            tls_key_file => tls.key_file,
            tls_client_ca_file => tls.client_ca_file,
            owners_resolve => owners.resolve,
            owners_namespaces => owners.namespaces,
            scope_managed_only => scope.managed_only,
            cluster_enabled => cluster.enabled,
            peer_listen => cluster.peer_listen,
            advertise => cluster.advertise,
            lease_duration => cluster.lease_duration,
            lease_renew_interval => cluster.renew_interval,
            forward_timeout => cluster.forward_timeout,
            log_format => log.format,
            log_level => log.level,
        );
        config.validate()?;
        Ok(config)
    }
}

fn main() -> ExitCode {
    let config = match Args::parse().into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("gateway: {error:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = telemetry::init_logs(config.log.format, &config.log.level) {
        eprintln!("gateway: log.level: {error}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gateway: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "gateway failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let bind = |addr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))
    };
    let api_tls = match (&config.tls.cert_file, &config.tls.key_file) {
        (Some(cert_file), Some(key_file)) => Some(
            gateway::api::tls::Tls::load(gateway::api::tls::TlsFiles {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                client_ca_file: config.tls.client_ca_file.clone(),
                reload_interval: config.tls.reload_interval,
            })
            .context("tls")?,
        ),
        _ => None,
    };
    let peer = match config.cluster.enabled {
        true => Some(bind(config.cluster.peer_listen).await?),
        false => None,
    };
    let advertise = match &peer {
        Some(listener) => advertised(config.cluster.advertise, listener.local_addr()?),
        None => None,
    };
    let listeners = gateway::Listeners {
        api: bind(config.api.listen).await?,
        peer,
        health: bind(config.api.health_listen).await?,
        metrics: bind(config.api.metrics_listen).await?,
        api_tls,
    };
    let (client, namespace) = gateway::k8s::connect(
        config.kubernetes.kubeconfig.as_deref(),
        config.kubernetes.namespace.as_deref(),
    )
    .await?;
    tracing::info!(
        api = %listeners.api.local_addr()?,
        tls = listeners.api_tls.is_some(),
        mtls = config.tls.client_ca_file.is_some(),
        auth = ?config.auth.mode,
        health = %listeners.health.local_addr()?,
        metrics = %listeners.metrics.local_addr()?,
        peer = advertise.map(|a| a.to_string()).as_deref(),
        namespace,
        "gateway listening"
    );
    let mut parts = gateway::Parts::kube(&config, client.clone(), &namespace);
    if let Some(advertise) = advertise {
        let (cluster, tasks) = gateway::cluster::Cluster::join(
            &config.cluster,
            client,
            &namespace,
            advertise.to_string(),
            std::env::var("POD_NAME").ok().as_deref(),
            config.kubernetes.call_timeout,
            &parts.shutdown,
        );
        parts = parts.with_cluster(cluster, tasks);
    }
    gateway::run(config, parts, listeners, shutdown_signal()).await;
    Ok(())
}

/// The address peers reach this replica at: `cluster.advertise`, else `POD_IP` with the bound
/// peer port, else the bound address itself unless it is a wildcard. `None` (with a warning)
/// keeps this replica out of the ring: it records every signal itself.
fn advertised(
    configured: Option<std::net::SocketAddr>,
    bound: std::net::SocketAddr,
) -> Option<std::net::SocketAddr> {
    if let Some(addr) = configured {
        return Some(addr);
    }
    if let Some(ip) = std::env::var("POD_IP")
        .ok()
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
    {
        return Some(std::net::SocketAddr::new(ip, bound.port()));
    }
    if !bound.ip().is_unspecified() {
        return Some(bound);
    }
    tracing::warn!(
        peer_listen = %bound,
        "cluster.enabled but no address to advertise (set cluster.advertise or POD_IP): this replica records every signal itself"
    );
    None
}

/// SIGTERM (Kubernetes) or SIGINT (a terminal).
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the gateway");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
