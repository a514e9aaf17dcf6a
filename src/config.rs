//! Configuration: one YAML file (`--config`), every key with a default, each overridable by a
//! flag or an environment variable (flags win over env, env over the file).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::dedup::rr::Payload;
pub use crate::k8s::store::ManagedFields;
use crate::storm::Mode;
use crate::telemetry::LogFormat;

/// The whole configuration, one nested block per module.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP listeners and request limits.
    pub api: ApiConfig,
    /// Who may send signals.
    pub auth: AuthConfig,
    /// TLS on the API listener.
    pub tls: TlsConfig,
    /// Kubernetes access.
    pub kubernetes: KubernetesConfig,
    /// Storm aggregation.
    pub storm: StormConfig,
    /// Recognising redeliveries.
    pub redelivery: RedeliveryConfig,
    /// Owner-chain resolution and its metadata cache.
    pub owners: OwnersConfig,
    /// The scope rule.
    pub scope: ScopeConfig,
    /// Replicas sharing the work: membership through Leases, ownership by fingerprint.
    pub cluster: ClusterConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `api.*`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Signal API listener.
    pub listen: SocketAddr,
    /// `/healthz` and `/readyz` listener, apart so probes never queue behind signal traffic.
    pub health_listen: SocketAddr,
    /// `/metrics` listener.
    pub metrics_listen: SocketAddr,
    /// Largest accepted request body in bytes; larger is 413.
    pub body_limit: usize,
    /// Signals (alerts, Events) being processed at once, over all requests: a batch of N
    /// alerts takes N. Beyond it the gateway answers 503 + Retry-After instead of queueing
    /// without bound.
    pub max_in_flight: usize,
    /// Alerts in one Alertmanager request; more is 413 (set the receiver's `max_alerts` at or
    /// below it). At most `max_in_flight`.
    pub max_alerts_per_request: usize,
    /// Bytes of one signal's labels and annotations together (names and values, after the
    /// common ones are merged in); more rejects that signal with 400. At most 262144.
    pub max_signal_bytes: usize,
    /// Open connections on the API listener. At the cap the connection idle longest is closed
    /// to make room; only when all are busy does a new one wait in the accept backlog.
    pub max_connections: usize,
    /// The same for the health listener (kubelet probes open a connection per probe).
    pub health_max_connections: usize,
    /// The same for the metrics listener.
    pub metrics_max_connections: usize,
    /// Largest request head (request line and headers), in bytes, on every listener; beyond
    /// it the answer is 431. At least 8192 (a ServiceAccount token is about 1 KiB).
    pub max_header_bytes: usize,
    /// A keep-alive connection with no request for this long is closed (every listener).
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// How long a request may take to send its headers and body before the connection is
    /// closed (slow clients must not hold in-flight slots).
    #[serde(with = "duration")]
    pub read_timeout: Duration,
    /// End-to-end deadline of a signal: once too little of it is left for one more Kubernetes
    /// call, a signal not yet written is answered 503 (nothing counted), so a sender never
    /// waits out a string of retries; well inside Alertmanager's 10 s webhook timeout.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// `Retry-After` seconds on 503.
    pub retry_after_seconds: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            health_listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            metrics_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            body_limit: 262_144,
            max_in_flight: 1000,
            max_alerts_per_request: 500,
            max_signal_bytes: 65_536,
            max_connections: 1024,
            health_max_connections: 64,
            metrics_max_connections: 64,
            max_header_bytes: 32_768,
            idle_timeout: Duration::from_secs(120),
            read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(25),
            retry_after_seconds: 1,
        }
    }
}

/// `tls.*`: TLS on the API listener (health and metrics stay plain HTTP).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. With `key_file`, the API listener serves only TLS.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the certificate.
    pub key_file: Option<PathBuf>,
    /// PEM CA bundle: when set, every client must present a certificate it issued (mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// How often the certificate and key files are checked for a change (and reloaded).
    #[serde(with = "duration")]
    pub reload_interval: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            reload_interval: Duration::from_secs(10),
        }
    }
}

