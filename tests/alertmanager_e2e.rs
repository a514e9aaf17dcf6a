//! A real Alertmanager (Debian's `prometheus-alertmanager`) as the gateway's client, with the
//! receiver of `deploy/alertmanager/alertmanager.yml` (only the url's host:port, the token
//! file and the CA file changed): over TLS, with a ServiceAccount token minted by the
//! TokenRequest API and bound to the shipped `gateway-signal-source`; and
//! a real Prometheus whose always-firing rule watches a real target (the gateway's own metrics
//! endpoint). Proven: the RR appears with the fingerprint SHA-256("<ns>:Pod:<pod>") and the
//! Pod as target; each repeat notification raises its count; while the apiserver is stopped
//! the gateway answers 503, Alertmanager records failed attempts and retries, and once the
//! apiserver is back the notifications land — at the end the RR's count equals the number of
//! webhook requests Alertmanager saw succeed: nothing lost, nothing counted twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod observe_support;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use gateway::k8s::RemediationRequest;
use observe_support::{Server, deploy_dir, run, start_prometheus};
use sha2::Digest as _;
use support::{Http, Stack, count_of, eventually, metric_value, rrs_of};

/// Where the shipped receiver points: the Service of `deploy/`.
const SHIPPED_URL_BASE: &str = "https://gateway.remediation.svc:8080";
const POD: &str = "payments-0";
const ALERT: &str = "PodCrashLooping";
/// The gateway's redelivery window here, shortened like Alertmanager's timings.
const REDELIVERY_WINDOW: &str = "1s";
/// Alertmanager's repeat_interval here. A repeat notification of an alert that keeps firing
/// is the same body as the last one (Prometheus moves `endsAt` on only once a minute), so it
/// counts only when it comes after the redelivery window, as it does in production (4h
/// against 10s).
const REPEAT_INTERVAL: &str = "2s";

fn amtool_check(path: &std::path::Path) {
    let mut amtool = Command::new(observe_support::amtool_bin());
    amtool.arg("check-config").arg(path);
    let (ok, out, err) = run(amtool, None, Duration::from_secs(60));
    assert!(ok, "amtool check-config {}: {out}{err}", path.display());
}

/// The shipped config with the receiver's url pointed at `api`, its token and CA files at
/// `token` and `ca`, and the timings shortened.
fn alertmanager_config(api: &str, token: &std::path::Path, ca: &std::path::Path) -> String {
    let shipped = deploy_dir().join("alertmanager/alertmanager.yml");
    amtool_check(&shipped);
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&shipped).unwrap()).unwrap();
    assert_eq!(config["route"]["receiver"], config["receivers"][0]["name"]);
    let receivers = config["receivers"].as_sequence_mut().unwrap();
    assert_eq!(receivers.len(), 1);
    let webhooks = receivers[0]["webhook_configs"].as_sequence_mut().unwrap();
    assert_eq!(webhooks.len(), 1);
    let url = webhooks[0]["url"].as_str().unwrap().to_owned();
    assert_eq!(
        url,
        format!("{SHIPPED_URL_BASE}/api/v1/signals/prometheus"),
        "the shipped receiver"
    );
    webhooks[0]["url"] = url.replace(SHIPPED_URL_BASE, api).into();
    let http_config = &mut webhooks[0]["http_config"];
    assert_eq!(http_config["authorization"]["type"], "Bearer");
    http_config["authorization"]["credentials_file"] = token.display().to_string().into();
    http_config["tls_config"]["ca_file"] = ca.display().to_string().into();
    // The test certificate names 127.0.0.1, not the Service.
    http_config["tls_config"]["server_name"] = "127.0.0.1".into();
    // Seconds instead of minutes and hours, so repeats come every other second.
    let parse = gateway::config::duration::parse;
    assert!(parse(REPEAT_INTERVAL).unwrap() > parse(REDELIVERY_WINDOW).unwrap());
    for (key, value) in [
        ("group_wait", "1s"),
        ("group_interval", "1s"),
        ("repeat_interval", REPEAT_INTERVAL),
    ] {
        config["route"][key] = value.into();
    }
    serde_yaml::to_string(&config).unwrap()
}

