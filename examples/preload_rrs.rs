//! Creates N RemediationRequests directly (as the gateway would name them), for measuring a
//! gateway that indexes that many. Usage:
//! `cargo run --release --example preload_rrs -- KUBECONFIG NAMESPACE N [CONCURRENCY]`.

use std::time::Instant;

use futures::StreamExt;
use gateway::k8s::RemediationRequest;
use kube::api::PostParams;

#[path = "support/pod_rr.rs"]
mod pod_rr;

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
    let started = Instant::now();
    let failures = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let (_, rr) = pod_rr::pod_rr(&format!("preload-{i}"), Vec::new(), None);
                api.create(&PostParams::default(), &rr).await.is_err()
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