/// `auth.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every signal request carries a bearer token, verified with a TokenReview and authorised
    /// with a SubjectAccessReview (cached).
    #[default]
    Kubernetes,
    /// No authentication: anyone who reaches the API port may send signals. For a local run;
    /// logged as a warning at start-up.
    None,
}

/// `auth.*`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `kubernetes` (default) or `none`.
    pub mode: AuthMode,
    /// Audiences the token must be valid for (TokenReview `spec.audiences`); empty means the
    /// apiserver's own, which is what a projected ServiceAccount token without an audience
    /// carries.
    pub audiences: Vec<String>,
    /// How long an allowed token is trusted without another review; a revoked binding takes
    /// effect within it.
    #[serde(with = "duration")]
    pub cache_ttl: Duration,
    /// How long a refused token (401 or 403) is refused without another review; a new
    /// binding takes effect within it.
    #[serde(with = "duration")]
    pub negative_cache_ttl: Duration,
    /// Decisions kept (one per distinct token).
    pub cache_size: usize,
    /// What a sender must be allowed to do (the SubjectAccessReview's resource attributes).
    pub authorize: AuthorizeConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Kubernetes,
            audiences: Vec::new(),
            cache_ttl: Duration::from_secs(60),
            negative_cache_ttl: Duration::from_secs(10),
            cache_size: 10_000,
            authorize: AuthorizeConfig::default(),
        }
    }
}

/// `auth.authorize.*`: the SubjectAccessReview a sender must pass.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizeConfig {
    /// Verb.
    pub verb: String,
    /// API group.
    pub group: String,
    /// Resource (`signals` is virtual: no API serves it, RBAC grants it all the same).
    pub resource: String,
    /// Namespace of the check. Default: the controller namespace (a RoleBinding there
    /// grants access); `""` checks cluster-wide (only a ClusterRoleBinding grants it).
    pub namespace: Option<String>,
}

impl Default for AuthorizeConfig {
    fn default() -> Self {
        AuthorizeConfig {
            verb: "create".into(),
            group: "kubernaut.ai".into(),
            resource: "signals".into(),
            namespace: None,
        }
    }
}

/// `kubernetes.*`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Controller namespace where RRs live. Default: the pod's own namespace (from the
    /// service-account mount), else the kubeconfig context's, else `default`.
    pub namespace: Option<String>,
    /// Kubeconfig file. Default: in-cluster config, else `KUBECONFIG` / `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Deadline of every Kubernetes call on the request path; past it the signal gets 503.
    #[serde(with = "duration")]
    pub call_timeout: Duration,
    /// Attempts of one commit (create or status patch) before answering 503; each lost
    /// optimistic-concurrency race (409) costs one.
    pub max_attempts: u32,
    /// How long a freshly created RR waits for a duplicate before the gateway writes its
    /// count-1 `status.deduplication` itself: a duplicate within it writes the block anyway,
    /// saving one write. Until then the RR shows no count (it means one occurrence).
    #[serde(with = "duration")]
    pub status_init_delay: Duration,
    /// What `spec.originalPayload` carries: `full` (the alert or Event as received) or
    /// `compact` (an alert without the labels and annotations that `signalLabels` and
    /// `signalAnnotations` already hold unabridged; see PERF.md for what it saves).
    pub original_payload: Payload,
    /// `metadata.managedFields` of the RRs the gateway counts: `strip` (clear them once an RR
    /// repeats, so every later write of it is cheaper for kube-apiserver; see PERF.md) or
    /// `keep` (leave Kubernetes' field tracking alone).
    pub managed_fields: ManagedFields,
    /// Consecutive failed Kubernetes calls that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the open breaker answers 503 without calling Kubernetes.
    #[serde(with = "duration")]
    pub breaker_cooldown: Duration,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            namespace: None,
            kubeconfig: None,
            call_timeout: Duration::from_secs(2),
            max_attempts: 16,
            status_init_delay: Duration::from_secs(1),
            original_payload: Payload::Full,
            managed_fields: ManagedFields::Strip,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(2),
        }
    }
}

