//! Telemetry: metric names in one place ([`names`]), typed hot-path handles registered once
//! ([`Metrics`]), the Prometheus exporter and the log subscriber.
//!
//! Labels come from small fixed sets (routes, status codes, verbs, outcomes); never a
//! fingerprint, alert name or RR name.

pub mod names;
pub mod process;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Bucket bounds (seconds) of the HTTP and Kubernetes latency histograms: 0.5 ms to 2 s, dense
/// around the 40 ms P95 target.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25,
    0.5, 1.0, 2.0,
];

/// Installs the process-wide Prometheus recorder once and returns its handle; later calls (a
/// test running several gateways in one process) return the same handle.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let mut builder = PrometheusBuilder::new();
        for name in [
            names::HTTP_REQUEST_DURATION,
            names::K8S_REQUEST_DURATION,
            names::FORWARD_DURATION,
        ] {
            builder = builder
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(name.to_string()),
                    LATENCY_BUCKETS,
                )
                .unwrap_or_else(|_| unreachable!("bucket list is non-empty"));
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (only in tests that install their own):
        // the handle then renders this recorder's (empty) registry, which those tests accept.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

/// The `/metrics` body: process figures refreshed from `/proc`, then every series.
pub fn render() -> String {
    if let Some(usage) = process::Usage::read(None) {
        metrics::gauge!(names::PROCESS_RESIDENT_MEMORY).set(usage.resident_bytes as f64);
        metrics::gauge!(names::PROCESS_CPU_SECONDS).set(usage.cpu_seconds);
    }
    prometheus().render()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        names::SIGNALS_RECEIVED,
        "Signals received, by source adapter."
    );
    describe_counter!(
        names::SIGNALS_DEDUPLICATED,
        "Signals counted onto an existing RemediationRequest."
    );
    describe_counter!(names::CRDS_CREATED, "RemediationRequests created.");
    describe_counter!(
        names::CRD_CREATION_ERRORS,
        "RemediationRequest creations that failed, by error type."
    );
    describe_counter!(
        names::AMBIGUOUS_WRITES,
        "Writes whose answer was lost, by what re-reading the RR found."
    );
    describe_counter!(
        names::AUTH_DECISIONS,
        "Signal requests authenticated and authorised, by outcome and whether the decision cache answered."
    );
    describe_counter!(
        names::LIMIT_REJECTIONS,
        "Requests or signals refused by a request limit, by limit."
    );
    describe_counter!(
        names::CONNECTIONS_EVICTED,
        "Idle connections closed to make room at a listener's connection cap, by listener."
    );
    describe_histogram!(
        names::HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request duration on the API listener, by route and status."
    );
    describe_counter!(
        names::K8S_REQUESTS,
        "Kubernetes API calls, by verb and outcome."
    );
    describe_histogram!(
        names::K8S_REQUEST_DURATION,
        Unit::Seconds,
        "Kubernetes API call duration, by verb."
    );
    describe_counter!(
        names::REDELIVERIES,
        "Deliveries identical to one recorded within the redelivery window, answered with its ordinal and not counted again, by source adapter."
    );
    describe_gauge!(
        names::REDELIVERY_WINDOW_ENTRIES,
        "Deliveries the redelivery window remembers, in flight or recorded."
    );
    describe_gauge!(
        names::INDEX_ENTRIES,
        "Fingerprints in the RemediationRequest index."
    );
    describe_counter!(
        names::WATCH_RESTARTS,
        "Restarts (relists) of the RemediationRequest watch."
    );
    describe_counter!(
        names::STORMS_DETECTED,
        "RemediationRequests that entered a storm."
    );
    describe_gauge!(
        names::STORM_QUEUE_PENDING,
        "Storm status writes waiting in the queue."
    );
    describe_counter!(names::STORM_PATCHES, "Storm status patches, by outcome.");
    describe_counter!(
        names::STORM_COALESCED,
        "Storm states replaced by a newer one before being written."
    );
    describe_counter!(
        names::STORM_QUEUE_OVERFLOW,
        "Storm states dropped because the queue was at its RR cap."
    );
    describe_gauge!(
        names::CIRCUIT_BREAKER_STATE,
        "Kubernetes circuit breaker: 0 closed, 1 open (503 without calling)."
    );
    describe_counter!(
        names::OWNER_RESOLUTIONS,
        "Signal targets looked up in the owner cache, by result."
    );
    describe_counter!(
        names::OWNER_FALLBACKS,
        "Signals that kept their labelled resource because the owner cache could not resolve it, by reason."
    );
    describe_gauge!(
        names::OWNER_CACHE_OBJECTS,
        "Objects (workloads, and namespaces for the scope rule) held by the owner metadata cache."
    );
    describe_counter!(
        names::SIGNALS_OUT_OF_SCOPE,
        "Signals answered 200 and not recorded because their target is not managed, by reason."
    );
    describe_gauge!(names::IN_FLIGHT, "Signal requests being processed.");
    describe_gauge!(
        names::CLUSTER_MEMBERS,
        "Live members of the cluster ring this replica sees, itself included."
    );
    describe_counter!(
        names::FORWARDED_SIGNALS,
        "Signals forwarded to the replica that owns their fingerprint, by outcome."
    );
    describe_histogram!(
        names::FORWARD_DURATION,
        Unit::Seconds,
        "Duration of one forward to the owning replica, its answer included."
    );
    describe_counter!(
        names::LOCAL_FALLBACKS,
        "Signals recorded by the receiving replica although another owns them, by reason."
    );
    describe_counter!(
        names::REJECTED_OVERLOAD,
        "Requests answered 503 because of a limit."
    );
}

