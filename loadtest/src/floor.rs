//! Floor mode: the Kubernetes writes the gateway would make for the same signals, issued
//! directly through a `kube::Client`, so the gateway's overhead is a measured difference.
//!
//! Per signal, like the gateway's uncontended path (DESIGN.md §5): a first sighting is one
//! CREATE of an RR (answered as soon as it returns; the `status.deduplication` initialisation
//! follows in the background, as the gateway's does); a repeat is one merge-patch of
//! `/status` carrying `metadata.resourceVersion` and the incremented count. The writer keeps
//! each RR's resourceVersion and count from the last write response, as the gateway's index
//! does, so there is no GET on the path; writes to one RR are serialised by a per-fingerprint
//! lock (the gateway batches them instead — that difference is part of what is measured). A
//! 409 on the patch (only possible if something else wrote the RR) is resolved by a GET and
//! a retry, counted as an extra write.

use std::sync::Arc;
use std::time::Duration;

use jiff::{Timestamp, Unit};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::check::rr_resource;
use crate::outcome::{Completion, Outcome, SignalResult, SignalStatus};
use crate::scenario::{Naming, PlannedSignal, RequestPlan, Route};

/// What the floor writer knows of one RR.
#[derive(Clone, Debug)]
struct KnownRr {
    name: String,
    resource_version: String,
    count: u64,
    first_seen: String,
}

/// Issues the gateway's Kubernetes writes directly.
pub struct FloorSink {
    api: Api<DynamicObject>,
    naming: Arc<Naming>,
    /// One slot per fingerprint index; `None` until its RR exists.
    slots: Vec<Arc<Mutex<Option<KnownRr>>>>,
    deadline: Duration,
}

/// Why a floor write failed, reduced to what the report needs.
struct WriteError {
    outcome: Outcome,
    /// The API status code, when the API answered.
    code: Option<u16>,
    detail: String,
}

impl WriteError {
    fn from_kube(op: &str, e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => WriteError {
                outcome: if s.code >= 500 {
                    Outcome::ServerError
                } else {
                    Outcome::ClientError
                },
                code: Some(s.code),
                detail: format!("{op}: {} {}", s.code, s.reason),
            },
            other => WriteError {
                outcome: Outcome::Transport,
                code: None,
                detail: format!("{op}: {other}"),
            },
        }
    }
}

/// The name the floor gives the RR of fingerprint `fp` (`rr-<fp[0..12]>-<fp[12..20]>`).
pub fn rr_name(fp: &str) -> String {
    format!("rr-{}-{}", &fp[..12], &fp[12..20])
}