/// `storm.*`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StormConfig {
    /// Occurrences within the window that make a storm.
    pub threshold: u32,
    /// Trailing window; `0` means the RR's lifetime.
    #[serde(with = "duration")]
    pub window: Duration,
    /// How often the queue writes pending storm states.
    #[serde(with = "duration")]
    pub flush_interval: Duration,
    /// `inline` (default: measured fastest, PERF.md), `async` or `sync`.
    pub updates: Mode,
    /// Distinct RRs with a pending storm state; beyond it new states are dropped and counted.
    pub queue_capacity: usize,
    /// Storm patches in flight at once.
    pub max_concurrent_patches: usize,
    /// At shutdown, after the requests drained: how long pending storm states (failed ones
    /// included) are retried before the gateway exits. Part of the pod's grace period, beside
    /// `api.shutdown_grace`.
    #[serde(with = "duration")]
    pub final_flush_timeout: Duration,
    /// Recent arrival times kept per RR in `status.deduplication.recentOccurrences` (at least
    /// `threshold`, at most 1024). Default: `threshold`, all the rule needs to detect a storm;
    /// `windowOccurrences` saturates at it, so raise it only to report larger windows.
    pub history_size: Option<usize>,
}

impl StormConfig {
    /// `history_size`, or its default.
    pub fn history_size(&self) -> usize {
        self.history_size.unwrap_or(self.threshold as usize)
    }
}

impl Default for StormConfig {
    fn default() -> Self {
        StormConfig {
            threshold: 5,
            window: Duration::from_secs(60),
            flush_interval: Duration::from_millis(200),
            updates: Mode::Inline,
            queue_capacity: 100_000,
            max_concurrent_patches: 8,
            final_flush_timeout: Duration::from_secs(5),
            history_size: None,
        }
    }
}

/// `redelivery.*`: a delivery identical to one recorded shortly before (the copy another
/// Alertmanager of an HA cluster sent, a sender's retry after a 503) is answered with the
/// ordinal of the one it repeats and not counted again.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedeliveryConfig {
    /// How long a recorded delivery is remembered; `0` turns recognition off (every delivery
    /// counts). Keep it well below Alertmanager's `repeat_interval` (default 4h, rarely under
    /// a minute): a re-notification within the window that carries the same alert unchanged
    /// would not count. At most 5m.
    #[serde(with = "duration")]
    pub window: Duration,
    /// Deliveries remembered at most (about 300 bytes each). At the cap the oldest are
    /// forgotten first: a repeat of one of them is counted again, nothing is refused.
    pub max_entries: usize,
}

impl Default for RedeliveryConfig {
    fn default() -> Self {
        RedeliveryConfig {
            window: Duration::from_secs(10),
            max_entries: 100_000,
        }
    }
}

/// Longest `redelivery.window`.
pub const REDELIVERY_WINDOW_MAX: Duration = Duration::from_secs(300);

/// `owners.*`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OwnersConfig {
    /// Fingerprint a signal by the top of its target's controller chain (Pod → ReplicaSet →
    /// Deployment...), read from a metadata-only cache, instead of the object as labelled.
    /// Off: every target is taken as labelled and, unless `scope.managed_only` is on, no cache
    /// is kept.
    pub resolve: bool,
    /// Namespaces whose workloads the cache watches (one watch per kind and namespace; a
    /// Role in each is enough). Empty (default): cluster-wide watches, which need a
    /// ClusterRole. A signal from a namespace not listed keeps its labelled resource.
    pub namespaces: Vec<String>,
}

