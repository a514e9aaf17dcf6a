//! Request handling for the API listener: routing, limits, body reading, the adapters, the
//! processor, and the success bodies of DESIGN.md §2.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde::Serialize;

use super::server::Peer;
use super::{ApiError, App};
use crate::cluster::Forwarded;
use crate::fingerprint::Fingerprint;
use crate::ingest::adapters::{alertmanager, kubernetes_event};
use crate::ingest::{Limits, Origin, Rejection, Signal, check_signal_bytes};
use crate::processor::{Outcome, ProcessError, Processor};
use crate::telemetry::{Route, Source};

/// Path of the Alertmanager route.
pub const PROMETHEUS_PATH: &str = "/api/v1/signals/prometheus";
/// Path of the Kubernetes Event route.
pub const EVENT_PATH: &str = "/api/v1/signals/kubernetes-event";

/// Handles one API request. Never fails: every error becomes a response here.
pub async fn handle<P: Processor, B>(app: Arc<App<P>>, request: Request<B>) -> Response<Bytes>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let over_tls = request
        .extensions()
        .get::<Peer>()
        .is_some_and(|peer| peer.tls);
    let route = match path.as_str() {
        PROMETHEUS_PATH => Route::Prometheus,
        EVENT_PATH => Route::KubernetesEvent,
        _ => Route::Other,
    };
    let mut response = match dispatch(&app, route, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(&path, &request_id, app.config.retry_after_seconds),
    };
    decorate(response.headers_mut(), &request_id, over_tls);
    app.metrics.http_request(
        route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    tracing::debug!(
        request_id,
        path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// Security headers and the request id, on every API response; HSTS only over TLS (over plain
/// HTTP it would be meaningless, and browsers ignore it there).
fn decorate(headers: &mut HeaderMap, request_id: &str, over_tls: bool) {
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", id);
    }
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if over_tls {
        headers.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
}

async fn dispatch<P: Processor, B>(
    app: &App<P>,
    route: Route,
    request: Request<B>,
) -> Result<Response<Bytes>, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    if route == Route::Other {
        return Err(ApiError::NotFound(request.uri().path().to_owned()));
    }
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed(request.method().to_string()));
    }
    if app.health.is_shutting_down() {
        return Err(ApiError::ShuttingDown);
    }
    // Who is asking, before anything else about the request is looked at: an unauthenticated
    // client never gets to send a body.
    let sender = app.auth.authenticate(request.headers()).await?;
    check_content_type(request.headers())?;
    let _gauge = InFlight::enter(&app.metrics.in_flight);
    let x_timestamp = request
        .headers()
        .get("x-timestamp")
        .map(|v| v.as_bytes().to_vec());
    // Relayed when a signal is forwarded to its owner, which checks it again.
    let authorization = request.headers().get(header::AUTHORIZATION).cloned();
    let via = authorization.as_ref();
    let origin = Origin {
        sender: sender.map(|user| user.username),
        peer: request.extensions().get::<Peer>().map(|peer| peer.addr),
    };
    let mut body = read_body(app, request).await?;
    let now = app.clock.now();
    let limits = Limits {
        max_alerts: app.config.max_alerts_per_request,
        max_signal_bytes: app.config.max_signal_bytes,
    };
    match route {
        Route::Prometheus => {
            let mut alerts =
                alertmanager::parse_limited(&mut body, x_timestamp.as_deref(), now, &limits)
                    .inspect_err(|rejection| app.metrics.limit_rejected_by(rejection))?;
            drop(body);
            for alert in &mut alerts {
                match alert {
                    Ok(signal) => {
                        app.metrics
                            .signal_received(Source::Prometheus, &signal.severity);
                        signal.origin = origin.clone();
                    }
                    Err(rejection) => app.metrics.limit_rejected_by(rejection),
                }
            }
            let _slots = take_slots(app, alerts.iter().filter(|a| a.is_ok()).count())?;
            prometheus(app, alerts, via).await
        }
        Route::KubernetesEvent => {
            let mut signal = kubernetes_event::parse(&mut body, now)?;
            drop(body);
            check_signal_bytes(&signal.labels, &signal.annotations, &limits)
                .inspect_err(|rejection| app.metrics.limit_rejected_by(rejection))?;
            app.metrics
                .signal_received(Source::KubernetesEvent, &signal.severity);
            signal.origin = origin;
            let _slots = take_slots(app, 1)?;
            let (fingerprint, outcome) = record(app, signal, via).await;
            Ok(single(&fingerprint.to_string(), outcome?))
        }
        // Answered 404 before the body was read.
        Route::Other => Err(ApiError::NotFound(String::new())),
    }
}

