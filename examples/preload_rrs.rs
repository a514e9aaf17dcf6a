//! Creates N RemediationRequests directly (as the gateway would name them), for measuring a
//! gateway that indexes that many. Usage:
//! `cargo run --release --example preload_rrs -- KUBECONFIG NAMESPACE N [CONCURRENCY]`.

use std::time::Instant;

use futures::StreamExt;
use gateway::fingerprint::Fingerprint;
use gateway::k8s::RemediationRequest;
use gateway::k8s::types::{
    RemediationRequestSpec, ResourceRef, SignalSource, SignalType, TargetType,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, kubeconfig, namespace, n, ..] = args.as_slice() else {
        anyhow::bail!("usage: preload_rrs KUBECONFIG NAMESPACE N [CONCURRENCY]");
    };
    let n: usize = n.parse()?;
    let concurrency: usize = args.get(4).map_or(Ok(32), |c| c.parse())?;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let api: kube::Api<RemediationRequest> =
        kube::Api::namespaced(kube::Client::try_from(config)?, namespace);
    let now = Time(jiff::Timestamp::now());
    let started = Instant::now();
    let failures = futures::stream::iter(0..n)
        .map(|i| {
            let (api, now) = (api.clone(), now.clone());
            async move {
                let fingerprint = Fingerprint::of(None, "shop", "Pod", &format!("preload-{i}"));
                let spec = RemediationRequestSpec {
                    signal_fingerprint: fingerprint.to_string(),
                    signal_name: "HighErrorRate".into(),
                    severity: "critical".into(),
                    signal_type: SignalType::Alert,
                    signal_source: SignalSource::Prometheus,
                    target_type: TargetType::Kubernetes,
                    target_resource: ResourceRef {
                        kind: "Pod".into(),
                        name: format!("preload-{i}"),
                        namespace: Some("shop".into()),
                        api_version: None,
                    },
                    cluster_id: None,
                    firing_time: now.clone(),
                    received_time: now,
                    signal_labels: None,
                    signal_annotations: None,
                    original_payload: None,
                };
                let name = gateway::dedup::index::rr_name(&fingerprint, 0);
                api.create(
                    &PostParams::default(),
                    &RemediationRequest::new(&name, spec),
                )
                .await
                .is_err()
            }
        })
        .buffer_unordered(concurrency)
        .filter(|failed| futures::future::ready(*failed))
        .count()
        .await;
    println!(
        "created {} of {n} RRs in {:.1} s ({failures} failed)",
        n - failures,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
