//! The Kubernetes calls the gateway makes on RRs, behind the [`RrStore`] trait so the dedup
//! logic can be model-tested against an in-memory fake. [`KubeStore`] is the real one: every
//! call has a deadline, is counted in telemetry, and passes through the circuit breaker.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};

use serde::Serialize;

use super::breaker::Breaker;
use super::types::{DeduplicationStatus, RemediationRequest, StormAggregationStatus};
use crate::fingerprint::Fingerprint;
use crate::health::Health;
use crate::telemetry::{CallOutcome, Metrics, Verb};

/// The conditional merge-patch of `/status` that counts occurrences: the deduplication block
/// and, when storm updates are `inline`, the storm block, under the `resourceVersion` they were
/// derived at (a racing write turns it into 409 Conflict instead of a lost increment).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusPatch {
    metadata: PatchMetadata,
    status: PatchedStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct PatchMetadata {
    resource_version: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct PatchedStatus {
    deduplication: DeduplicationStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    storm_aggregation: Option<StormAggregationStatus>,
}

impl StatusPatch {
    /// The patch that writes `deduplication` (and `storm`, if given) at `resource_version`.
    pub fn new(
        resource_version: u64,
        deduplication: DeduplicationStatus,
        storm: Option<StormAggregationStatus>,
    ) -> Self {
        StatusPatch {
            metadata: PatchMetadata {
                resource_version: resource_version.to_string(),
            },
            status: PatchedStatus {
                deduplication,
                storm_aggregation: storm,
            },
        }
    }

    /// The precondition.
    pub fn resource_version(&self) -> u64 {
        self.metadata.resource_version.parse().unwrap_or_default()
    }

    /// The deduplication block written.
    pub fn deduplication(&self) -> &DeduplicationStatus {
        &self.status.deduplication
    }

    /// The storm block written, if any.
    pub fn storm(&self) -> Option<&StormAggregationStatus> {
        self.status.storm_aggregation.as_ref()
    }

    /// Whether `rr` holds exactly the deduplication block this patch writes: after a write
    /// whose answer was lost, that means it was applied (the block carries the new count and
    /// the arrival times in milliseconds, which no other write repeats).
    pub fn is_applied_in(&self, rr: &RemediationRequest) -> bool {
        let stored = rr.status.as_ref().and_then(|s| s.deduplication.as_ref());
        stored.is_some_and(|stored| {
            serde_json::to_value(stored).ok()
                == serde_json::to_value(&self.status.deduplication).ok()
        })
    }
}

/// What the gateway does with `metadata.managedFields` (`kubernetes.managed_fields`).
///
/// Kubernetes records, on every write, which client owns which field. For an RR that bookkeeping
/// is a third of the object, and kube-apiserver decodes, recomputes and re-encodes it on every
/// status patch. Clearing it once (a write of `managedFields: [{}]` to the RR itself) stops the
/// tracking for good: kube-apiserver does not track `Update` writes of an object that has no
/// managed fields, only a later server-side apply starts it again.
#[derive(Clone, Copy, Debug, Default, serde::Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ManagedFields {
    /// Clear them once an RR reaches [`ManagedFields::STRIP_AT`] occurrences, unless someone
    /// server-side applies to it.
    #[default]
    Strip,
    /// Leave them as Kubernetes keeps them.
    Keep,
}

impl ManagedFields {
    /// The occurrence count from which an RR is worth the clearing write: it repeats, so
    /// every later count of it is a cheaper write.
    pub const STRIP_AT: i64 = 3;

    /// Whether `rr`, just written with `count`, should have its managed fields cleared: it
    /// has some, none of them from a server-side apply (clearing those would change what a
    /// later apply of that manager removes), and the count has reached [`Self::STRIP_AT`].
    pub fn clears(self, rr: &RemediationRequest, count: i64) -> bool {
        let entries = rr.metadata.managed_fields.as_deref().unwrap_or_default();
        self == ManagedFields::Strip
            && count >= Self::STRIP_AT
            && !entries.is_empty()
            && entries
                .iter()
                .all(|entry| entry.operation.as_deref() != Some("Apply"))
    }
}