/// One in-flight slot per signal (`api.max_in_flight` counts alerts, not requests), taken once
/// the body is read and parsed, so a slow body holds a connection but never a slot. All or
/// none: a batch that does not fit is 503 as a whole.
fn take_slots<P: Processor>(
    app: &App<P>,
    signals: usize,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ApiError> {
    if signals == 0 {
        return Ok(None);
    }
    let wanted = u32::try_from(signals).unwrap_or(u32::MAX);
    app.in_flight
        .clone()
        .try_acquire_many_owned(wanted)
        .map(Some)
        .map_err(|_| {
            app.metrics.rejected_overload.increment(1);
            ApiError::Overloaded
        })
}

/// `Content-Type` may be absent; when present it must be `application/json`, parameters
/// (e.g. `charset=utf-8`) allowed.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or_default();
    let media_type = text.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(text.to_owned()))
    }
}

pub(super) async fn read_body<P: Processor, B>(
    app: &App<P>,
    request: Request<B>,
) -> Result<Vec<u8>, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let limit = app.config.body_limit;
    let too_large = ApiError::PayloadTooLarge { limit };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        app.metrics.limit_rejected("body_bytes");
        return Err(too_large);
    }
    let body = std::pin::pin!(request.into_body());
    let mut body = body;
    let mut buffer = Vec::with_capacity(declared.map_or(4096, |len| len as usize));
    let read = async {
        while let Some(frame) = body.as_mut().frame().await {
            let frame = frame.map_err(|e| ApiError::BodyRead(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if buffer.len() + data.len() > limit {
                    app.metrics.limit_rejected("body_bytes");
                    return Err(ApiError::PayloadTooLarge { limit });
                }
                buffer.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    tokio::time::timeout(app.config.read_timeout, read)
        .await
        .map_err(|_| {
            app.metrics.limit_rejected("body_timeout");
            ApiError::BodyTimeout
        })??;
    Ok(buffer)
}

/// Admits one signal (owner resolution, scope) and, unless admission answered it, has it
/// recorded by the replica that owns its fingerprint: forwarded there with the sender's
/// credentials (`via`), or recorded here when this replica owns it or the owner did not get
/// it. Returns the fingerprint it was recorded under.
async fn record<P: Processor>(
    app: &App<P>,
    mut signal: Signal,
    via: Option<&HeaderValue>,
) -> (Fingerprint, Result<Outcome, ProcessError>) {
    if let Some(outcome) = app.processor.admit(&mut signal) {
        return (signal.fingerprint, Ok(outcome));
    }
    let fingerprint = signal.fingerprint;
    if let Some(cluster) = &app.cluster
        && let Some(owner) = cluster.owner(&fingerprint)
    {
        match cluster.forward(&owner, &signal, via).await {
            Forwarded::Answered(result) => return (fingerprint, result),
            Forwarded::Unanswered(cause) => {
                return (fingerprint, Err(ProcessError::Unavailable(cause)));
            }
            // Counted by the forwarder; nothing was recorded yet.
            Forwarded::NotSent(_) => {}
        }
    }
    (fingerprint, app.processor.process(signal).await)
}

/// Alerts of one batch processed at once. A batch of distinct alerts fans out into as many
/// engine calls; without a bound one large body would occupy the engine (and the apiserver)
/// with hundreds of writes at once while `api.max_in_flight` counts it as one request.
pub const BATCH_CONCURRENCY: usize = 64;

/// Records every valid alert of an Alertmanager payload, [`BATCH_CONCURRENCY`] at a time, and
/// answers in the payload's order.
async fn prometheus<P: Processor>(
    app: &App<P>,
    alerts: Vec<Result<Signal, Rejection>>,
    via: Option<&HeaderValue>,
) -> Result<Response<Bytes>, ApiError> {
    let total = alerts.len();
    let valid = alerts.iter().filter(|a| a.is_ok()).count();
    if valid == 0 {
        let first = alerts
            .into_iter()
            .find_map(Result::err)
            .unwrap_or(Rejection::NoAlerts);
        return Err(if total == 1 {
            ApiError::Rejected(first)
        } else {
            ApiError::AllRejected {
                count: total,
                first,
            }
        });
    }
    if total == 1 {
        let signal = alerts
            .into_iter()
            .find_map(Result::ok)
            .ok_or(Rejection::NoAlerts)?;
        let (fingerprint, outcome) = record(app, signal, via).await;
        return Ok(single(&fingerprint.to_string(), outcome?));
    }
    let results: Vec<_> = futures::stream::iter(alerts.into_iter().map(|alert| async move {
        match alert {
            Ok(signal) => {
                let (fingerprint, outcome) = record(app, signal, via).await;
                (Some(fingerprint), Ok(outcome))
            }
            Err(rejection) => (None, Err(rejection)),
        }
    }))
    .buffered(BATCH_CONCURRENCY)
    .collect()
    .await;
    // A batch answers 207 only when every valid alert was recorded. If one could not be
    // (Kubernetes unavailable), the whole batch gets 503 so Alertmanager resends it: the
    // alerts already recorded are then counted again, but none is lost.
    let mut recorded = Vec::with_capacity(total);
    let mut unavailable = None;
    for (fingerprint, result) in results {
        match result {
            Ok(Ok(outcome)) => recorded.push((fingerprint, Ok(outcome))),
            Ok(Err(ProcessError::Internal(cause))) => {
                return Err(ApiError::Process(ProcessError::Internal(cause)));
            }
            Ok(Err(ProcessError::Unavailable(cause))) => unavailable = Some(cause),
            Err(rejection) => recorded.push((fingerprint, Err(rejection))),
        }
    }
    if let Some(cause) = unavailable {
        return Err(ApiError::Process(ProcessError::Unavailable(cause)));
    }
    let mut summary = Summary {
        total,
        ..Summary::default()
    };
    let items = recorded
        .into_iter()
        .map(|(fingerprint, result)| {
            let fingerprint = fingerprint.map(|f| f.to_string()).unwrap_or_default();
            match result {
                Ok(Outcome::Created { name, .. }) => {
                    summary.created += 1;
                    BatchItem {
                        status: "created",
                        fingerprint,
                        message: "RemediationRequest created".into(),
                        remediation_request_name: Some(name),
                        count: Some(1),
                    }
                }
                Ok(Outcome::Duplicate { name, count, .. }) => {
                    summary.deduplicated += 1;
                    BatchItem {
                        status: "duplicate",
                        fingerprint,
                        message: format!("Duplicate signal (count {count})"),
                        remediation_request_name: Some(name),
                        count: Some(count),
                    }
                }
                Ok(Outcome::NotAccepted { message, .. }) => {
                    summary.rejected += 1;
                    BatchItem {
                        status: "rejected",
                        fingerprint,
                        message,
                        remediation_request_name: None,
                        count: None,
                    }
                }
                Err(rejection) => {
                    summary.rejected += 1;
                    BatchItem {
                        status: "rejected",
                        fingerprint,
                        message: rejection.to_string(),
                        remediation_request_name: None,
                        count: None,
                    }
                }
            }
        })
        .collect();
    Ok(json(
        StatusCode::MULTI_STATUS,
        &BatchResponse {
            results: items,
            summary,
        },
    ))
}

/// 201 or 202 for one signal.
fn single(fingerprint: &str, outcome: Outcome) -> Response<Bytes> {
    match outcome {
        Outcome::NotAccepted { message, .. } => not_accepted(fingerprint, message),
        Outcome::Created { name, namespace } => json(
            StatusCode::CREATED,
            &SignalResponse {
                status: "created",
                message: "RemediationRequest created".into(),
                fingerprint,
                duplicate: false,
                remediation_request_name: &name,
                remediation_request_namespace: &namespace,
                metadata: None,
            },
        ),
        Outcome::Duplicate {
            name,
            namespace,
            count,
            first_seen,
            last_seen,
        } => json(
            StatusCode::ACCEPTED,
            &SignalResponse {
                status: "duplicate",
                message: format!("Duplicate signal (count {count})"),
                fingerprint,
                duplicate: true,
                remediation_request_name: &name,
                remediation_request_namespace: &namespace,
                metadata: Some(DuplicateMetadata {
                    count,
                    remediation_request_ref: format!("{namespace}/{name}"),
                    first_occurrence: rfc3339(first_seen),
                    last_occurrence: rfc3339(last_seen),
                }),
            },
        ),
    }
}

/// 200 for a signal out of scope: valid, deliberately not recorded. Not a 4xx, which a sender
/// might alert on or drop as broken input; the same body as the kubernaut Gateway's.
fn not_accepted(fingerprint: &str, message: String) -> Response<Bytes> {
    json(
        StatusCode::OK,
        &NotAcceptedResponse {
            status: "rejected",
            reason: "unmanaged_resource",
            message,
            fingerprint,
            action: "add the label kubernaut.ai/managed=true to the resource or its namespace",
        },
    )
}

/// RFC 3339 in UTC with second precision, as Kubernetes writes times.
pub fn rfc3339(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(serde_json::to_vec(body).unwrap_or_default()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SignalResponse<'a> {
    status: &'static str,
    message: String,
    fingerprint: &'a str,
    duplicate: bool,
    remediation_request_name: &'a str,
    remediation_request_namespace: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<DuplicateMetadata>,
}

#[derive(Serialize)]
struct NotAcceptedResponse<'a> {
    status: &'static str,
    reason: &'static str,
    message: String,
    fingerprint: &'a str,
    action: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DuplicateMetadata {
    count: i64,
    remediation_request_ref: String,
    first_occurrence: String,
    last_occurrence: String,
}

#[derive(Serialize)]
struct BatchResponse {
    results: Vec<BatchItem>,
    summary: Summary,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchItem {
    status: &'static str,
    fingerprint: String,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    remediation_request_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<i64>,
}

/// `failed` stays 0 on the wire: a batch with an unrecordable alert is answered 503 as a whole
/// (see [`prometheus`]); the field is kept for wire compatibility.
#[derive(Serialize, Default)]
struct Summary {
    total: usize,
    created: usize,
    deduplicated: usize,
    rejected: usize,
    failed: usize,
}

/// Keeps `gateway_in_flight_requests` up to date for the life of a request.
struct InFlight<'a>(&'a metrics::Gauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a metrics::Gauge) -> Self {
        gauge.increment(1.0);
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