impl Default for OwnersConfig {
    fn default() -> Self {
        OwnersConfig {
            resolve: true,
            namespaces: Vec::new(),
        }
    }
}

/// `scope.*`
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScopeConfig {
    /// Accept only signals whose target, or else its namespace, carries
    /// `kubernaut.ai/managed=true`; others are answered 200 "rejected" and not recorded.
    /// Off by default (every signal is recorded).
    pub managed_only: bool,
}

/// `cluster.*`: each fingerprint owned by one live replica, found through `coordination.k8s.io`
/// Leases; a replica forwards the signals it does not own to their owner.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Take part in the ring (default). Off: this replica keeps no Lease, forwards nothing and
    /// records every signal it receives itself, as a single replica does; replicas that still
    /// disagree cost extra writes, never wrong counts.
    pub enabled: bool,
    /// Listener for signals forwarded by other replicas (`POST /internal/v1/signal`).
    pub peer_listen: SocketAddr,
    /// Address other replicas reach the peer listener at, written into this replica's Lease.
    /// Default: `POD_IP` (set by the Deployment) with the peer listener's port, else the
    /// peer listener's own address when it is not a wildcard; with neither, the ring is off.
    pub advertise: Option<SocketAddr>,
    /// A member whose Lease has not been renewed for this long has left the ring (written as
    /// the Lease's `leaseDurationSeconds`, whole seconds, at least 1).
    #[serde(with = "duration")]
    pub lease_duration: Duration,
    /// How often this replica renews its Lease; below `lease_duration`.
    #[serde(with = "duration")]
    pub renew_interval: Duration,
    /// Deadline of one forwarded signal, connection included. An owner answers within its own
    /// `api.request_timeout`, so this is longer; a forward that was sent but not answered
    /// within it is 503 to the sender (the owner may have counted it).
    #[serde(with = "duration")]
    pub forward_timeout: Duration,
    /// Forwarded signals in flight to one peer at once; beyond it the receiver records the
    /// signal itself.
    pub max_in_flight_per_peer: usize,
    /// Open connections on the peer listener. Each peer opens up to `max_in_flight_per_peer`
    /// (HTTP/1.1, one request per connection), so keep it at least (replicas − 1) ×
    /// `max_in_flight_per_peer`: at the cap an idle connection is closed, and a forward that
    /// was just being sent on it gets no answer (503).
    pub max_connections: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: true,
            peer_listen: SocketAddr::from(([0, 0, 0, 0], 8082)),
            advertise: None,
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            forward_timeout: Duration::from_secs(6),
            max_in_flight_per_peer: 256,
            max_connections: 1024,
        }
    }
}

