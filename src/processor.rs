//! The seam between the HTTP layer and the engine: the API hands each valid [`Signal`] to a
//! [`Processor`] and turns its [`Outcome`] or [`ProcessError`] into a response. The product
//! wires the dedup engine; the HTTP tests wire a fake.

use std::future::Future;

use jiff::Timestamp;

use crate::ingest::Signal;

/// What became of one signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new RemediationRequest was created; this signal is its first occurrence.
    Created {
        /// RR name.
        name: String,
        /// RR namespace.
        namespace: String,
    },
    /// The signal was counted onto an active RemediationRequest.
    Duplicate {
        /// RR name.
        name: String,
        /// RR namespace.
        namespace: String,
        /// `status.deduplication.occurrenceCount` after this signal: exact.
        count: i64,
        /// First occurrence.
        first_seen: Timestamp,
        /// Latest occurrence (this one).
        last_seen: Timestamp,
    },
}

/// Why a valid signal could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// Kubernetes is unreachable, too slow, or the gateway is overloaded or shutting down:
    /// nothing was counted and a retry can succeed (503 + Retry-After).
    #[error("kubernetes unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected answer (500; the cause is logged once).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Records signals.
pub trait Processor: Send + Sync + 'static {
    /// Records one signal: creates its RR or counts it onto the active one.
    fn process(&self, signal: Signal)
    -> impl Future<Output = Result<Outcome, ProcessError>> + Send;
}