/// Hot-path metric handles, looked up once at start-up.
#[derive(Clone)]
pub struct Metrics {
    /// `gateway_index_entries`.
    pub index_entries: Gauge,
    /// `gateway_watch_restarts_total`.
    pub watch_restarts: Counter,
    /// `gateway_redelivery_window_entries`.
    pub redelivery_window_entries: Gauge,
    /// `gateway_in_flight_requests`.
    pub in_flight: Gauge,
    /// `gateway_overload_rejections_total`.
    pub rejected_overload: Counter,
    /// `gateway_circuit_breaker_state{name="kubernetes"}`: 0 closed, 1 half-open, 2 open.
    pub circuit_breaker_state: Gauge,
    /// `gateway_storms_detected_total`.
    pub storms_detected: Counter,
    /// `gateway_storm_queue_pending`.
    pub storm_queue_pending: Gauge,
    /// `gateway_storm_coalesced_total`.
    pub storm_coalesced: Counter,
    /// `gateway_storm_queue_overflow_total`.
    pub storm_queue_overflow: Counter,
    /// `gateway_storm_patches_total{outcome="success"}`.
    pub storm_patches_ok: Counter,
    /// `gateway_storm_patches_total{outcome="error"}`.
    pub storm_patches_error: Counter,
    labelled: Arc<Labelled>,
    /// `gateway_signals_deduplicated_total{signal_name}`, one series per signal name up to
    /// [`SIGNAL_NAMES_MAX`]; later names count under `other`.
    deduplicated: Arc<Mutex<HashMap<String, Counter>>>,
}

/// Distinct `signal_name` label values kept (alert names and Event reasons: a bounded set in
/// practice; the cap keeps a misbehaving sender from growing the registry).
pub const SIGNAL_NAMES_MAX: usize = 500;

impl Metrics {
    /// Registers the handles (installing the recorder first if needed).
    pub fn new() -> Self {
        prometheus();
        let metrics = Metrics {
            index_entries: metrics::gauge!(names::INDEX_ENTRIES),
            watch_restarts: metrics::counter!(names::WATCH_RESTARTS),
            redelivery_window_entries: metrics::gauge!(names::REDELIVERY_WINDOW_ENTRIES),
            in_flight: metrics::gauge!(names::IN_FLIGHT),
            rejected_overload: metrics::counter!(names::REJECTED_OVERLOAD),
            circuit_breaker_state: metrics::gauge!(names::CIRCUIT_BREAKER_STATE, "name" => "kubernetes"),
            storms_detected: metrics::counter!(names::STORMS_DETECTED),
            storm_queue_pending: metrics::gauge!(names::STORM_QUEUE_PENDING),
            storm_coalesced: metrics::counter!(names::STORM_COALESCED),
            storm_queue_overflow: metrics::counter!(names::STORM_QUEUE_OVERFLOW),
            storm_patches_ok: metrics::counter!(names::STORM_PATCHES, "outcome" => "success"),
            storm_patches_error: metrics::counter!(names::STORM_PATCHES, "outcome" => "error"),
            labelled: Arc::default(),
            deduplicated: Arc::default(),
        };
        // Series an alert divides by must exist before their first event, or `rate()` misses
        // the first burst.
        for route in [Route::Prometheus, Route::KubernetesEvent] {
            metrics.http_series(route, &http::Method::POST, 503);
        }
        metrics
    }

