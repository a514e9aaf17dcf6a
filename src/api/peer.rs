//! The peer listener (`cluster.peer_listen`): signals forwarded by other replicas to this one,
//! the owner of their fingerprint. Each is authenticated like a signal on the API listener
//! (the receiver relays the sender's credentials), processed here and never forwarded again,
//! and answered with a [`forward::Answer`].
//!
//! Anything that stops a forwarded signal before it is processed (credentials refused here, the
//! in-flight limit) is answered [`forward::Answer::Refused`], and the receiver records the
//! signal itself: nothing was counted. While this replica shuts down it keeps processing what
//! peers still forward (it released its Lease first, so they stop soon).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use super::App;
use crate::cluster::forward::{self, Answer};
use crate::ingest::Signal;
use crate::processor::Processor;

/// Handles one request on the peer listener.
pub async fn handle<P: Processor, B>(app: Arc<App<P>>, request: Request<B>) -> Response<Bytes>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    if request.uri().path() != forward::PATH {
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    if request.method() != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "POST only");
    }
    if let Err(denied) = app.auth.authenticate(request.headers()).await {
        return answer(&Answer::Refused {
            message: format!("credentials refused by the owner: {denied}"),
        });
    }
    let mut body = match super::routes::read_body(&app, request).await {
        Ok(body) => body,
        Err(error) => {
            return answer(&Answer::Refused {
                message: error.to_string(),
            });
        }
    };
    let signal: Signal = match simd_json::serde::from_slice(&mut body) {
        Ok(signal) => signal,
        Err(error) => return plain(StatusCode::BAD_REQUEST, &format!("not a signal: {error}")),
    };
    drop(body);
    let Ok(_slot) = app.in_flight.clone().try_acquire_owned() else {
        app.metrics.rejected_overload.increment(1);
        return answer(&Answer::Refused {
            message: "the owner is at api.max_in_flight".into(),
        });
    };
    answer(&Answer::of(app.processor.process(signal).await))
}

fn answer(answer: &Answer) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(serde_json::to_vec(answer).unwrap_or_default()));
    *response.status_mut() = answer.status();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn plain(status: StatusCode, text: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(text.to_owned()));
    *response.status_mut() = status;
    response
}