/// Webhook requests Alertmanager made: (all attempts, failed attempts).
async fn webhook_requests(http: &Http, alertmanager: &str) -> (f64, f64) {
    let (_, text) = http.get(&format!("{alertmanager}/metrics")).await.unwrap();
    let labels = [("integration", "webhook")];
    (
        metric_value(&text, "alertmanager_notification_requests_total", &labels),
        metric_value(
            &text,
            "alertmanager_notification_requests_failed_total",
            &labels,
        ),
    )
}

async fn the_rr(client: &kube::Client, ns: &str, fingerprint: &str) -> Option<RemediationRequest> {
    let mut rrs = rrs_of(client, ns, fingerprint).await;
    assert!(rrs.len() <= 1, "one RR per fingerprint: {rrs:?}");
    rrs.pop()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_deliveries_become_exact_counts_on_one_rr_across_an_outage() {
    let began = Instant::now();
    let log = |what: &str| eprintln!("[{:>6.1?}] {what}", began.elapsed());
    let dir = tempfile::tempdir().unwrap();
    // envtest shortens the apiserver's wait on open watches, so the outage below starts at once.
    let plane = support::own_plane().await;
    let ca = support::certs::Ca::new("gateway-ca");
    let serving = ca.server(dir.path(), "gateway-tls", "gateway");
    let ca_file = ca.write(&dir.path().join("ca.crt"));
    let tls = [
        "--tls-cert-file",
        serving.cert.to_str().unwrap(),
        "--tls-key-file",
        serving.key.to_str().unwrap(),
        "--redelivery-window",
        REDELIVERY_WINDOW,
    ];
    let Stack {
        ns,
        client,
        http,
        mut gateways,
        ..
    } = Stack::open(&plane, "alertmanager", &[&tls]).await;
    let gateway = gateways.remove(0);
    let token_file = dir.path().join("alertmanager-token");
    let token = plane
        .signal_sender_token(&ns, "alertmanager")
        .await
        .unwrap();
    std::fs::write(&token_file, token).unwrap();
    let api = gateway.api.replace("http://", "https://");

    let am_config = dir.path().join("alertmanager.yml");
    std::fs::write(&am_config, alertmanager_config(&api, &token_file, &ca_file)).unwrap();
    amtool_check(&am_config);
    let am_data = dir.path().join("alertmanager-data");
    let alertmanager = Server::start(
        &observe_support::alertmanager_bin(),
        dir.path(),
        "alertmanager",
        |port| {
            vec![
                format!("--config.file={}", am_config.display()),
                format!("--storage.path={}", am_data.display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                // No gossip cluster: it would listen on 0.0.0.0:9094.
                "--cluster.listen-address=".to_owned(),
                "--log.level=debug".to_owned(),
            ]
        },
    )
    .await;

    // The always-firing rule watches a real target: the gateway's metrics endpoint is up.
    let rules = dir.path().join("e2e-rules.yaml");
    std::fs::write(
        &rules,
        format!(
            "groups:\n  - name: e2e\n    rules:\n      - alert: {ALERT}\n        \
             expr: up{{job=\"gateway\"}} == 1\n        \
             labels: {{severity: critical, namespace: {ns}, pod: {POD}}}\n        \
             annotations: {{summary: always firing while the gateway is scraped}}\n"
        ),
    )
    .unwrap();
    let config = format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
         rule_files: [{rules}]\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [{am}]\n\
         scrape_configs:\n  - job_name: gateway\n    static_configs:\n      \
         - targets: [{target}]\n",
        rules = rules.display(),
        am = alertmanager.url.trim_start_matches("http://"),
        target = gateway.metrics.trim_start_matches("http://"),
    );
    let prometheus = start_prometheus(dir.path(), &config).await;
    log("control plane, gateway, Alertmanager, Prometheus up");

    // The RR: the right fingerprint (computed here, independently of the gateway's code) and
    // the Pod named by the alert's labels as its target.
    let fingerprint = hex::encode(sha2::Sha256::digest(format!("{ns}:Pod:{POD}")));
    let rr = eventually(
        Duration::from_secs(60),
        "the RR from Alertmanager",
        || async { the_rr(&client, &ns, &fingerprint).await },
    )
    .await;
    log("RR created from Alertmanager's first notification");
    let spec = &rr.spec;
    assert_eq!(spec.signal_fingerprint, fingerprint);
    assert_eq!(spec.signal_name, ALERT);
    assert_eq!(spec.severity, "critical");
    assert_eq!(spec.target_resource.kind, "Pod");
    assert_eq!(spec.target_resource.name, POD);
    assert_eq!(spec.target_resource.namespace.as_deref(), Some(ns.as_str()));
    assert_eq!(
        serde_json::to_value(spec.signal_source).unwrap(),
        "prometheus"
    );

    // Repeat notifications raise the count.
    eventually(Duration::from_secs(60), "count 3 from repeats", || async {
        let rr = the_rr(&client, &ns, &fingerprint).await?;
        (count_of(&rr) >= 3).then_some(())
    })
    .await;
    log("count raised by repeat notifications");

    // Outage: the gateway answers 503; Alertmanager's attempts fail and are retried.
    let (_, failed_before) = webhook_requests(&http, &alertmanager.url).await;
    let refused_before = gateway
        .metric(
            &http,
            "gateway_http_request_duration_seconds_count",
            &[
                ("endpoint", "/api/v1/signals/prometheus"),
                ("status", "503"),
            ],
        )
        .await;
    assert_eq!(refused_before, 0.0, "no 503 before the outage");
    plane.stop_apiserver().await.unwrap();
    log("apiserver stopped");
    eventually(Duration::from_secs(60), "retried failures", || async {
        let (_, failed) = webhook_requests(&http, &alertmanager.url).await;
        (failed >= failed_before + 3.0).then_some(())
    })
    .await;
    let refused = gateway
        .metric(
            &http,
            "gateway_http_request_duration_seconds_count",
            &[
                ("endpoint", "/api/v1/signals/prometheus"),
                ("status", "503"),
            ],
        )
        .await;
    assert!(refused >= 3.0, "the gateway answered 503 ({refused})");
    log(&format!(
        "Alertmanager got {refused} 503s from the gateway and kept retrying"
    ));
    plane.start_apiserver().await.unwrap();
    log("apiserver started");
    let count_at_restart = count_of(&the_rr(&client, &ns, &fingerprint).await.unwrap());
    eventually(
        Duration::from_secs(60),
        "notifications land again",
        || async {
            let rr = the_rr(&client, &ns, &fingerprint).await?;
            (count_of(&rr) >= count_at_restart + 3).then_some(())
        },
    )
    .await;
    log("count rising again after the outage");

    // Nothing lost, nothing doubled: the count equals Alertmanager's successful requests
    // (each carries this one alert). Read at a moment when no request completes in between.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (count, delivered) = loop {
        let (total, failed) = webhook_requests(&http, &alertmanager.url).await;
        let rr = the_rr(&client, &ns, &fingerprint).await.unwrap();
        let (total_after, failed_after) = webhook_requests(&http, &alertmanager.url).await;
        let delivered = total - failed;
        if (total, failed) == (total_after, failed_after) && count_of(&rr) as f64 == delivered {
            break (count_of(&rr), delivered);
        }
        assert!(
            Instant::now() < deadline,
            "RR count {} vs {delivered} webhook requests Alertmanager saw succeed",
            count_of(&rr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (_, failed) = webhook_requests(&http, &alertmanager.url).await;
    let refused = gateway
        .metric(
            &http,
            "gateway_http_request_duration_seconds_count",
            &[
                ("endpoint", "/api/v1/signals/prometheus"),
                ("status", "503"),
            ],
        )
        .await;
    assert_eq!(
        failed - failed_before,
        refused,
        "every failed attempt was a 503 from the gateway (not a refused connection)"
    );
    let redeliveries = gateway
        .metric(&http, "gateway_redeliveries_total", &[])
        .await;
    assert_eq!(
        redeliveries, 0.0,
        "every notification came after the window: none taken for a redelivery"
    );
    log(&format!(
        "count {count} == {delivered} deliveries; {} failed attempts retried",
        failed - failed_before
    ));
    drop(prometheus);
    drop(alertmanager);
}
