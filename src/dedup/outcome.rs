//! What became of one signal ([`Outcome`]) or why it could not be recorded
//! ([`ProcessError`]), and the one mapping from a failed Kubernetes call to the latter.

use jiff::Timestamp;

use crate::k8s::store::StoreError;

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
    /// The signal is out of scope (`scope.managed_only`): answered 200, nothing written. The
    /// engine never returns it; the owner stage in front of it does.
    NotAccepted {
        /// The `reason` label, e.g. `unmanaged`.
        reason: &'static str,
        /// Why, for the sender.
        message: String,
    },
}

/// Why a valid signal could not be recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// Kubernetes is unreachable, too slow, or the gateway is overloaded or shutting down:
    /// nothing was counted and a retry can succeed (503 + Retry-After).
    #[error("kubernetes unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected answer (500; the cause is logged once).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ProcessError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Timeout(_) | StoreError::Unavailable(_) | StoreError::BreakerOpen => {
                ProcessError::Unavailable(error.to_string())
            }
            // Conflict / AlreadyExists / NotFound are handled where they can occur; reaching
            // here with them, or with a refused object, is a bug.
            other => ProcessError::Internal(other.to_string()),
        }
    }
}
