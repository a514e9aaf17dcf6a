//! The hop between replicas: the wire format of a forwarded signal and of the owner's answer,
//! and the client that sends it (HTTP/1.1 with keep-alive, bounded in flight per peer, under a
//! deadline).
//!
//! What a forward may lead to decides whether the receiver may record the signal itself. A
//! signal the owner never got (no connection, the per-peer bound reached, or the owner refused
//! it before processing, e.g. while shutting down) is recorded by the receiver: nothing was
//! counted yet. A signal that was sent but not answered may have been counted: the sender gets
//! 503 and resends, never a second count made behind its back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::Telemetry;
use crate::dedup::{Outcome, ProcessError};
use crate::ingest::Signal;

/// Path of the peer route.
pub const PATH: &str = "/internal/v1/signal";
/// Largest answer read from an owner (an answer is a few hundred bytes).
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// The owner's answer to a forwarded signal, as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Answer {
    /// [`Outcome::Created`].
    Created {
        /// RR name.
        name: String,
        /// RR namespace.
        namespace: String,
    },
    /// [`Outcome::Duplicate`].
    Duplicate {
        /// RR name.
        name: String,
        /// RR namespace.
        namespace: String,
        /// The ordinal.
        count: i64,
        /// First occurrence.
        first_seen: Timestamp,
        /// Latest occurrence.
        last_seen: Timestamp,
    },
    /// [`Outcome::NotAccepted`].
    NotAccepted {
        /// Why, for the sender.
        message: String,
    },
    /// [`ProcessError::Unavailable`]: the owner tried and nothing was counted.
    Unavailable {
        /// The cause (logged, not shown to senders).
        message: String,
    },
    /// [`ProcessError::Internal`].
    Internal {
        /// The cause.
        message: String,
    },
    /// Not processed at all (the owner is shutting down, at its in-flight limit, or refused
    /// the credentials): the receiver records the signal itself.
    Refused {
        /// Why.
        message: String,
    },
}

impl Answer {
    /// The answer for a processing result.
    pub fn of(result: Result<Outcome, ProcessError>) -> Self {
        match result {
            Ok(Outcome::Created { name, namespace }) => Answer::Created { name, namespace },
            Ok(Outcome::Duplicate {
                name,
                namespace,
                count,
                first_seen,
                last_seen,
            }) => Answer::Duplicate {
                name,
                namespace,
                count,
                first_seen,
                last_seen,
            },
            Ok(Outcome::NotAccepted { message, .. }) => Answer::NotAccepted { message },
            Err(ProcessError::Unavailable(message)) => Answer::Unavailable { message },
            Err(ProcessError::Internal(message)) => Answer::Internal { message },
        }
    }

    /// The processing result it carries; `None` for [`Answer::Refused`] (not processed).
    pub fn into_result(self) -> Option<Result<Outcome, ProcessError>> {
        Some(match self {
            Answer::Created { name, namespace } => Ok(Outcome::Created { name, namespace }),
            Answer::Duplicate {
                name,
                namespace,
                count,
                first_seen,
                last_seen,
            } => Ok(Outcome::Duplicate {
                name,
                namespace,
                count,
                first_seen,
                last_seen,
            }),
            Answer::NotAccepted { message } => Ok(Outcome::NotAccepted {
                reason: "unmanaged",
                message,
            }),
            Answer::Unavailable { message } => Err(ProcessError::Unavailable(message)),
            Answer::Internal { message } => Err(ProcessError::Internal(message)),
            Answer::Refused { .. } => return None,
        })
    }

    /// The HTTP status it is sent with.
    pub fn status(&self) -> StatusCode {
        match self {
            Answer::Created { .. } | Answer::Duplicate { .. } | Answer::NotAccepted { .. } => {
                StatusCode::OK
            }
            Answer::Unavailable { .. } | Answer::Refused { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Answer::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// What became of one forward.
#[derive(Debug, PartialEq, Eq)]
pub enum Forwarded {
    /// The owner processed it: its result, to relay unchanged.
    Answered(Result<Outcome, ProcessError>),
    /// The owner did not process it; the receiver records it itself.
    NotSent(Fallback),
    /// Sent, with no answer within the deadline (or an unreadable one): the owner may have
    /// counted it, so the sender gets 503.
    Unanswered(String),
}

/// Why a receiver recorded a signal it does not own (`gateway_local_fallbacks_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// No connection to the owner could be made.
    Unreachable,
    /// `cluster.max_in_flight_per_peer` forwards were already in flight to it.
    Busy,
    /// The owner refused it before processing.
    Refused,
}

impl Fallback {
    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Fallback::Unreachable => "unreachable",
            Fallback::Busy => "busy",
            Fallback::Refused => "refused",
        }
    }
}

/// Limits of the forwarding client.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Deadline of one forward, connecting included.
    pub timeout: Duration,
    /// Forwards in flight to one peer.
    pub max_in_flight_per_peer: usize,
}

/// Sends signals to their owners.
pub struct Forwarder {
    client: Client<HttpConnector, Full<Bytes>>,
    limits: Limits,
    /// One bound per peer address; pruned when it outgrows the peers in use.
    in_flight: Mutex<HashMap<String, Arc<Semaphore>>>,
    telemetry: Telemetry,
}

/// Peers tracked before the per-peer bounds are pruned of idle ones.
const MAX_TRACKED_PEERS: usize = 64;

