//! Liveness and readiness. `/healthz` is 200 while the process runs; `/readyz` is 503 until
//! the RR index has finished its first list, while the Kubernetes API is unreachable, and
//! while shutting down.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};

use crate::clock::Clock;

/// Readiness flags, written by the engine and the shutdown sequence.
#[derive(Debug, Default)]
pub struct Health {
    index_synced: AtomicBool,
    kube_unreachable: AtomicBool,
    shutting_down: AtomicBool,
}

impl Health {
    /// A fresh state: not ready until the index is synced.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index finished (or lost) a full list.
    pub fn set_index_synced(&self, synced: bool) {
        self.index_synced.store(synced, Ordering::Release);
    }

    /// The last Kubernetes call failed for lack of a connection (or succeeded again).
    pub fn set_kube_reachable(&self, reachable: bool) {
        self.kube_unreachable.store(!reachable, Ordering::Release);
    }

    /// Whether the Kubernetes API answered last time it was asked.
    pub fn is_kube_reachable(&self) -> bool {
        !self.kube_unreachable.load(Ordering::Acquire)
    }

    /// Shutdown started: readiness turns false for good.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// True once shutdown started.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Why the gateway is not ready, if it is not.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.shutting_down.load(Ordering::Acquire) {
            Some("shutting down")
        } else if !self.index_synced.load(Ordering::Acquire) {
            Some("RemediationRequest index has not finished its list")
        } else if self.kube_unreachable.load(Ordering::Acquire) {
            Some("Kubernetes API unreachable")
        } else {
            None
        }
    }
}

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
