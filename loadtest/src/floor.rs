//! The floor: the Kubernetes writes the gateway would make for the same signals, issued
//! directly through a `kube::Client`, so the gateway's overhead is a measured difference.
//!
//! The RR is the gateway's own: the planned body is parsed by the gateway's adapter into a
//! `Signal` and built by `gateway::dedup::rr::build` (same name, labels and spec). Per signal,
//! like the gateway's uncontended path (DESIGN.md §5): a first sighting is one CREATE
//! (answered as soon as it returns; the `status.deduplication` initialisation follows in the
//! background, as the gateway's does); a repeat is one merge-patch of `/status` carrying
//! `metadata.resourceVersion` and the incremented count. The writer keeps each RR's
//! resourceVersion and count from the last write response, as the gateway's index does, so
//! there is no GET on the path; writes to one RR are serialised by a per-fingerprint lock (the
//! gateway batches them instead — that difference is part of what is measured). A 409 on the
//! patch (only possible if something else wrote the RR) is resolved by a GET and a retry,
//! counted as an extra write.

use std::sync::Arc;
use std::time::Duration;

use gateway::dedup::rr;
use gateway::ingest::Signal;
use gateway::ingest::adapters::{alertmanager, kubernetes_event};
use gateway::k8s::types::{DeduplicationStatus, RemediationRequest, RemediationRequestStatus};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::Mutex;

use crate::payload::{Naming, TargetKind};
use crate::results::{Completion, Outcome, SignalResult, SignalStatus};
use crate::scenario::{PlannedSignal, RequestPlan, Route};

/// The generation of every floor RR: the first, as the gateway's first RR of a fingerprint.
const GENERATION: u32 = 0;

/// What the floor writer knows of one RR.
#[derive(Clone, Debug)]
struct KnownRr {
    name: String,
    resource_version: String,
    count: i64,
    first_seen: Timestamp,
}

/// Why a floor write failed: the outcome class, the API status code when the API answered,
/// and a description.
struct WriteError(Outcome, Option<u16>, String);

impl WriteError {
    fn from_kube(op: &str, e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) if s.code >= 500 => WriteError(
                Outcome::ServerError,
                Some(s.code),
                format!("{op}: {}", s.reason),
            ),
            kube::Error::Api(s) => WriteError(
                Outcome::ClientError,
                Some(s.code),
                format!("{op}: {}", s.reason),
            ),
            other => WriteError(Outcome::Transport, None, format!("{op}: {other}")),
        }
    }

    fn conflict(&self) -> bool {
        self.1 == Some(409)
    }
}

/// Issues the gateway's Kubernetes writes directly.
pub struct FloorSink {
    api: Api<RemediationRequest>,
    naming: Arc<Naming>,
    /// One slot per fingerprint index; `None` until its RR exists.
    slots: Vec<Arc<Mutex<Option<KnownRr>>>>,
    deadline: Duration,
}

