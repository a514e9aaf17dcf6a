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

impl KnownRr {
    fn new(name: &str, resource_version: String, count: i64, first_seen: Timestamp) -> Self {
        let name = name.to_owned();
        KnownRr {
            name,
            resource_version,
            count,
            first_seen,
        }
    }
}

/// Why a floor write failed: the outcome class, the API status code when the API answered,
/// and a description.
struct WriteError(Outcome, Option<u16>, String);

impl WriteError {
    fn from_kube(op: &str, e: kube::Error) -> Self {
        let kube::Error::Api(s) = e else {
            return WriteError(Outcome::Transport, None, format!("{op}: {e}"));
        };
        let outcome = if s.code >= 500 {
            Outcome::ServerError
        } else {
            Outcome::ClientError
        };
        WriteError(
            outcome,
            Some(s.code),
            format!("{op}: {} {}", s.code, s.reason),
        )
    }

    fn late(op: &str, deadline: Duration) -> Self {
        WriteError(
            Outcome::Transport,
            None,
            format!("{op}: deadline {deadline:?}"),
        )
    }

    fn conflict(&self) -> bool {
        self.1 == Some(409)
    }
}

/// A floor write's result.
type Written<T> = Result<T, WriteError>;
/// What a counted signal got: created or duplicate, its count, its RR.
type Counted = (SignalStatus, i64, String);
/// Why a signal's writes failed, if they did.
type Failure = Option<WriteError>;

/// Issues the gateway's Kubernetes writes directly.
pub struct FloorSink {
    api: Api<RemediationRequest>,
    naming: Arc<Naming>,
    /// One slot per fingerprint index; `None` until its RR exists.
    slots: Vec<Arc<Mutex<Option<KnownRr>>>>,
    deadline: Duration,
}

impl FloorSink {
    /// A writer into `ns` for `pool` fingerprint indices; every call gets deadline `t`.
    pub fn new(
        client: kube::Client,
        ns: &str,
        naming: Arc<Naming>,
        pool: u32,
        t: Duration,
    ) -> Self {
        let api = Api::namespaced(client, ns);
        let (slots, deadline) = ((0..pool).map(|_| Arc::default()).collect(), t);
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
        let mut c = Completion::default();
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

    async fn call<T>(&self, op: &str, fut: impl Future<Output = kube::Result<T>>) -> Written<T> {
        match tokio::time::timeout(self.deadline, fut).await {
            Ok(r) => r.map_err(|e| WriteError::from_kube(op, e)),
            Err(_) => Err(WriteError::late(op, self.deadline)),
        }
    }

    /// One signal: its result, the writes it took, and why it failed if it did.
    async fn signal(&self, planned: &PlannedSignal, s: &Signal) -> (SignalResult, u32, Failure) {
        let mut writes = 0;
        let (fp, written) = (planned.fp, self.write(planned.fp, s, &mut writes).await);
        match written {
            Ok((status, count, rr)) => {
                let count = u64::try_from(count).ok();
                (SignalResult::new(fp, status, count, Some(rr)), writes, None)
            }
            Err(e) => {
                let failed = SignalResult::new(fp, SignalStatus::Failed, None, None);
                (failed, writes, Some(e))
            }
        }
    }

    /// Creates or counts one signal of fingerprint index `fp`; the status, count and RR name.
    async fn write(&self, fp: u32, signal: &Signal, writes: &mut u32) -> Written<Counted> {
        let Some(slot) = self.slots.get(fp as usize) else {
            let detail = format!("fingerprint index {fp} outside the pool");
            return Err(WriteError(Outcome::Unexpected, None, detail));
        };
        let mut guard = slot.clone().lock_owned().await;
        if guard.is_none() {
            let rr = rr::build(signal, self.namespace(), GENERATION, Timestamp::now());
            let name = rr.metadata.name.clone().unwrap_or_default();
            *writes += 1;
            let params = PostParams::default();
            let create = self.api.create(&params, &rr);
            match self.call("create", create).await {
                Ok(created) => {
                    let version = created.metadata.resource_version.unwrap_or_default();
                    *guard = Some(KnownRr::new(&name, version, 0, Timestamp::now()));
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
            let write = self.api.patch_status(&known.name, &params, &patch);
            match self.call("patch", write).await {
                Ok(o) => {
                    known.count += 1;
                    known.resource_version = o.metadata.resource_version.unwrap_or_default();
                    return Ok((SignalStatus::Duplicate, known.count, known.name.clone()));
                }
                Err(e) if e.conflict() => *known = self.refresh(&known.name.clone()).await?,
                Err(e) => return Err(e),
            }
        }
        let detail = "patch: 409 Conflict three times".into();
        Err(WriteError(Outcome::ClientError, Some(409), detail))
    }

    fn namespace(&self) -> &str {
        self.api.namespace().unwrap_or_default()
    }

    /// Reads an RR's current resourceVersion and count.
    async fn refresh(&self, name: &str) -> Written<KnownRr> {
        let o = self.call("get", self.api.get_status(name)).await?;
        let (version, dedup) = (
            o.metadata.resource_version,
            o.status.and_then(|s| s.deduplication),
        );
        let count = dedup.as_ref().map_or(0, |d| d.occurrence_count);
        let first_seen = dedup.map_or_else(Timestamp::now, |d| d.first_seen_at.0);
        Ok(KnownRr::new(
            name,
            version.unwrap_or_default(),
            count,
            first_seen,
        ))
    }
}

/// The gateway's signals for `plan`: its body, parsed by the gateway's adapter.
fn signals(naming: &Naming, plan: &RequestPlan, seq: u64) -> Written<Vec<Signal>> {
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
pub async fn prime(client: &kube::Client, ns: &str, timeout: Duration) -> anyhow::Result<()> {
    let naming = Naming::new("prime", ns, TargetKind::Pod, 1);
    let floor = FloorSink::new(client.clone(), ns, Arc::new(naming), 1, timeout);
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
    use gateway::index::{GENERATION_LABEL, rr_name};

    use super::*;

    #[test]
    fn patches_carry_the_known_version_and_first_sighting() {
        let first_seen = "2026-01-01T00:00:00Z"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let known = KnownRr::new("rr", "42".into(), 3, first_seen);
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