/// `log.*`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `json` (default) or `text`.
    pub format: LogFormat,
    /// `RUST_LOG`-style filter.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is invalid or has an unknown key or a bad value.
    #[error("invalid config file {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why (serde names the key).
        #[source]
        source: serde_yaml::Error,
    },
    /// A value is out of range.
    #[error("invalid config: {key}: {reason}")]
    Invalid {
        /// Dotted key, e.g. `storm.threshold`.
        key: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

impl Config {
    /// Reads a YAML file; missing keys take their defaults.
    pub fn from_file(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
    }

    /// Parses YAML text.
    pub fn from_yaml(text: &str) -> Result<Config, serde_yaml::Error> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_yaml::from_str(text)
    }

    /// Checks ranges that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason| Err(ConfigError::Invalid { key, reason });
        if self.api.body_limit == 0 {
            return invalid("api.body_limit", "must be at least 1");
        }
        if self.api.max_in_flight == 0 {
            return invalid("api.max_in_flight", "must be at least 1");
        }
        if self.api.max_connections == 0
            || self.api.health_max_connections == 0
            || self.api.metrics_max_connections == 0
        {
            return invalid("api.max_connections", "every listener needs at least 1");
        }
        if self.api.max_alerts_per_request == 0
            || self.api.max_alerts_per_request > self.api.max_in_flight
        {
            return invalid(
                "api.max_alerts_per_request",
                "must be between 1 and api.max_in_flight",
            );
        }
        if self.api.max_signal_bytes == 0 || self.api.max_signal_bytes > 262_144 {
            return invalid("api.max_signal_bytes", "must be between 1 and 262144");
        }
        if self.api.max_header_bytes < 8192 {
            return invalid("api.max_header_bytes", "must be at least 8192");
        }
        if self.api.idle_timeout.is_zero() {
            return invalid("api.idle_timeout", "must be positive");
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return invalid(
                "tls.cert_file",
                "tls.cert_file and tls.key_file go together",
            );
        }
        if self.tls.client_ca_file.is_some() && self.tls.cert_file.is_none() {
            return invalid("tls.client_ca_file", "needs tls.cert_file and tls.key_file");
        }
        if self.tls.reload_interval.is_zero() {
            return invalid("tls.reload_interval", "must be positive");
        }
        if self.kubernetes.call_timeout.is_zero() {
            return invalid("kubernetes.call_timeout", "must be positive");
        }
        if self.api.request_timeout < self.kubernetes.call_timeout {
            return invalid(
                "api.request_timeout",
                "must be at least kubernetes.call_timeout",
            );
        }
        if self.kubernetes.max_attempts == 0 {
            return invalid("kubernetes.max_attempts", "must be at least 1");
        }
        if self.kubernetes.breaker_failures == 0 {
            return invalid("kubernetes.breaker_failures", "must be at least 1");
        }
        if self.cluster.lease_duration < Duration::from_secs(1) {
            return invalid("cluster.lease_duration", "must be at least 1s");
        }
        if self.cluster.renew_interval.is_zero()
            || self.cluster.renew_interval >= self.cluster.lease_duration
        {
            return invalid(
                "cluster.renew_interval",
                "must be positive and below cluster.lease_duration",
            );
        }
        if self.cluster.forward_timeout.is_zero() {
            return invalid("cluster.forward_timeout", "must be positive");
        }
        if self.cluster.max_in_flight_per_peer == 0 || self.cluster.max_connections == 0 {
            return invalid(
                "cluster.max_in_flight_per_peer",
                "cluster.max_in_flight_per_peer and cluster.max_connections must be at least 1",
            );
        }
        if self.storm.threshold < 2 {
            return invalid("storm.threshold", "must be at least 2");
        }
        let history_size = self.storm.history_size();
        if history_size < self.storm.threshold as usize || history_size > 1024 {
            return invalid(
                "storm.history_size",
                "must be between storm.threshold and 1024",
            );
        }
        if self.storm.flush_interval.is_zero() {
            return invalid("storm.flush_interval", "must be positive");
        }
        if self.storm.queue_capacity == 0 {
            return invalid("storm.queue_capacity", "must be at least 1");
        }
        if self.storm.max_concurrent_patches == 0 {
            return invalid("storm.max_concurrent_patches", "must be at least 1");
        }
        if self.redelivery.window > REDELIVERY_WINDOW_MAX {
            return invalid(
                "redelivery.window",
                "must be at most 5m: a longer window would swallow alerts that Alertmanager re-notifies (repeat_interval)",
            );
        }
        if self.redelivery.max_entries == 0 {
            return invalid("redelivery.max_entries", "must be at least 1");
        }
        if self.auth.cache_size == 0 {
            return invalid("auth.cache_size", "must be at least 1");
        }
        if self.auth.authorize.verb.is_empty() || self.auth.authorize.resource.is_empty() {
            return invalid("auth.authorize", "verb and resource must not be empty");
        }
        if let Some(ns) = &self.kubernetes.namespace
            && ns.is_empty()
        {
            return invalid("kubernetes.namespace", "must not be empty");
        }
        for (i, ns) in self.owners.namespaces.iter().enumerate() {
            if crate::ingest::target::check_namespace(ns, "owners.namespaces").is_err() {
                return invalid(
                    "owners.namespaces",
                    "every entry must be a namespace name (RFC 1123 label)",
                );
            }
            if self.owners.namespaces[..i].contains(ns) {
                return invalid("owners.namespaces", "must not repeat a namespace");
            }
        }
        Ok(())
    }
}

