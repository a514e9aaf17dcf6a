//! The health listener: liveness and readiness. `/healthz` is 200 while the process runs; `/readyz` is 503 until
//! the RR index has finished its first list, while the Kubernetes API is unreachable, and
//! while shutting down (the flags are [`Health`]'s).

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};

use crate::clock::Clock;
use crate::health::Health;

/// Serves the health listener.
pub fn handle<B>(health: &Health, clock: &dyn Clock, request: &Request<B>) -> Response<Bytes> {
    let (status, body, content_type) = match request.uri().path() {
        "/healthz" => (
            StatusCode::OK,
            format!(
                r#"{{"status":"healthy","timestamp":"{}"}}"#,
                super::routes::rfc3339(clock.now())
            ),
            "application/json",
        ),
        "/readyz" => match health.not_ready_reason() {
            None => (
                StatusCode::OK,
                r#"{"status":"ready"}"#.to_string(),
                "application/json",
            ),
            Some(reason) => (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({
                    "type": "https://kubernaut.ai/problems/not-ready",
                    "title": "Service Unavailable",
                    "detail": reason,
                    "status": 503,
                    "instance": "/readyz",
                })
                .to_string(),
                "application/problem+json",
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            r#"{"status":"not found"}"#.to_string(),
            "application/json",
        ),
    };
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