impl Forwarder {
    /// A client with `limits`.
    pub fn new(limits: Limits, telemetry: Telemetry) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(limits.timeout.min(Duration::from_secs(1))));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(limits.max_in_flight_per_peer)
            .build(connector);
        Forwarder {
            client,
            limits,
            in_flight: Mutex::new(HashMap::new()),
            telemetry,
        }
    }

    fn slot(&self, peer: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let semaphore = {
            let Ok(mut map) = self.in_flight.lock() else {
                return None;
            };
            if map.len() > MAX_TRACKED_PEERS {
                let max = self.limits.max_in_flight_per_peer;
                map.retain(|_, s| s.available_permits() < max);
            }
            match map.get(peer) {
                Some(semaphore) => semaphore.clone(),
                None => {
                    let semaphore = Arc::new(Semaphore::new(self.limits.max_in_flight_per_peer));
                    map.insert(peer.to_owned(), semaphore.clone());
                    semaphore
                }
            }
        };
        semaphore.try_acquire_owned().ok()
    }

    /// Forwards `signal` to `peer`, relaying the sender's `authorization`.
    pub async fn forward(
        &self,
        peer: &str,
        signal: &Signal,
        authorization: Option<&HeaderValue>,
    ) -> Forwarded {
        let Some(_slot) = self.slot(peer) else {
            return self.fallback(Fallback::Busy);
        };
        let body = match serde_json::to_vec(signal) {
            Ok(body) => body,
            Err(error) => {
                return Forwarded::Answered(Err(ProcessError::Internal(error.to_string())));
            }
        };
        let mut request = Request::post(format!("http://{peer}{PATH}"))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value.clone());
        }
        let Ok(request) = request.body(Full::new(Bytes::from(body))) else {
            return self.fallback(Fallback::Unreachable);
        };
        let started = Instant::now();
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|error| ExchangeError::Body(error.to_string()))?
                .to_bytes();
            Ok::<_, ExchangeError>((status, body))
        };
        let result = tokio::time::timeout(self.limits.timeout, exchange).await;
        self.telemetry
            .forward_duration
            .record(started.elapsed().as_secs_f64());
        let (status, body) = match result {
            Ok(Ok(answer)) => answer,
            Ok(Err(ExchangeError::Client(error))) if error.is_connect() => {
                tracing::debug!(peer, %error, "owner unreachable; recording here");
                return self.fallback(Fallback::Unreachable);
            }
            Ok(Err(error)) => return self.unanswered(peer, error.to_string()),
            Err(_) => return self.unanswered(peer, "forward deadline passed".into()),
        };
        match serde_json::from_slice::<Answer>(&body).map(Answer::into_result) {
            Ok(None) => {
                tracing::debug!(peer, "owner refused the signal; recording here");
                self.fallback(Fallback::Refused)
            }
            Ok(Some(result)) => {
                let outcome = if result.is_ok() { "ok" } else { "error" };
                self.telemetry.forwarded(outcome);
                Forwarded::Answered(result)
            }
            // 401/403 from the owner's own check, or anything that is not an answer: it was
            // not processed.
            Err(_) if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                self.fallback(Fallback::Refused)
            }
            Err(error) => self.unanswered(peer, format!("unreadable answer ({status}): {error}")),
        }
    }

    fn fallback(&self, reason: Fallback) -> Forwarded {
        self.telemetry.fallback(reason);
        Forwarded::NotSent(reason)
    }

    fn unanswered(&self, peer: &str, cause: String) -> Forwarded {
        tracing::warn!(
            peer,
            cause,
            "forwarded signal got no answer; the sender gets 503"
        );
        self.telemetry.forwarded("unanswered");
        Forwarded::Unanswered(format!("owner {peer}: {cause}"))
    }
}

#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error(transparent)]
    Client(#[from] hyper_util::client::legacy::Error),
    #[error("reading the answer: {0}")]
    Body(String),
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_and_carry_their_status() {
        let at = Timestamp::from_second(1_700_000_000).unwrap();
        for (result, status) in [
            (
                Ok(Outcome::Duplicate {
                    name: "rr-1".into(),
                    namespace: "ns".into(),
                    count: 7,
                    first_seen: at,
                    last_seen: at,
                }),
                StatusCode::OK,
            ),
            (
                Ok(Outcome::Created {
                    name: "rr-1".into(),
                    namespace: "ns".into(),
                }),
                StatusCode::OK,
            ),
            (
                Err(ProcessError::Unavailable("etcd".into())),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        ] {
            let answer = Answer::of(result.clone());
            assert_eq!(answer.status(), status);
            let text = serde_json::to_string(&answer).unwrap();
            let back = serde_json::from_str::<Answer>(&text).unwrap();
            assert_eq!(back.into_result(), Some(result));
        }
    }

    #[tokio::test]
    async fn a_peer_nobody_listens_on_is_a_fallback_not_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let forwarder = Forwarder::new(
            Limits {
                timeout: Duration::from_secs(2),
                max_in_flight_per_peer: 1,
            },
            Telemetry::new(),
        );
        let now = Timestamp::now();
        let mut body = serde_json::to_vec(&serde_json::json!({
            "metadata": {"name": "api-0.1", "namespace": "prod"},
            "involvedObject": {"kind": "Pod", "namespace": "prod", "name": "api-0"},
            "reason": "BackOff", "message": "m", "type": "Warning", "count": 1,
            "firstTimestamp": now.to_string(), "lastTimestamp": now.to_string()
        }))
        .unwrap();
        let signal = crate::ingest::adapters::kubernetes_event::parse(&mut body, now).unwrap();
        let forwarded = forwarder.forward(&addr.to_string(), &signal, None).await;
        assert_eq!(forwarded, Forwarded::NotSent(Fallback::Unreachable));
    }
}
