//! Warming kube-apiserver's `RemediationRequest` write path. The first request for a CRD's
//! resources builds its serving stack (structural schema, CEL programs, watch cache), which
//! takes seconds on a loaded 2-core machine — longer than a gateway's 2 s call deadline. A
//! server-side dry-run create and a list do that work without leaving anything behind.
//!
//! The RR is plain JSON ([`DynamicObject`]), so this package does not depend on the gateway's
//! types; it only has to satisfy the CRD's schema (`deploy/crds/remediationrequests.yaml`).

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::time::Instant;

/// Name of the RemediationRequest CRD.
pub const RR_CRD: &str = "remediationrequests.kubernaut.ai";

/// Pause between attempts.
const RETRY: Duration = Duration::from_millis(100);

/// The RemediationRequest resource (`kubernaut.ai/v1alpha1`).
fn resource() -> ApiResource {
    ApiResource {
        group: "kubernaut.ai".to_owned(),
        version: "v1alpha1".to_owned(),
        api_version: "kubernaut.ai/v1alpha1".to_owned(),
        kind: "RemediationRequest".to_owned(),
        plural: "remediationrequests".to_owned(),
    }
}

/// A valid RR (every required spec field) named `name`.
fn remediation_request(name: &str, namespace: &str) -> Result<DynamicObject> {
    let now = "2026-01-01T00:00:00Z";
    Ok(serde_json::from_value(json!({
        "apiVersion": "kubernaut.ai/v1alpha1",
        "kind": "RemediationRequest",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "signalFingerprint": "0".repeat(64),
            "signalName": "EnvtestWarmUp",
            "severity": "info",
            "signalType": "alert",
            "signalSource": "prometheus",
            "targetType": "kubernetes",
            "targetResource": { "kind": "Pod", "name": "warm-up", "namespace": namespace },
            "firingTime": now,
            "receivedTime": now,
        },
    }))?)
}

/// Dry-run creates an RR in `namespace` until one succeeds, then lists RRs until that
/// succeeds, all before `deadline`.
pub(crate) async fn rr_writes(
    client: &kube::Client,
    namespace: &str,
    deadline: Instant,
) -> Result<()> {
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource());
    let rr = remediation_request("envtest-warm-up", namespace)?;
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    retry(deadline, "a dry-run RemediationRequest create", || async {
        api.create(&dry_run, &rr).await.map(drop)
    })
    .await?;
    retry(deadline, "a RemediationRequest list", || async {
        api.list(&ListParams::default().limit(1)).await.map(drop)
    })
    .await
}

/// Waits until the spec-immutability admission policy is enforced. The apiserver takes a
/// policy and its binding in through informers, a moment after they were created, and has no
/// way to ask when; so a probe RR is created in `default` and a dry-run spec change retried
/// until it is refused with 422. The probe is deleted afterwards.
pub(crate) async fn spec_immutability(client: &kube::Client, deadline: Instant) -> Result<()> {
    const PROBE: &str = "envtest-immutability-probe";
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), "default", &resource());
    let rr = remediation_request(PROBE, "default")?;
    retry(deadline, "creating the immutability probe RR", || async {
        match api.create(&PostParams::default(), &rr).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(error) => Err(error),
        }
    })
    .await?;
    let change = Patch::Merge(json!({"spec": {"severity": "critical"}}));
    let dry_run = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let enforced = loop {
        match api.patch(PROBE, &dry_run, &change).await {
            Err(kube::Error::Api(status)) if status.code == 422 => break Ok(()),
            outcome => {
                if Instant::now() + RETRY >= deadline {
                    break Err(anyhow!(
                        "the spec-immutability policy was not enforced in time: a spec change got {outcome:?}"
                    ));
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    let _ = api.delete(PROBE, &Default::default()).await;
    enforced
}

/// Calls `attempt` until it succeeds; fails with the last error at `deadline`.
async fn retry<F, Fut>(deadline: Instant, what: &str, mut attempt: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), kube::Error>>,
{
    loop {
        let error = match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => anyhow!(error),
            Err(_) => anyhow!("no answer"),
        };
        if Instant::now() + RETRY >= deadline {
            return Err(error).with_context(|| format!("{what} did not succeed in time"));
        }
        tracing::debug!(%error, what, "warm-up attempt failed; retrying");
        tokio::time::sleep(RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_rr_has_every_required_spec_field() {
        let crd: serde_yaml::Value = serde_yaml::from_str(
            &std::fs::read_to_string(
                crate::workspace_root().join("deploy/crds/remediationrequests.yaml"),
            )
            .unwrap(),
        )
        .unwrap();
        let required = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["required"];
        let rr = remediation_request("x", "ns").unwrap();
        let spec = rr.data["spec"].as_object().unwrap();
        for field in required.as_sequence().unwrap() {
            let field = field.as_str().unwrap();
            assert!(
                spec.contains_key(field),
                "the warm-up RR lacks spec.{field}"
            );
        }
    }
}