/// Why a call failed, sorted by what the caller does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Create: an RR of that name exists (a racing create won).
    #[error("already exists")]
    AlreadyExists,
    /// Patch: the `resourceVersion` precondition failed (a racing write won).
    #[error("resourceVersion conflict")]
    Conflict,
    /// The RR does not exist.
    #[error("not found")]
    NotFound,
    /// The call did not finish within its deadline.
    #[error("deadline of {0:?} exceeded")]
    Timeout(Duration),
    /// No connection, an apiserver 5xx/429, an authorization failure, or the breaker is open:
    /// a later retry can succeed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Not sent: the circuit breaker is open (a later retry can succeed).
    #[error("unavailable: circuit breaker open")]
    BreakerOpen,
    /// A storm write's precondition failed: the count moved on, a newer state follows.
    #[error("stale: the occurrence count moved on")]
    Stale,
    /// The apiserver refused the object (400/422): a bug in what the gateway sent.
    #[error("invalid: {0}")]
    Invalid(String),
}

impl StoreError {
    /// The telemetry outcome label of this error.
    pub fn outcome(&self) -> CallOutcome {
        match self {
            StoreError::AlreadyExists => CallOutcome::AlreadyExists,
            StoreError::Conflict => CallOutcome::Conflict,
            StoreError::NotFound => CallOutcome::NotFound,
            StoreError::Timeout(_) => CallOutcome::Timeout,
            StoreError::Unavailable(_) => CallOutcome::Unavailable,
            StoreError::Invalid(_) => CallOutcome::Invalid,
            StoreError::Stale => CallOutcome::Stale,
            StoreError::BreakerOpen => CallOutcome::BreakerOpen,
        }
    }

    /// Whether a write that failed this way may still have been applied: the request went
    /// out and no answer said it was refused (a deadline, a dropped connection, a 5xx after
    /// etcd took it). The caller must find out before answering, or a retry counts twice.
    pub fn may_have_applied(&self) -> bool {
        matches!(self, StoreError::Timeout(_) | StoreError::Unavailable(_))
    }
}

/// RR calls used by the dedup engine and the storm queue.
pub trait RrStore: Send + Sync + 'static {
    /// POST an RR.
    fn create(
        &self,
        rr: &RemediationRequest,
    ) -> impl Future<Output = Result<RemediationRequest, StoreError>> + Send;

    /// The conditional merge-patch of `/status`.
    fn patch_status(
        &self,
        name: &str,
        patch: &StatusPatch,
    ) -> impl Future<Output = Result<RemediationRequest, StoreError>> + Send;

    /// Writes `status.stormAggregation` with a JSON patch that applies only while
    /// `status.deduplication.occurrenceCount` equals `count`: a stale state fails instead of
    /// overwriting a newer one. No `resourceVersion`: repeating it is harmless.
    fn patch_storm(
        &self,
        name: &str,
        count: i64,
        storm: &StormAggregationStatus,
    ) -> impl Future<Output = Result<RemediationRequest, StoreError>> + Send;

    /// GET one RR (only after a lost race, never on the uncontended path).
    fn get(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<RemediationRequest, StoreError>> + Send;

    /// Clears `metadata.managedFields` of one RR (a merge-patch of the RR itself, no
    /// `resourceVersion`: it changes nothing a racing write could have changed). A refusal
    /// (RBAC without `patch` on `remediationrequests`, an admission webhook) is
    /// [`StoreError::Invalid`].
    fn clear_managed_fields(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<RemediationRequest, StoreError>> + Send;

    /// Every RR of one fingerprint (a field-selector list, read from etcd): the authoritative
    /// set, asked for only when a new generation is about to be created after a terminal or
    /// deleted one.
    fn list_fingerprint(
        &self,
        fingerprint: &Fingerprint,
    ) -> impl Future<Output = Result<Vec<RemediationRequest>, StoreError>> + Send;
}

/// The real store.
#[derive(Clone)]
pub struct KubeStore {
    api: Api<RemediationRequest>,
    timeout: Duration,
    metrics: Metrics,
    breaker: Arc<Breaker>,
    health: Arc<Health>,
}

impl KubeStore {
    /// A store over RRs in `namespace`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        timeout: Duration,
        breaker: Arc<Breaker>,
        metrics: Metrics,
        health: Arc<Health>,
    ) -> Self {
        KubeStore {
            api: Api::namespaced(client, namespace),
            timeout,
            metrics,
            breaker,
            health,
        }
    }

    async fn call<T, F>(&self, verb: Verb, call: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, kube::Error>>,
    {
        if !self.breaker.allow() {
            self.metrics
                .k8s_request(verb, CallOutcome::BreakerOpen, 0.0);
            return Err(StoreError::BreakerOpen);
        }
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            // A storm write's only expected refusal is its `test` operation failing.
            Ok(Err(error)) => match classify(error) {
                StoreError::Invalid(_) if verb == Verb::PatchStorm => Err(StoreError::Stale),
                other => Err(other),
            },
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        };
        let outcome = match &result {
            Ok(_) => CallOutcome::Success,
            Err(error) => error.outcome(),
        };
        self.metrics
            .k8s_request(verb, outcome, started.elapsed().as_secs_f64());
        let healthy = !matches!(
            result,
            Err(StoreError::Timeout(_) | StoreError::Unavailable(_))
        );
        // Readiness follows the breaker, not each call: an isolated timeout (one slow write in
        // a brownout) must not take every replica out of its Service at once.
        self.health
            .set_breaker_open_until(self.breaker.record(healthy));
        result
    }
}

