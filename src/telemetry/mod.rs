//! Telemetry: metric names in one place ([`names`]), typed hot-path handles registered once
//! ([`Metrics`]), the Prometheus exporter and the log subscriber.
//!
//! Labels come from small fixed sets (routes, status codes, verbs, outcomes); never a
//! fingerprint, alert name or RR name.

pub mod names;

use std::sync::OnceLock;

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
        for name in [names::HTTP_REQUEST_DURATION, names::K8S_REQUEST_DURATION] {
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
    describe_gauge!(names::IN_FLIGHT, "Signal requests being processed.");
    describe_counter!(
        names::REJECTED_OVERLOAD,
        "Requests answered 503 because of a limit."
    );
}

/// Hot-path metric handles, looked up once at start-up.
#[derive(Clone)]
pub struct Metrics {
    /// `gateway_signals_received_total{source="prometheus"}`.
    pub received_prometheus: Counter,
    /// `gateway_signals_received_total{source="kubernetes-event"}`.
    pub received_event: Counter,
    /// `gateway_signals_deduplicated_total`.
    pub deduplicated: Counter,
    /// `gateway_crds_created_total`.
    pub created: Counter,
    /// `gateway_index_entries`.
    pub index_entries: Gauge,
    /// `gateway_watch_restarts_total`.
    pub watch_restarts: Counter,
    /// `gateway_in_flight_requests`.
    pub in_flight: Gauge,
    /// `gateway_overload_rejections_total`.
    pub rejected_overload: Counter,
    /// `gateway_circuit_breaker_state`.
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
}

impl Metrics {
    /// Registers the handles (installing the recorder first if needed).
    pub fn new() -> Self {
        prometheus();
        Metrics {
            received_prometheus: metrics::counter!(names::SIGNALS_RECEIVED, "source" => "prometheus"),
            received_event: metrics::counter!(names::SIGNALS_RECEIVED, "source" => "kubernetes-event"),
            deduplicated: metrics::counter!(names::SIGNALS_DEDUPLICATED),
            created: metrics::counter!(names::CRDS_CREATED),
            index_entries: metrics::gauge!(names::INDEX_ENTRIES),
            watch_restarts: metrics::counter!(names::WATCH_RESTARTS),
            in_flight: metrics::gauge!(names::IN_FLIGHT),
            rejected_overload: metrics::counter!(names::REJECTED_OVERLOAD),
            circuit_breaker_state: metrics::gauge!(names::CIRCUIT_BREAKER_STATE),
            storms_detected: metrics::counter!(names::STORMS_DETECTED),
            storm_queue_pending: metrics::gauge!(names::STORM_QUEUE_PENDING),
            storm_coalesced: metrics::counter!(names::STORM_COALESCED),
            storm_queue_overflow: metrics::counter!(names::STORM_QUEUE_OVERFLOW),
            storm_patches_ok: metrics::counter!(names::STORM_PATCHES, "outcome" => "success"),
            storm_patches_error: metrics::counter!(names::STORM_PATCHES, "outcome" => "error"),
        }
    }

    /// `gateway_http_request_duration_seconds{route,status}`. Both labels come from fixed
    /// sets: the route names of the API and the status codes it can answer.
    pub fn http_request(&self, route: &'static str, status: u16, seconds: f64) {
        metrics::histogram!(names::HTTP_REQUEST_DURATION, "route" => route, "status" => status_label(status))
            .record(seconds);
    }

    /// `gateway_k8s_requests_total{verb,outcome}` and `gateway_k8s_request_duration_seconds{verb}`.
    pub fn k8s_request(&self, verb: &'static str, outcome: &'static str, seconds: f64) {
        metrics::counter!(names::K8S_REQUESTS, "verb" => verb, "outcome" => outcome).increment(1);
        k8s_duration(verb).record(seconds);
    }

    /// `gateway_crd_creation_errors_total{error_type}`.
    pub fn creation_error(&self, error_type: &'static str) {
        metrics::counter!(names::CRD_CREATION_ERRORS, "error_type" => error_type).increment(1);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn k8s_duration(verb: &'static str) -> Histogram {
    metrics::histogram!(names::K8S_REQUEST_DURATION, "verb" => verb)
}

/// Status codes as static label values, so recording allocates nothing.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        202 => "202",
        207 => "207",
        400 => "400",
        404 => "404",
        405 => "405",
        413 => "413",
        415 => "415",
        500 => "500",
        503 => "503",
        _ => "other",
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