fn now_rfc3339() -> String {
    let now = Timestamp::now();
    now.round(Unit::Second).unwrap_or(now).to_string()
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
        Self {
            api: Api::namespaced_with(client, namespace, &rr_resource()),
            naming,
            slots: (0..pool).map(|_| Arc::new(Mutex::new(None))).collect(),
            deadline,
        }
    }

    /// Writes every signal of `plan` (concurrently when several) and reports like the gateway
    /// would: 201 / 202 for one signal, 207 for several.
    pub async fn send(&self, plan: &RequestPlan, _seq: u64) -> Completion {
        let results =
            futures::future::join_all(plan.signals.iter().map(|s| self.signal(plan.route, s)))
                .await;
        let mut signals = Vec::with_capacity(results.len());
        let mut writes = 0;
        let mut failure: Option<WriteError> = None;
        for (s, r) in plan.signals.iter().zip(results) {
            match r {
                Ok((result, w)) => {
                    writes += w;
                    signals.push(result);
                }
                Err(e) => {
                    signals.push(SignalResult {
                        fp: s.fp,
                        status: SignalStatus::Failed,
                        count: None,
                        rr: None,
                        fingerprint_ok: true,
                    });
                    failure.get_or_insert(e);
                }
            }
        }
        let outcome = match (&failure, signals.as_slice()) {
            (Some(e), _) if plan.signals.len() == 1 => e.outcome,
            (_, [only]) if only.status == SignalStatus::Created => Outcome::Created,
            (_, [_]) => Outcome::Duplicate,
            _ => Outcome::MultiStatus,
        };
        Completion {
            outcome,
            signals,
            detail: failure.map(|e| e.detail),
            k8s_writes: writes,
        }
    }

    async fn call<T>(
        &self,
        op: &str,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, WriteError> {
        match tokio::time::timeout(self.deadline, fut).await {
            Ok(r) => r.map_err(|e| WriteError::from_kube(op, e)),
            Err(_) => Err(WriteError {
                outcome: Outcome::Transport,
                code: None,
                detail: format!("{op}: deadline {:?}", self.deadline),
            }),
        }
    }

    /// One signal: returns its result and the number of writes it took.
    async fn signal(
        &self,
        route: Route,
        s: &PlannedSignal,
    ) -> Result<(SignalResult, u32), WriteError> {
        let Some(slot) = self.slots.get(s.fp as usize) else {
            return Err(WriteError {
                outcome: Outcome::Unexpected,
                code: None,
                detail: format!("fingerprint index {} outside the pool", s.fp),
            });
        };
        let mut guard = slot.clone().lock_owned().await;
        let fp = self.naming.fingerprint(s.fp);
        let mut writes = 0;
        if guard.is_none() {
            let name = rr_name(&fp);
            let obj = self.rr_object(&name, &fp, route, s)?;
            writes += 1;
            match self
                .call("create", self.api.create(&PostParams::default(), &obj))
                .await
            {
                Ok(created) => {
                    let rv = created
                        .metadata
                        .resource_version
                        .clone()
                        .unwrap_or_default();
                    let first_seen = now_rfc3339();
                    *guard = Some(KnownRr {
                        name: name.clone(),
                        resource_version: rv,
                        count: 0,
                        first_seen,
                    });
                    // The 201 does not wait for the status initialisation; the lock keeps
                    // the next signal of this RR behind it.
                    let api = self.api.clone();
                    let deadline = self.deadline;
                    tokio::spawn(async move {
                        if let Some(known) = guard.as_mut() {
                            let patch = status_patch(known, 1);
                            let params = PatchParams::default();
                            let patch = Patch::Merge(&patch);
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
                    let result = SignalResult {
                        fp: s.fp,
                        status: SignalStatus::Created,
                        count: Some(1),
                        rr: Some(name),
                        fingerprint_ok: true,
                    };
                    return Ok((result, writes + 1));
                }
                Err(e) if e.code == Some(409) => {
                    // Exists already (a rerun with the same run id): adopt it.
                    *guard = Some(self.refresh(&name).await?);
                }
                Err(e) => return Err(e),
            }
        }
        // Bounded: a conflict means another writer; give up after a few refreshes.
        for _ in 0..3 {
            let Some(known) = guard.as_mut() else { break };
            let next = known.count + 1;
            let patch = status_patch(known, next);
            writes += 1;
            match self
                .call(
                    "patch",
                    self.api.patch_status(
                        &known.name,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    ),
                )
                .await
            {
                Ok(o) => {
                    known.count = next;
                    known.resource_version = o.metadata.resource_version.unwrap_or_default();
                    let result = SignalResult {
                        fp: s.fp,
                        status: SignalStatus::Duplicate,
                        count: Some(next),
                        rr: Some(known.name.clone()),
                        fingerprint_ok: true,
                    };
                    return Ok((result, writes));
                }
                Err(e) if e.code == Some(409) => {
                    let name = known.name.clone();
                    *guard = Some(self.refresh(&name).await?);
                }
                Err(e) => return Err(e),
            }
        }
        Err(WriteError {
            outcome: Outcome::ClientError,
            code: Some(409),
            detail: "patch: 409 Conflict three times".into(),
        })
    }

    /// Reads an RR's current resourceVersion and count.
    async fn refresh(&self, name: &str) -> Result<KnownRr, WriteError> {
        let o = self.call("get", self.api.get_status(name)).await?;
        let count = o
            .data
            .pointer("/status/deduplication/occurrenceCount")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let first_seen = o
            .data
            .pointer("/status/deduplication/firstSeenAt")
            .and_then(Value::as_str)
            .map_or_else(now_rfc3339, str::to_owned);
        Ok(KnownRr {
            name: name.to_owned(),
            resource_version: o.metadata.resource_version.unwrap_or_default(),
            count,
            first_seen,
        })
    }

    /// The RR the gateway would create for signal `s` about fingerprint `fp`.
    fn rr_object(
        &self,
        name: &str,
        fp: &str,
        route: Route,
        s: &PlannedSignal,
    ) -> Result<DynamicObject, WriteError> {
        serde_json::from_value(rr_body(&self.naming, name, fp, route, s)).map_err(|e| WriteError {
            outcome: Outcome::Unexpected,
            code: None,
            detail: format!("build RR: {e}"),
        })
    }
}

/// The RR the gateway would create, as JSON, for signal `s` about fingerprint `fp`.
pub fn rr_body(naming: &Naming, name: &str, fp: &str, route: Route, s: &PlannedSignal) -> Value {
    let now = Timestamp::now();
    let at = now_rfc3339();
    let (source, payload, labels) = match route {
        Route::Alertmanager => ("prometheus", naming.alert(s, now), naming.alert_labels(s)),
        Route::Event => ("kubernetes-events", naming.event_body(s, 0, now), json!({})),
    };
    json!({
        "apiVersion": "kubernaut.ai/v1alpha1",
        "kind": "RemediationRequest",
        "metadata": { "name": name },
        "spec": {
            "signalFingerprint": fp,
            "signalName": Naming::signal_name(route, s),
            "severity": if route == Route::Event { "Warning" } else { Naming::severity(s) },
            "signalType": "alert",
            "signalSource": source,
            "targetType": "kubernetes",
            "targetResource": {
                "kind": naming.kind.kind(),
                "name": naming.resource_name(s.fp),
                "namespace": naming.namespace,
            },
            "firingTime": at,
            "receivedTime": at,
            "signalLabels": labels,
            "originalPayload": payload.to_string(),
        }
    })
}

/// Warms the apiserver's RR write path: creates, status-patches and deletes one throwaway RR.
/// On a fresh control plane the first writes of a CRD take seconds (schema and validation
/// rules are compiled on first use), longer than the gateway's per-call deadline; a benchmark
/// should not start on that.
pub async fn prime(
    client: &kube::Client,
    namespace: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &rr_resource());
    let naming = Naming {
        run_id: "prime".into(),
        namespace: namespace.into(),
        kind: crate::scenario::TargetKind::Pod,
        steady_pool: 1,
    };
    let fp = naming.fingerprint(0);
    let name = rr_name(&fp);
    let s = PlannedSignal {
        fp: 0,
        variant: 0,
        first: true,
    };
    let obj: DynamicObject =
        serde_json::from_value(rr_body(&naming, &name, &fp, Route::Alertmanager, &s))?;
    let work = async {
        let created = match api.create(&PostParams::default(), &obj).await {
            Ok(o) => o,
            // Left over from an interrupted run: reuse it.
            Err(kube::Error::Api(e)) if e.code == 409 => api.get(&name).await?,
            Err(e) => return Err(e),
        };
        let known = KnownRr {
            name: name.clone(),
            resource_version: created.metadata.resource_version.unwrap_or_default(),
            count: 0,
            first_seen: now_rfc3339(),
        };
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&status_patch(&known, 1)),
        )
        .await?;
        api.delete(&name, &Default::default()).await?;
        Ok(())
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| anyhow::anyhow!("priming RR writes took longer than {timeout:?}"))?
        .map_err(|e| anyhow::anyhow!("priming RR writes: {e}"))
}

/// The merge-patch setting the count to `count`, guarded by the known resourceVersion.
fn status_patch(known: &KnownRr, count: u64) -> Value {
    json!({
        "metadata": { "resourceVersion": known.resource_version },
        "status": { "deduplication": {
            "occurrenceCount": count,
            "firstSeenAt": known.first_seen,
            "lastSeenAt": now_rfc3339(),
        }}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patches() {
        let fp = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(rr_name(fp), "rr-0123456789ab-cdef0123");
        let known = KnownRr {
            name: "rr".into(),
            resource_version: "42".into(),
            count: 3,
            first_seen: "2026-01-01T00:00:00Z".into(),
        };
        let p = status_patch(&known, 4);
        assert_eq!(p["metadata"]["resourceVersion"], "42");
        assert_eq!(p["status"]["deduplication"]["occurrenceCount"], 4);
        assert_eq!(
            p["status"]["deduplication"]["firstSeenAt"],
            "2026-01-01T00:00:00Z"
        );
    }
}
