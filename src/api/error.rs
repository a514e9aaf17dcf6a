//! The one place where errors become HTTP responses (RFC 7807 `application/problem+json`).
//!
//! 4xx are the client's fault and are logged at debug at most; 5xx are logged once here with
//! their cause, and a 500's body never says more than "Internal server error".

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::auth::Denied;
use crate::ingest::Rejection;
use crate::processor::ProcessError;

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Invalid input that no retry could fix.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Every alert of a batch was rejected; the first reason is reported.
    #[error("all {count} alerts were rejected; first: {first}")]
    AllRejected {
        /// Alerts in the payload.
        count: usize,
        /// The first alert's reason.
        first: Rejection,
    },
    /// Body larger than the limit.
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A `Content-Type` other than JSON.
    #[error("unsupported content type {0:?}: use application/json")]
    UnsupportedMediaType(String),
    /// No such route.
    #[error("no route for {0}")]
    NotFound(String),
    /// Signal routes take POST only.
    #[error("method {0} not allowed: use POST")]
    MethodNotAllowed(String),
    /// The body could not be read before the read timeout.
    #[error("request body not received in time")]
    BodyTimeout,
    /// The body stream failed.
    #[error("reading request body: {0}")]
    BodyRead(String),
    /// The in-flight limit was reached.
    #[error("too many requests in flight; retry later")]
    Overloaded,
    /// Authentication or authorisation refused the request, or could not be decided.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The gateway is shutting down.
    #[error("shutting down; retry on another replica")]
    ShuttingDown,
    /// Processing failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
}

/// RFC 7807 body.
#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    detail: String,
    status: u16,
    instance: &'a str,
    request_id: &'a str,
}

impl ApiError {
    /// Status code, problem slug and title.
    fn classify(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Rejected(r @ Rejection::TooManyAlerts { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, r.slug(), "Payload Too Large")
            }
            ApiError::Rejected(r) | ApiError::AllRejected { first: r, .. } => {
                (StatusCode::BAD_REQUEST, r.slug(), "Bad Request")
            }
            ApiError::PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload Too Large",
            ),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported Media Type",
            ),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not Found"),
            ApiError::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method Not Allowed",
            ),
            ApiError::BodyRead(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad Request"),
            ApiError::Denied(Denied::MissingToken | Denied::Unauthenticated) => {
                (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
            }
            ApiError::Denied(Denied::Forbidden) => {
                (StatusCode::FORBIDDEN, "forbidden", "Forbidden")
            }
            // A stalled body is answered 503, not 408: Alertmanager drops every 4xx for good,
            // and a resend over a healthy connection can succeed.
            ApiError::BodyTimeout
            | ApiError::Overloaded
            | ApiError::ShuttingDown
            | ApiError::Denied(Denied::Unavailable(_))
            | ApiError::Process(ProcessError::Unavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service-unavailable",
                "Service Unavailable",
            ),
            ApiError::Process(ProcessError::Internal(_)) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal-error",
                "Internal Server Error",
            ),
        }
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.classify().0
    }

    /// Builds the response; `instance` is the request path.
    pub fn into_response(
        self,
        instance: &str,
        request_id: &str,
        retry_after_seconds: u32,
    ) -> http::Response<Bytes> {
        let (status, slug, title) = self.classify();
        let detail = match &self {
            ApiError::Process(ProcessError::Internal(cause)) => {
                tracing::error!(request_id, path = instance, cause = %cause, "internal error");
                "Internal server error".to_string()
            }
            ApiError::Process(ProcessError::Unavailable(cause)) => {
                tracing::warn!(request_id, path = instance, cause = %cause, "kubernetes unavailable");
                "Kubernetes API unavailable; retry later".to_string()
            }
            ApiError::Denied(Denied::Unavailable(cause)) => {
                tracing::warn!(request_id, path = instance, cause = %cause, "authentication unavailable");
                "Authentication unavailable; retry later".to_string()
            }
            other => {
                tracing::debug!(request_id, path = instance, error = %other, "request rejected");
                other.to_string()
            }
        };
        let problem = Problem {
            kind: format!("https://kubernaut.ai/problems/{slug}"),
            title,
            detail,
            status: status.as_u16(),
            instance,
            request_id,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = http::Response::new(Bytes::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            ApiError::UnsupportedMediaType(_) => {
                headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
            }
            ApiError::MethodNotAllowed(_) => {
                headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            _ if status == StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
            }
            _ => {}
        }
        response
    }
}