    /// `gateway_http_request_duration_seconds{endpoint,method,status}`.
    pub fn http_request(&self, route: Route, method: &http::Method, status: u16, seconds: f64) {
        self.http_series(route, method, status).record(seconds);
    }

    fn http_series(&self, route: Route, method: &http::Method, status: u16) -> &Histogram {
        let status = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(STATUSES.len());
        let method = match *method {
            http::Method::POST => 0,
            http::Method::GET => 1,
            _ => 2,
        };
        let slot = (route as usize * METHODS.len() + method) * STATUS_LABELS.len() + status;
        self.labelled.http[slot].get_or_init(|| {
            metrics::histogram!(
                names::HTTP_REQUEST_DURATION,
                "endpoint" => route.endpoint(),
                "method" => METHODS[method],
                "status" => STATUS_LABELS[status]
            )
        })
    }

    /// `gateway_signals_received_total{source_type,severity}`: one valid signal.
    pub fn signal_received(&self, source: Source, severity: &str) {
        let severity = severity_slot(severity);
        self.labelled.received[source as usize * SEVERITIES.len() + severity]
            .get_or_init(|| {
                metrics::counter!(
                    names::SIGNALS_RECEIVED,
                    "source_type" => source.label(),
                    "severity" => SEVERITIES[severity]
                )
            })
            .increment(1);
    }

    /// `gateway_crds_created_total{source_type,status="success"}`.
    pub fn rr_created(&self, source: Source) {
        self.labelled.created[source as usize]
            .get_or_init(|| {
                metrics::counter!(names::CRDS_CREATED, "source_type" => source.label(), "status" => "success")
            })
            .increment(1);
    }

    /// `gateway_redeliveries_total{source_type}`: one delivery answered from the redelivery
    /// window.
    pub fn redelivery(&self, source: Source) {
        self.labelled.redeliveries[source as usize]
            .get_or_init(|| metrics::counter!(names::REDELIVERIES, "source_type" => source.label()))
            .increment(1);
    }

    /// `gateway_signals_deduplicated_total{signal_name}`: one signal counted onto an RR.
    pub fn signal_deduplicated(&self, signal_name: &str) {
        let Ok(mut counters) = self.deduplicated.lock() else {
            return;
        };
        if let Some(counter) = counters.get(signal_name) {
            return counter.increment(1);
        }
        let name = if counters.len() < SIGNAL_NAMES_MAX {
            signal_name
        } else {
            "other"
        };
        let counter = counters.entry(name.to_owned()).or_insert_with(
            || metrics::counter!(names::SIGNALS_DEDUPLICATED, "signal_name" => name.to_owned()),
        );
        counter.increment(1);
    }

    /// `gateway_k8s_requests_total{verb,outcome}` and `gateway_k8s_request_duration_seconds{verb}`.
    pub fn k8s_request(&self, verb: Verb, outcome: CallOutcome, seconds: f64) {
        self.labelled.k8s_calls[verb as usize * OUTCOMES.len() + outcome as usize]
            .get_or_init(|| {
                metrics::counter!(names::K8S_REQUESTS, "verb" => verb.label(), "outcome" => OUTCOMES[outcome as usize])
            })
            .increment(1);
        self.labelled.k8s_durations[verb as usize]
            .get_or_init(
                || metrics::histogram!(names::K8S_REQUEST_DURATION, "verb" => verb.label()),
            )
            .record(seconds);
    }

    /// `gateway_auth_decisions_total{outcome,cache}`: one signal request's authentication and
    /// authorisation, decided from the cache (`hit`) or by reviews (`miss`).
    pub fn auth_decision(&self, outcome: &str, cache_hit: bool) {
        let outcome = AUTH_OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(AUTH_OUTCOMES.len() - 1);
        let cache = usize::from(cache_hit);
        self.labelled.auth[outcome * 2 + cache]
            .get_or_init(|| {
                metrics::counter!(
                    names::AUTH_DECISIONS,
                    "outcome" => AUTH_OUTCOMES[outcome],
                    "cache" => ["miss", "hit"][cache]
                )
            })
            .increment(1);
    }

