//! The metrics listener: `/metrics` in the Prometheus text format, whatever the path.

use bytes::Bytes;
use http::{HeaderValue, Response, header};

use crate::telemetry;

/// Serves one scrape.
pub fn handle() -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(telemetry::render()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