impl FloorSink {
    /// A writer into `namespace` for `pool` fingerprint indices; every call gets `deadline`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        naming: Arc<Naming>,
        pool: u32,
        deadline: Duration,
    ) -> Self {
        let api = Api::namespaced(client, namespace);
        let slots = (0..pool).map(|_| Arc::default()).collect();
        FloorSink {
            api,
            naming,
            slots,
            deadline,
        }
    }

    /// Writes every signal of `plan` (concurrently when several) and reports like the gateway
    /// would: 201 / 202 for one signal, 207 for several.
    pub async fn send(&self, plan: &RequestPlan, seq: u64) -> Completion {
        let signals = match signals(&self.naming, plan, seq) {
            Ok(signals) => signals,
            Err(WriteError(outcome, _, detail)) => {
                return Completion::failed(outcome, &plan.signals, SignalStatus::Rejected, detail);
            }
        };
        let each = plan
            .signals
            .iter()
            .zip(&signals)
            .map(|(p, s)| self.signal(p, s));
        let mut c = Completion::failed(
            Outcome::MultiStatus,
            &[],
            SignalStatus::Failed,
            String::new(),
        );
        let mut failure = None;
        for (result, writes, error) in futures::future::join_all(each).await {
            c.signals.push(result);
            c.writes += writes;
            failure = failure.or(error);
        }
        c.outcome = match (&failure, c.signals.as_slice()) {
            (Some(WriteError(outcome, ..)), [_]) => *outcome,
            (_, [only]) if only.status == SignalStatus::Created => Outcome::Created,
            (_, [_]) => Outcome::Duplicate,
            _ => Outcome::MultiStatus,
        };
        c.detail = failure.map(|e| e.2);
        c
    }

    async fn call<T>(
        &self,
        op: &str,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, WriteError> {
        match tokio::time::timeout(self.deadline, fut).await {
            Ok(r) => r.map_err(|e| WriteError::from_kube(op, e)),
            Err(_) => Err(WriteError(
                Outcome::Transport,
                None,
                format!("{op}: deadline {:?}", self.deadline),
            )),
        }
    }

    /// One signal: its result, the writes it took, and why it failed if it did.
    async fn signal(
        &self,
        planned: &PlannedSignal,
        signal: &Signal,
    ) -> (SignalResult, u32, Option<WriteError>) {
        let mut writes = 0;
        let (fp, written) = (
            planned.fp,
            self.write(planned.fp, signal, &mut writes).await,
        );
        match written {
            Ok((status, count, rr)) => {
                let count = u64::try_from(count).ok();
                (SignalResult::new(fp, status, count, Some(rr)), writes, None)
            }
            Err(e) => (
                SignalResult::new(fp, SignalStatus::Failed, None, None),
                writes,
                Some(e),
            ),
        }
    }

    /// Creates or counts one signal of fingerprint index `fp`; the status, count and RR name.
    async fn write(
        &self,
        fp: u32,
        signal: &Signal,
        writes: &mut u32,
    ) -> Result<(SignalStatus, i64, String), WriteError> {
        let Some(slot) = self.slots.get(fp as usize) else {
            let detail = format!("fingerprint index {fp} outside the pool");
            return Err(WriteError(Outcome::Unexpected, None, detail));
        };
        let mut guard = slot.clone().lock_owned().await;
        if guard.is_none() {
            let rr = rr::build(signal, self.namespace(), GENERATION, Timestamp::now());
            let name = rr.metadata.name.clone().unwrap_or_default();
            *writes += 1;
            match self
                .call("create", self.api.create(&PostParams::default(), &rr))
                .await
            {
                Ok(created) => {
                    let resource_version = created.metadata.resource_version.unwrap_or_default();
                    let first_seen = Timestamp::now();
                    *guard = Some(KnownRr {
                        name: name.clone(),
                        resource_version,
                        count: 0,
                        first_seen,
                    });
                    // The 201 does not wait for the status initialisation; the lock keeps
                    // the next signal of this RR behind it.
                    *writes += 1;
                    let (api, deadline) = (self.api.clone(), self.deadline);
                    tokio::spawn(async move {
                        if let Some(known) = guard.as_mut() {
                            let (patch, params) = (status_patch(known, 1), PatchParams::default());
                            let write = api.patch_status(&known.name, &params, &patch);
                            if let Ok(Ok(o)) = tokio::time::timeout(deadline, write).await {
                                known.resource_version =
                                    o.metadata.resource_version.unwrap_or_default();
                            }
                            // The 201 handed out count 1 either way. If this write was lost,
                            // the next patch (same resourceVersion) writes 2 over no status;
                            // if it landed unseen, the next patch gets a 409 and refreshes.
                            known.count = 1;
                        }
                    });
                    return Ok((SignalStatus::Created, 1, name));
                }
                // Exists already (a rerun with the same run id): adopt it.
                Err(e) if e.conflict() => *guard = Some(self.refresh(&name).await?),
                Err(e) => return Err(e),
            }
        }
        // Bounded: a conflict means another writer; give up after a few refreshes.
        for _ in 0..3 {
            let Some(known) = guard.as_mut() else { break };
            let (patch, params) = (status_patch(known, known.count + 1), PatchParams::default());
            *writes += 1;
            match self
                .call("patch", self.api.patch_status(&known.name, &params, &patch))
                .await
            {
                Ok(o) => {
                    known.count += 1;
                    known.resource_version = o.metadata.resource_version.unwrap_or_default();
                    return Ok((SignalStatus::Duplicate, known.count, known.name.clone()));
                }
                Err(e) if e.conflict() => *known = self.refresh(&known.name.clone()).await?,
                Err(e) => return Err(e),
            }
        }
        Err(WriteError(
            Outcome::ClientError,
            Some(409),
            "patch: 409 Conflict three times".into(),
        ))
    }

    fn namespace(&self) -> &str {
        self.api.namespace().unwrap_or_default()
    }

    /// Reads an RR's current resourceVersion and count.
    async fn refresh(&self, name: &str) -> Result<KnownRr, WriteError> {
        let o = self.call("get", self.api.get_status(name)).await?;
        let dedup = o.status.and_then(|s| s.deduplication);
        Ok(KnownRr {
            name: name.to_owned(),
            resource_version: o.metadata.resource_version.unwrap_or_default(),
            count: dedup.as_ref().map_or(0, |d| d.occurrence_count),
            first_seen: dedup.map_or_else(Timestamp::now, |d| d.first_seen_at.0),
        })
    }
}