    /// `gateway_limit_rejections_total{limit}`; `limit` is one of [`LIMITS`].
    pub fn limit_rejected(&self, limit: &'static str) {
        let slot = LIMITS.iter().position(|l| *l == limit).unwrap_or(0);
        self.labelled.limits[slot]
            .get_or_init(|| metrics::counter!(names::LIMIT_REJECTIONS, "limit" => LIMITS[slot]))
            .increment(1);
    }

    /// Counts `rejection` under [`Self::limit_rejected`] when a limit caused it.
    pub fn limit_rejected_by(&self, rejection: &crate::ingest::Rejection) {
        match rejection {
            crate::ingest::Rejection::TooManyAlerts { .. } => {
                self.limit_rejected("alerts_per_request")
            }
            crate::ingest::Rejection::TooLarge { .. }
            | crate::ingest::Rejection::TooManyEntries { .. } => {
                self.limit_rejected("signal_bytes")
            }
            _ => {}
        }
    }

    /// `gateway_connections_evicted_total{listener}`.
    pub fn connection_evicted(&self, listener: &'static str) {
        let slot = LISTENERS.iter().position(|l| *l == listener).unwrap_or(0);
        self.labelled.evicted[slot]
            .get_or_init(
                || metrics::counter!(names::CONNECTIONS_EVICTED, "listener" => LISTENERS[slot]),
            )
            .increment(1);
    }

    /// `gateway_ambiguous_writes_total{verb,resolution}`: a write whose answer was lost, and
    /// what re-reading found.
    pub fn ambiguous_write(&self, verb: Verb, resolution: Ambiguity) {
        self.labelled.ambiguous[verb as usize * AMBIGUITIES.len() + resolution as usize]
            .get_or_init(|| {
                metrics::counter!(names::AMBIGUOUS_WRITES, "verb" => verb.label(), "resolution" => AMBIGUITIES[resolution as usize])
            })
            .increment(1);
    }

    /// `gateway_crd_creation_errors_total{error_type}`.
    pub fn creation_error(&self, error: CallOutcome) {
        self.labelled.creation_errors[error as usize]
            .get_or_init(|| metrics::counter!(names::CRD_CREATION_ERRORS, "error_type" => OUTCOMES[error as usize]))
            .increment(1);
    }
}

/// Route label values of the API listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/api/v1/signals/prometheus`.
    Prometheus = 0,
    /// `/api/v1/signals/kubernetes-event`.
    KubernetesEvent = 1,
    /// Anything else (404s).
    Other = 2,
}

impl Route {
    /// The `endpoint` label: the route's path.
    fn endpoint(self) -> &'static str {
        [
            "/api/v1/signals/prometheus",
            "/api/v1/signals/kubernetes-event",
            "other",
        ][self as usize]
    }
}

/// `source_type` label values: the adapter a signal came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Alertmanager webhook.
    Prometheus = 0,
    /// core/v1 Event.
    KubernetesEvent = 1,
}

impl Source {
    fn label(self) -> &'static str {
        ["prometheus", "kubernetes-event"][self as usize]
    }
}

/// `severity` label values: the usual alert severities, the gateway's `unknown` (no severity
/// label), the Event types; any other severity counts as `other`.
const SEVERITIES: [&str; 10] = [
    "critical", "high", "warning", "medium", "low", "info", "unknown", "Warning", "Error", "other",
];

fn severity_slot(severity: &str) -> usize {
    SEVERITIES[..SEVERITIES.len() - 1]
        .iter()
        .position(|s| *s == severity)
        .unwrap_or(SEVERITIES.len() - 1)
}

const METHODS: [&str; 3] = ["POST", "GET", "other"];

/// Kubernetes verbs the gateway uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// POST an RR.
    Create = 0,
    /// Merge-patch of `status.deduplication`.
    Patch = 1,
    /// GET one RR after a lost race.
    Get = 2,
    /// JSON patch of `status.stormAggregation`.
    PatchStorm = 3,
    /// Field-selector list of one fingerprint's RRs, before a create after a terminal RR.
    List = 4,
    /// TokenReview of a sender's bearer token (a decision-cache miss).
    TokenReview = 5,
    /// SubjectAccessReview of a sender's identity (a decision-cache miss).
    AccessReview = 6,
    /// Merge-patch of an RR's own `metadata` (clearing its managed fields, once per RR).
    PatchMetadata = 7,
}

impl Verb {
    /// How many verbs there are (the labelled series' table size).
    const COUNT: usize = Verb::PatchMetadata as usize + 1;

