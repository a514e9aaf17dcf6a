//! Turning wire payloads into [`Signal`]s: one adapter per wire format, and the validation and
//! freshness rules of DESIGN.md §2–3 ([`target`]: what a target resource may be called;
//! [`freshness`]: the replay guard).
//!
//! Adapters parse with simd-json, which needs a mutable buffer: the HTTP layer hands them the
//! request body it owns.

pub mod adapters;
pub mod freshness;
pub mod target;

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::fingerprint::Fingerprint;
use crate::k8s::types::{ResourceRef, SignalSource};

/// Longest `Signal::name` (`spec.signalName` allows 253 characters); longer names are truncated,
/// not rejected: the name is not part of the fingerprint, so truncation cannot merge two
/// problems, while a 400 would lose the signal for good.
pub const SIGNAL_NAME_MAX_CHARS: usize = 253;
/// Longest `Signal::severity` (`spec.severity` allows 1..50 characters); longer values are
/// truncated for the same reason.
pub const SEVERITY_MAX_CHARS: usize = 50;
/// Longest target resource name: a Kubernetes object name (DNS subdomain) never exceeds it, so a
/// longer one cannot name a resource and is rejected.
pub const RESOURCE_NAME_MAX_CHARS: usize = 253;
/// Longest target resource kind (`spec.targetResource.kind` allows 1..63 characters).
pub const RESOURCE_KIND_MAX_CHARS: usize = 63;

/// One monitoring signal, normalised from any source.
#[derive(Clone, Debug, PartialEq)]
pub struct Signal {
    /// Identity of the problem: the target resource (DESIGN.md §3).
    pub fingerprint: Fingerprint,
    /// Alert name (`labels.alertname`) or Event `reason`.
    pub name: String,
    /// `labels.severity` verbatim, else `"unknown"`; the Event `type` for Events.
    pub severity: String,
    /// Which adapter produced it.
    pub source: SignalSource,
    /// The workload the signal is about: the labelled object, or the top of its controller
    /// chain once the owner stage resolved it (`crate::owners`).
    pub resource: ResourceRef,
    /// The object the source named, when owner resolution replaced `resource` with its
    /// controller (`None`: `resource` is as labelled).
    pub labelled: Option<ResourceRef>,
    /// The `cluster` label, when present.
    pub cluster: Option<String>,
    /// Alert labels merged over the common labels (alert wins).
    pub labels: BTreeMap<String, String>,
    /// Alert annotations merged over the common annotations (alert wins).
    pub annotations: BTreeMap<String, String>,
    /// When the source says the problem started (`startsAt`; `firstTimestamp`, else
    /// `eventTime`).
    pub firing_time: Timestamp,
    /// The raw alert or event as JSON text, for `spec.originalPayload` (capped there).
    pub raw: String,
}

/// Why a payload, or one alert of it, can never succeed. Every variant is a 400: Alertmanager
/// drops 4xx for good, so only input that no retry could fix lands here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The body is not JSON of the expected shape.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// An Alertmanager payload without alerts.
    #[error("payload contains no alerts")]
    NoAlerts,
    /// A required field is absent or empty.
    #[error("missing required field: {0}")]
    MissingField(&'static str),
    /// No label names a target resource (DESIGN.md §3).
    #[error("no target resource label")]
    NoTargetResource,
    /// A field is present but its value can never name what it should, such as a namespace
    /// that is not an RFC 1123 label ([`target`]).
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The JSON path of the field, e.g. `involvedObject.name`.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An Event whose `type` is `Normal` (or anything but Warning / Error).
    #[error("event type {0:?} is not accepted: only Warning and Error events are signals")]
    UnsupportedEventType(String),
    /// A timestamp that is unparseable, too old or too far in the future.
    #[error("{0}")]
    Freshness(String),
}

impl Rejection {
    /// The problem type slug, `https://kubernaut.ai/problems/<slug>`.
    pub fn slug(&self) -> &'static str {
        match self {
            Rejection::MalformedJson(_) => "malformed-json",
            Rejection::NoAlerts
            | Rejection::MissingField(_)
            | Rejection::NoTargetResource
            | Rejection::InvalidField { .. }
            | Rejection::UnsupportedEventType(_) => "validation-error",
            Rejection::Freshness(_) => "stale-signal",
        }
    }
}