/// The gateway's signals for `plan`: its body, parsed by the gateway's adapter.
fn signals(naming: &Naming, plan: &RequestPlan, seq: u64) -> Result<Vec<Signal>, WriteError> {
    let now = Timestamp::now();
    let mut body = naming.body(plan, seq, now);
    let parsed = match plan.route {
        Route::Alertmanager => alertmanager::parse(&mut body, None, now)
            .and_then(|signals| signals.into_iter().collect()),
        Route::Event => kubernetes_event::parse(&mut body, now).map(|s| vec![s]),
    };
    parsed.map_err(|e| WriteError(Outcome::ClientError, None, format!("adapter: {e}")))
}

/// The merge-patch setting the count to `count`, guarded by the known resourceVersion.
fn status_patch(known: &KnownRr, count: i64) -> Patch<serde_json::Value> {
    let metadata = ObjectMeta {
        resource_version: Some(known.resource_version.clone()),
        ..ObjectMeta::default()
    };
    let status = RemediationRequestStatus {
        deduplication: Some(DeduplicationStatus {
            occurrence_count: count,
            first_seen_at: Time(known.first_seen),
            last_seen_at: Time(Timestamp::now()),
            recent_occurrences: Vec::new(),
            storm_detected_at: None,
            storm_detected_count: None,
        }),
        ..RemediationRequestStatus::default()
    };
    Patch::Merge(json!({ "metadata": metadata, "status": status }))
}

/// Warms the apiserver's RR write path: creates, status-patches and deletes one throwaway RR,
/// through the floor's own writer. On a fresh control plane the first writes of a CRD take
/// seconds (schema and validation rules are compiled on first use), longer than the gateway's
/// per-call deadline; a benchmark should not start on that.
pub async fn prime(
    client: &kube::Client,
    namespace: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let naming = Naming::new("prime", namespace, TargetKind::Pod, 1);
    let floor = FloorSink::new(client.clone(), namespace, Arc::new(naming), 1, timeout);
    let plan = RequestPlan::alerts(&[0]);
    // A leftover of an interrupted run is adopted by the first send.
    let mut name = None;
    for seq in 0..2 {
        let c = floor.send(&plan, seq).await;
        let detail = c.detail.unwrap_or_default();
        anyhow::ensure!(!c.outcome.is_failure(), "priming RR writes: {detail}");
        name = c.signals.into_iter().next().and_then(|s| s.rr);
    }
    if let Some(name) = name {
        floor.api.delete(&name, &Default::default()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use gateway::dedup::index::{GENERATION_LABEL, rr_name};

    use super::*;

    #[test]
    fn patches_carry_the_known_version_and_first_sighting() {
        let first_seen = "2026-01-01T00:00:00Z"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let (name, resource_version) = ("rr".into(), "42".into());
        let known = KnownRr {
            name,
            resource_version,
            count: 3,
            first_seen,
        };
        let Patch::Merge(p) = status_patch(&known, 4) else {
            panic!("not a merge patch")
        };
        assert_eq!(p["metadata"], json!({"resourceVersion": "42"}));
        let dedup = &p["status"]["deduplication"];
        assert_eq!(dedup["occurrenceCount"], 4);
        assert_eq!(dedup["firstSeenAt"], "2026-01-01T00:00:00Z");
        assert!(dedup["lastSeenAt"].is_string());
        assert_eq!(p["status"].as_object().map(|o| o.len()), Some(1));
    }

    #[test]
    fn the_floor_builds_the_gateways_rr() {
        let naming = Naming::new("t", "ns", TargetKind::Pod, 10);
        let signals = signals(&naming, &RequestPlan::alerts(&[3, 4]), 0);
        let signals =
            signals.unwrap_or_else(|e| panic!("the adapter refused the payload: {}", e.2));
        assert_eq!(signals.len(), 2);
        let signal = &signals[0];
        assert_eq!(signal.fingerprint.to_string(), naming.fingerprint(3));
        let rr = rr::build(signal, "rrs", GENERATION, Timestamp::now());
        let name = rr_name(&signal.fingerprint, GENERATION);
        assert_eq!(rr.metadata.name.as_deref(), Some(name.as_str()));
        assert!(name.starts_with(&format!("rr-{}-", &naming.fingerprint(3)[..12])));
        let labels = rr.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get(GENERATION_LABEL).map(String::as_str), Some("0"));
        assert_eq!(rr.spec.target_resource.name, "lt-t-3");
    }
}