    fn label(self) -> &'static str {
        const LABELS: [&str; Verb::COUNT] = [
            "create",
            "patch",
            "get",
            "patch_storm",
            "list",
            "token_review",
            "access_review",
            "patch_metadata",
        ];
        LABELS[self as usize]
    }
}

/// What re-reading found after a write whose answer was lost (a deadline, a dropped
/// connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ambiguity {
    /// The write had been applied: answered as a success.
    Applied = 0,
    /// It had not; sent again, and that one was applied.
    Resent = 1,
    /// It had not, and cannot be any more (the RR moved on or is gone): decided again, or
    /// answered 503 with nothing counted.
    NotApplied = 2,
    /// It could not be found out within the deadline: answered 503.
    Unknown = 3,
}

const AMBIGUITIES: [&str; 4] = ["applied", "resent", "not_applied", "unknown"];

/// Outcomes of a Kubernetes call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// 2xx.
    Success = 0,
    /// 409 AlreadyExists.
    AlreadyExists = 1,
    /// 409 Conflict.
    Conflict = 2,
    /// 404.
    NotFound = 3,
    /// The deadline passed.
    Timeout = 4,
    /// No connection, 5xx, 429, 401/403.
    Unavailable = 5,
    /// 400/422.
    Invalid = 6,
    /// Not sent: the circuit breaker is open.
    BreakerOpen = 7,
    /// A storm write whose state was already superseded (its precondition failed).
    Stale = 8,
}

const OUTCOMES: [&str; 9] = [
    "success",
    "already_exists",
    "conflict",
    "not_found",
    "timeout",
    "unavailable",
    "invalid",
    "breaker_open",
    "stale",
];
const STATUSES: [u16; 13] = [
    200, 201, 202, 207, 400, 401, 403, 404, 405, 413, 415, 500, 503,
];
const STATUS_LABELS: [&str; 14] = [
    "200", "201", "202", "207", "400", "401", "403", "404", "405", "413", "415", "500", "503",
    "other",
];

/// `limit` label values of `gateway_limit_rejections_total`.
pub const LIMITS: [&str; 4] = [
    "alerts_per_request",
    "signal_bytes",
    "body_bytes",
    "body_timeout",
];

/// `listener` label values.
const LISTENERS: [&str; 4] = ["api", "health", "metrics", "peer"];

/// `outcome` label values of `gateway_auth_decisions_total`.
const AUTH_OUTCOMES: [&str; 5] = [
    "allowed",
    "missing_token",
    "unauthenticated",
    "forbidden",
    "unavailable",
];

/// Labelled series, registered on first use and cached, so the hot path never hashes labels.
struct Labelled {
    http: [OnceLock<Histogram>; 3 * 3 * 14],
    received: [OnceLock<Counter>; 2 * 10],
    created: [OnceLock<Counter>; 2],
    redeliveries: [OnceLock<Counter>; 2],
    k8s_calls: [OnceLock<Counter>; Verb::COUNT * OUTCOMES.len()],
    k8s_durations: [OnceLock<Histogram>; Verb::COUNT],
    auth: [OnceLock<Counter>; 5 * 2],
    creation_errors: [OnceLock<Counter>; 9],
    ambiguous: [OnceLock<Counter>; 7 * 4],
    limits: [OnceLock<Counter>; 4],
    evicted: [OnceLock<Counter>; 4],
}

impl Default for Labelled {
    fn default() -> Self {
        Labelled {
            http: std::array::from_fn(|_| OnceLock::new()),
            received: std::array::from_fn(|_| OnceLock::new()),
            created: std::array::from_fn(|_| OnceLock::new()),
            redeliveries: std::array::from_fn(|_| OnceLock::new()),
            k8s_calls: std::array::from_fn(|_| OnceLock::new()),
            k8s_durations: std::array::from_fn(|_| OnceLock::new()),
            creation_errors: std::array::from_fn(|_| OnceLock::new()),
            ambiguous: std::array::from_fn(|_| OnceLock::new()),
            auth: std::array::from_fn(|_| OnceLock::new()),
            limits: std::array::from_fn(|_| OnceLock::new()),
            evicted: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (the default, for log pipelines).
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

/// Installs the global `tracing` subscriber. `filter` uses `RUST_LOG` syntax.
pub fn init_logs(format: LogFormat, filter: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| e.to_string())
}