impl RrStore for KubeStore {
    async fn create(&self, rr: &RemediationRequest) -> Result<RemediationRequest, StoreError> {
        self.call(Verb::Create, self.api.create(&PostParams::default(), rr))
            .await
    }

    async fn patch_status(
        &self,
        name: &str,
        patch: &StatusPatch,
    ) -> Result<RemediationRequest, StoreError> {
        self.call(
            Verb::Patch,
            self.api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(patch)),
        )
        .await
    }

    async fn patch_storm(
        &self,
        name: &str,
        count: i64,
        storm: &StormAggregationStatus,
    ) -> Result<RemediationRequest, StoreError> {
        let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
            { "op": "test", "path": "/status/deduplication/occurrenceCount", "value": count },
            { "op": "add", "path": "/status/stormAggregation", "value": storm },
        ]))
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.call(
            Verb::PatchStorm,
            self.api
                .patch_status(name, &PatchParams::default(), &Patch::Json::<()>(patch)),
        )
        .await
    }

    async fn get(&self, name: &str) -> Result<RemediationRequest, StoreError> {
        self.call(Verb::Get, self.api.get(name)).await
    }

    async fn clear_managed_fields(&self, name: &str) -> Result<RemediationRequest, StoreError> {
        // One empty entry is Kubernetes' way to say "reset"; an empty list means "unchanged".
        let patch = serde_json::json!({ "metadata": { "managedFields": [{}] } });
        let params = PatchParams::default();
        self.call(
            Verb::PatchMetadata,
            refusal_is_invalid(self.api.patch(name, &params, &Patch::Merge(&patch))),
        )
        .await
    }

    async fn list_fingerprint(
        &self,
        fingerprint: &Fingerprint,
    ) -> Result<Vec<RemediationRequest>, StoreError> {
        let params = ListParams::default().fields(&format!("spec.signalFingerprint={fingerprint}"));
        let list = self.call(Verb::List, self.api.list(&params)).await?;
        Ok(list.items)
    }
}

/// Makes a 403 a 422 for [`classify`]: for a call the gateway can do without, a refusal is a
/// standing answer to stop asking, not an outage to wait out.
async fn refusal_is_invalid<T>(
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    call.await.map_err(|error| match error {
        kube::Error::Api(mut status) if status.code == 403 => {
            status.code = 422;
            kube::Error::Api(status)
        }
        other => other,
    })
}

fn classify(error: kube::Error) -> StoreError {
    match error {
        kube::Error::Api(status) => match (status.code, status.reason.as_str()) {
            (409, "AlreadyExists") => StoreError::AlreadyExists,
            (409, _) => StoreError::Conflict,
            (404, _) => StoreError::NotFound,
            (400 | 422, _) => StoreError::Invalid(status.message),
            (code, reason) => StoreError::Unavailable(format!(
                "apiserver answered {code} {reason}: {}",
                status.message
            )),
        },
        other => StoreError::Unavailable(other.to_string()),
    }
}

impl<T: RrStore> RrStore for Arc<T> {
    fn create(
        &self,
        rr: &RemediationRequest,
    ) -> impl Future<Output = Result<RemediationRequest, StoreError>> + Send {
        (**self).create(rr)
    }

    fn patch_status(
        &self,
        name: &str,
        patch: &StatusPatch,
    ) -> impl Future<Output = Result<RemediationRequest, StoreError>> + Send {
        (**self).patch_status(name, patch)
    }

    fn patch_storm(
        &self,
        name: &str,
        count: i64,
        storm: &StormAggregationStatus,
    ) -> impl Future<Output = Result<RemediationRequest, StoreError>> + Send {
        (**self).patch_storm(name, count, storm)
    }

    fn get(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<RemediationRequest, StoreError>> + Send {
        (**self).get(name)
    }

    fn clear_managed_fields(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<RemediationRequest, StoreError>> + Send {
        (**self).clear_managed_fields(name)
    }

    fn list_fingerprint(
        &self,
        fingerprint: &Fingerprint,
    ) -> impl Future<Output = Result<Vec<RemediationRequest>, StoreError>> + Send {
        (**self).list_fingerprint(fingerprint)
    }
}
