//! Shared test support: gateway processes against the real control plane, a small HTTP
//! client, payload builders and metric scraping.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod certs;
pub mod fake;
#[path = "../../examples/support/pod_rr.rs"]
pub mod pod_rr;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A `gateway` process. Killed on drop.
pub struct Gateway {
    child: Child,
    /// `http://127.0.0.1:<port>` of the signal API.
    pub api: String,
    /// Health listener base URL.
    pub health: String,
    /// Metrics listener base URL.
    pub metrics: String,
    /// `127.0.0.1:<port>` of the peer listener, the address it advertises in its Lease
    /// (`None` with `--cluster-enabled false`).
    pub peer: Option<String>,
    /// Its log lines after "gateway listening" (at most [`LOG_LINES_KEPT`]).
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Log lines a [`Gateway`] keeps for [`Gateway::logs_with`].
pub const LOG_LINES_KEPT: usize = 10_000;

impl Gateway {
    /// Starts the binary on loopback ports chosen by the OS, against `kubeconfig`, with RRs in
    /// `namespace`; returns once it has bound its listeners (not necessarily ready).
    pub fn start(kubeconfig: &std::path::Path, namespace: &str, extra: &[&str]) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0", "--namespace", namespace])
            .args(["--peer-listen", "127.0.0.1:0"])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--log-format", "json", "--log-level", "info"])
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start gateway");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let listening = loop {
            let line = lines
                .next()
                .expect("gateway exited before listening")
                .unwrap();
            if line.contains("gateway listening") {
                break serde_json::from_str::<serde_json::Value>(&line).unwrap();
            }
        };
        // Keep draining stderr so the gateway never blocks on a full pipe.
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = logs.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if std::env::var_os("GATEWAY_TEST_LOGS").is_some() {
                    eprintln!("{line}");
                }
                let mut kept = kept.lock().unwrap();
                if kept.len() < LOG_LINES_KEPT {
                    kept.push(line);
                }
            }
        });
        let url = |key: &str| format!("http://{}", listening[key].as_str().unwrap());
        Gateway {
            api: url("api"),
            health: url("health"),
            metrics: url("metrics"),
            peer: listening["peer"].as_str().map(str::to_owned),
            child,
            logs,
        }
    }

    /// Its log lines so far that contain `text`.
    pub fn logs_with(&self, text: &str) -> Vec<String> {
        let logs = self.logs.lock().unwrap();
        logs.iter().filter(|l| l.contains(text)).cloned().collect()
    }

    /// Waits until `/readyz` answers 200.
    pub async fn ready(&self, http: &Http) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http.get(&format!("{}/readyz", self.health)).await {
                return;
            }
            assert!(Instant::now() < deadline, "gateway not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit (after a signal sent with [`Self::pid`]).
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap()
    }

    /// The value of one metric series (summed over series matching `labels`), 0 if absent.
    pub async fn metric(&self, http: &Http, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (_, text) = http
            .get(&format!("{}/metrics", self.metrics))
            .await
            .unwrap();
        metric_value(&text, name, labels)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sums the samples of `name` whose labels include all of `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

/// A keep-alive HTTP/1 client; with a token ([`Http::authorized`]) every POST carries it as
/// `Authorization: Bearer`.
#[derive(Clone)]
pub struct Http(
    Client<HttpConnector, Full<Bytes>>,
    Option<std::sync::Arc<str>>,
);

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    /// A client with a connection pool.
    pub fn new() -> Self {
        Http(Client::builder(TokioExecutor::new()).build_http(), None)
    }

    /// A client whose POSTs carry `token`.
    pub fn authorized(token: &str) -> Self {
        Http(
            Client::builder(TokioExecutor::new()).build_http(),
            Some(token.into()),
        )
    }

    fn post_request(&self, url: &str, body: &serde_json::Value) -> http::Request<Full<Bytes>> {
        let mut request = http::Request::post(url).header("content-type", "application/json");
        if let Some(token) = &self.1 {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    }

    /// GET; returns status and body text.
    pub async fn get(&self, url: &str) -> Result<(u16, String), String> {
        let response = self
            .0
            .get(url.parse().unwrap())
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// POST JSON within `timeout`; returns status, `Retry-After` and parsed body, or why no
    /// answer came (a refused or dropped connection, the timeout).
    pub async fn try_post(
        &self,
        url: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<(u16, Option<String>, serde_json::Value), String> {
        let request = self.post_request(url, body);
        let exchange = async {
            let response = self
                .0
                .request(request)
                .await
                .map_err(|e| format!("{e:?}"))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{e:?}"))?
                .to_bytes();
            Ok((
                status,
                retry_after,
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            ))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
    }

    /// POST JSON; returns status and parsed body.
    pub async fn post(&self, url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let request = self.post_request(url, body);
        let response = self.0.request(request).await.expect("POST");
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }
}

/// A time at least now and later than every one returned before in this process: bodies built
/// one after another are distinct deliveries even when the system clock has not moved.
pub fn unique_now() -> jiff::Timestamp {
    static LAST: std::sync::Mutex<Option<jiff::Timestamp>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap();
    let now = jiff::Timestamp::now();
    let now = match *last {
        Some(previous) if now <= previous => previous + jiff::SignedDuration::from_micros(1),
        _ => now,
    };
    *last = Some(now);
    now
}

/// A fresh Alertmanager webhook with one firing alert about `pod` in `namespace`. Its
/// `startsAt` is [`unique_now`], so every body built is a delivery of its own: posting two
/// counts two, posting one body twice within the redelivery window counts it once.
pub fn alert(alertname: &str, namespace: &str, pod: &str) -> serde_json::Value {
    let now = unique_now().to_string();
    serde_json::json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"x\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "gateway",
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.local",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": alertname, "severity": "critical", "namespace": namespace, "pod": pod},
            "annotations": {"summary": "test"},
            "startsAt": now,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.local/graph",
            "fingerprint": "0123456789abcdef"
        }]
    })
}

/// The fingerprint the gateway computes for a Pod.
pub fn pod_fingerprint(namespace: &str, pod: &str) -> String {
    gateway::fingerprint::Fingerprint::of(None, namespace, "Pod", pod).to_string()
}

/// RRs of one fingerprint in `namespace`, through the apiserver's field selector.
pub async fn rrs_of(
    client: &kube::Client,
    namespace: &str,
    fingerprint: &str,
) -> Vec<gateway::k8s::RemediationRequest> {
    let api: kube::Api<gateway::k8s::RemediationRequest> =
        kube::Api::namespaced(client.clone(), namespace);
    let params =
        kube::api::ListParams::default().fields(&format!("spec.signalFingerprint={fingerprint}"));
    api.list(&params).await.unwrap().items
}

/// `status.deduplication.occurrenceCount` (1 when not yet initialised).
pub fn count_of(rr: &gateway::k8s::RemediationRequest) -> i64 {
    rr.status
        .as_ref()
        .and_then(|s| s.deduplication.as_ref())
        .map_or(1, |d| d.occurrence_count)
}

/// Polls `check` every 50 ms until it returns Some, failing after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The apiserver builds a CRD's serving stack (schema, CEL programs, watch cache) on first
/// use, which can take seconds on a loaded 2-core machine; a server-side dry-run create does
/// that before a test starts timing its gateways' calls.
pub async fn warm_up(client: &kube::Client, namespace: &str) {
    let api: kube::Api<gateway::k8s::RemediationRequest> =
        kube::Api::namespaced(client.clone(), namespace);
    let rr = gateway::k8s::RemediationRequest::new("warm-up", test_spec("warm-up", namespace));
    let params = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    eventually(Duration::from_secs(60), "RR dry-run create", || {
        let (api, rr, params) = (&api, &rr, &params);
        async move { api.create(params, rr).await.ok().map(drop) }
    })
    .await;
    eventually(Duration::from_secs(60), "RR list", || async {
        api.list(&kube::api::ListParams::default().limit(1))
            .await
            .ok()
            .map(drop)
    })
    .await;
}

/// A valid RR spec about Pod `pod` in `namespace`, as the gateway builds it.
pub fn test_spec(pod: &str, namespace: &str) -> gateway::k8s::RemediationRequestSpec {
    let signal = pod_rr::pod_signal(namespace, pod);
    gateway::dedup::rr::build(&signal, namespace, 0, jiff::Timestamp::now()).spec
}

/// Name of the ServiceAccount that [`sender_token`] mints tokens for.
pub const SENDER: &str = "signal-sender";

/// A token that may send signals to gateways whose RRs live in `namespace` (the
/// ServiceAccount [`SENDER`] there, bound to the shipped `gateway-signal-source`).
pub async fn sender_token(plane: &gateway_envtest::ControlPlane, namespace: &str) -> String {
    plane.signal_sender_token(namespace, SENDER).await.unwrap()
}

/// Writes to `path` a kubeconfig like the plane's admin one (same server and CA) whose only
/// user authenticates with `token`, in `namespace`: for a gateway process running as a
/// ServiceAccount.
pub fn kubeconfig_for_token(
    plane: &gateway_envtest::ControlPlane,
    token: &str,
    namespace: &str,
    path: &std::path::Path,
) {
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(plane.kubeconfig_path()).unwrap()).unwrap();
    let cluster = config["clusters"][0]["name"].as_str().unwrap().to_owned();
    config["users"] = serde_json::from_value(serde_json::json!([
        {"name": "token-user", "user": {"token": token}}
    ]))
    .unwrap();
    config["contexts"] = serde_json::from_value(serde_json::json!([
        {"name": "token-user", "context": {"cluster": cluster, "user": "token-user", "namespace": namespace}}
    ]))
    .unwrap();
    config["current-context"] = "token-user".into();
    std::fs::write(path, serde_yaml::to_string(&config).unwrap()).unwrap();
}

/// A namespaced RBAC rule: `verbs` on `resource` of API group `group`.
pub fn rule(group: &str, resource: &str, verbs: &[&str]) -> k8s_openapi::api::rbac::v1::PolicyRule {
    k8s_openapi::api::rbac::v1::PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(vec![resource.into()]),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..Default::default()
    }
}

/// A gateway identity with only `rules`: a Role and RoleBinding named `account` in
/// `namespace` for the ServiceAccount `account`, and a kubeconfig at `path` that authenticates
/// with a real TokenRequest token of it.
pub async fn restricted_identity(
    plane: &gateway_envtest::ControlPlane,
    client: &kube::Client,
    namespace: &str,
    account: &str,
    rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule>,
    path: &std::path::Path,
) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding, RoleRef, Subject};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::api::{Api, PostParams};
    let metadata = ObjectMeta {
        name: Some(account.into()),
        ..ObjectMeta::default()
    };
    let role = Role {
        metadata: metadata.clone(),
        rules: Some(rules),
    };
    Api::<Role>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding = RoleBinding {
        metadata,
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: account.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: account.into(),
            namespace: Some(namespace.into()),
            ..Subject::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let token = plane
        .service_account_token(namespace, account, Duration::from_secs(3600))
        .await
        .unwrap();
    kubeconfig_for_token(plane, &token, namespace, path);
}

/// A control plane of the test binary's own, with the RR CRD: for tests that stop or pause its
/// processes, which would disturb tests sharing [`gateway_envtest::shared`].
pub async fn own_plane() -> gateway_envtest::ControlPlane {
    gateway_envtest::ControlPlane::start(gateway_envtest::Options {
        crds: gateway_envtest::default_crds(),
        ..gateway_envtest::Options::default()
    })
    .await
    .unwrap()
}

/// The opening every cluster test shares: a fresh namespace on `plane`, the RR write path
/// warmed up, and one ready gateway process per entry of `gateway_args` (its extra flags).
pub struct Stack {
    /// The namespace holding the RRs.
    pub ns: String,
    /// An admin client.
    pub client: kube::Client,
    /// The plane's admin kubeconfig.
    pub kubeconfig: std::path::PathBuf,
    /// One HTTP client for the test.
    pub http: Http,
    /// The gateways, ready.
    pub gateways: Vec<Gateway>,
}

impl Stack {
    /// Opens the stack on `plane`, namespace named after `prefix`.
    pub async fn open(
        plane: &gateway_envtest::ControlPlane,
        prefix: &str,
        gateway_args: &[&[&str]],
    ) -> Stack {
        let ns = plane.create_namespace(prefix).await.unwrap();
        let client = plane.client().unwrap();
        plane.warm_up_rr_writes(&ns).await.unwrap();
        let kubeconfig = plane.kubeconfig_path().to_path_buf();
        let http = Http::authorized(&sender_token(plane, &ns).await);
        let gateways: Vec<Gateway> = gateway_args
            .iter()
            .map(|args| Gateway::start(&kubeconfig, &ns, args))
            .collect();
        for gateway in &gateways {
            gateway.ready(&http).await;
        }
        Stack {
            ns,
            client,
            kubeconfig,
            http,
            gateways,
        }
    }

    /// On the test binary's shared control plane.
    pub async fn shared(prefix: &str, gateway_args: &[&[&str]]) -> Stack {
        let plane = gateway_envtest::shared().await.unwrap();
        Self::open(plane, prefix, gateway_args).await
    }

    /// The signal API URL of gateway `i` for Alertmanager payloads.
    pub fn prometheus_url(&self, i: usize) -> String {
        format!("{}/api/v1/signals/prometheus", self.gateways[i].api)
    }
}
