//! Turning wire payloads into [`Signal`]s: one adapter per wire format, and the validation and
//! freshness rules of DESIGN.md §2–3 ([`target`]: what a target resource may be called;
//! [`freshness`]: the replay guard; [`delivery`]: what tells a resend from a new occurrence).
//!
//! Adapters parse with simd-json, which needs a mutable buffer: the HTTP layer hands them the
//! request body it owns.

pub mod adapters;
pub mod delivery;
pub mod freshness;
pub mod target;

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::fingerprint::Fingerprint;
use crate::k8s::types::{ResourceRef, SIGNAL_MAP_MAX_ENTRIES, SignalSource};

pub use delivery::Delivery;

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

/// One monitoring signal, normalised from any source. Serialisable: a replica forwards it to
/// the replica that owns its fingerprint (`crate::cluster::forward`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Signal {
    /// Identity of the problem: the target resource (DESIGN.md §3).
    pub fingerprint: Fingerprint,
    /// This delivery of the signal: the same for a verbatim resend (Alertmanager HA, a retry),
    /// different for a new occurrence ([`delivery`]). Computed by the adapter from what the
    /// source sent; owner resolution does not change it.
    pub delivery: Delivery,
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
    /// Who sent it, from where (set by the HTTP layer; empty from an adapter).
    pub origin: Origin,
}

/// Who sent a signal and from where, recorded on the RR it creates.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    /// The authenticated identity (`auth.mode: kubernetes`), e.g.
    /// `system:serviceaccount:monitoring:alertmanager`.
    pub sender: Option<String>,
    /// The peer address of the connection.
    pub peer: Option<std::net::SocketAddr>,
}

/// What one request may carry (`api.max_alerts_per_request`, `api.max_signal_bytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Alerts in one Alertmanager payload.
    pub max_alerts: usize,
    /// Bytes of one signal's labels and annotations together, names and values.
    pub max_signal_bytes: usize,
}

impl Default for Limits {
    /// The configuration's defaults.
    fn default() -> Self {
        Limits {
            max_alerts: 500,
            max_signal_bytes: 65_536,
        }
    }
}

/// Bytes of `labels` and `annotations` together: every name and value.
pub fn signal_bytes(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> usize {
    labels
        .iter()
        .chain(annotations)
        .map(|(k, v)| k.len() + v.len())
        .sum()
}

/// Refuses a signal whose labels and annotations exceed `limits.max_signal_bytes` together,
/// or [`SIGNAL_MAP_MAX_ENTRIES`] entries either.
pub fn check_signal_bytes(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    limits: &Limits,
) -> Result<(), Rejection> {
    for (field, map) in [("labels", labels), ("annotations", annotations)] {
        if map.len() > SIGNAL_MAP_MAX_ENTRIES {
            return Err(Rejection::TooManyEntries {
                field,
                count: map.len(),
                max: SIGNAL_MAP_MAX_ENTRIES,
            });
        }
    }
    let bytes = signal_bytes(labels, annotations);
    if bytes > limits.max_signal_bytes {
        return Err(Rejection::TooLarge {
            bytes,
            max: limits.max_signal_bytes,
        });
    }
    Ok(())
}

/// Why a payload, or one alert of it, can never succeed. Every variant is a 400 but
/// [`Rejection::TooManyAlerts`] (413): Alertmanager drops 4xx for good, so only input that no
/// retry could fix lands here.
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
    /// More alerts in one payload than `api.max_alerts_per_request` (413: the sender must split
    /// it, e.g. with Alertmanager's `max_alerts`).
    #[error("payload carries {count} alerts; at most {max} per request")]
    TooManyAlerts {
        /// Alerts in the payload.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A signal with more labels or annotations than the CRD holds.
    #[error("{count} {field}; at most {max} per signal")]
    TooManyEntries {
        /// `labels` or `annotations`.
        field: &'static str,
        /// How many there are.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A signal whose labels and annotations exceed `api.max_signal_bytes`.
    #[error("labels and annotations take {bytes} bytes; at most {max} per signal")]
    TooLarge {
        /// Their size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
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
            Rejection::TooManyAlerts { .. } => "too-many-alerts",
            Rejection::TooLarge { .. } | Rejection::TooManyEntries { .. } => "signal-too-large",
        }
    }
}