/// Durations as text: `250ms`, `2s`, `1m`, `1h`, or `0`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    /// Parses `250ms`, `2s`, `1m`, `1h` or `0`.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        if text == "0" {
            return Ok(Duration::ZERO);
        }
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration like 250ms or 2s"))?;
        match unit {
            "ms" => Ok(Duration::from_millis(n)),
            "s" => Ok(Duration::from_secs(n)),
            "m" => Ok(Duration::from_secs(n * 60)),
            "h" => Ok(Duration::from_secs(n * 3600)),
            _ => Err(format!("{text:?} has no unit: use ms, s, m or h")),
        }
    }

    /// serde `deserialize_with`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(Config::from_yaml("").unwrap(), Config::default());
        Config::default().validate().unwrap();
    }

    #[test]
    fn nested_keys_and_durations() {
        let c = Config::from_yaml(
            "storm:\n  threshold: 7\n  window: 0\n  flush_interval: 50ms\n  updates: sync\nkubernetes:\n  call_timeout: 3s\n",
        )
        .unwrap();
        assert_eq!(c.storm.threshold, 7);
        assert_eq!(c.storm.window, Duration::ZERO);
        assert_eq!(c.storm.flush_interval, Duration::from_millis(50));
        assert_eq!(c.storm.updates, Mode::Sync);
        assert_eq!(c.kubernetes.call_timeout, Duration::from_secs(3));
        assert_eq!(c.api.body_limit, 262_144);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_yaml("storm:\n  treshold: 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("treshold"), "{err}");
    }

    #[test]
    fn bad_duration_is_an_error() {
        let err = Config::from_yaml("storm:\n  window: 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no unit"), "{err}");
    }

    #[test]
    fn owners_and_scope_keys() {
        let c = Config::from_yaml(
            "owners:\n  resolve: false\n  namespaces: [shop, team-b]\nscope:\n  managed_only: true\n",
        )
        .unwrap();
        assert!(!c.owners.resolve && c.scope.managed_only);
        assert_eq!(c.owners.namespaces, ["shop", "team-b"]);
        c.validate().unwrap();
        let d = Config::default();
        assert!(d.owners.resolve && !d.scope.managed_only && d.owners.namespaces.is_empty());
        for bad in [
            vec!["Shop".to_owned()],
            vec!["a".to_owned(), "a".to_owned()],
        ] {
            let mut c = Config::default();
            c.owners.namespaces = bad;
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains("owners.namespaces"), "{err}");
        }
    }

    #[test]
    fn redelivery_keys() {
        let d = Config::default();
        assert_eq!(d.redelivery.window, Duration::from_secs(10));
        assert_eq!(d.redelivery.max_entries, 100_000);
        let c = Config::from_yaml("redelivery:\n  window: 0\n  max_entries: 7\n").unwrap();
        assert_eq!(c.redelivery.window, Duration::ZERO);
        assert_eq!(c.redelivery.max_entries, 7);
        c.validate().unwrap();
        for yaml in [
            "redelivery:\n  window: 301s\n",
            "redelivery:\n  max_entries: 0\n",
        ] {
            let err = Config::from_yaml(yaml)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains("redelivery."), "{err}");
        }
        let mut c = Config::default();
        c.redelivery.window = REDELIVERY_WINDOW_MAX;
        c.validate().unwrap();
    }

    #[test]
    fn out_of_range_names_the_key() {
        let mut c = Config::default();
        c.storm.threshold = 1;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("storm.threshold")
        );
    }
}
