//! Sends requests to gateway replicas over HTTP/1.1 keep-alive connections (hyper-util's
//! pooled client), round-robin over the targets, and classifies the answers.
//!
//! Targets must be loopback addresses: this tool generates load, and it only ever aims it at
//! processes on the same machine.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;

use crate::outcome::{Completion, Outcome, SignalStatus, classify_response};
use crate::scenario::{Naming, RequestPlan};

/// Checks that `url` is `http://` to a loopback host and returns it without a trailing slash.
pub fn loopback_base(url: &str) -> anyhow::Result<String> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("target {url:?} is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("target {url:?}: only http:// is supported");
    }
    let host = uri
        .host()
        .with_context(|| format!("target {url:?} has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("target {url:?} is not a loopback address: this tool only loads local processes");
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        bail!("target {url:?}: give the base URL only (scheme, host and port)");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// The HTTP client used for the gateway and its health and metrics endpoints.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A keep-alive client that keeps up to `max_idle` idle connections per host.
pub fn http_client(max_idle: usize) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(max_idle)
        .build(connector)
}

/// GETs `url` and returns status and body, within `timeout`.
pub async fn get(
    client: &HttpClient,
    url: &str,
    timeout: Duration,
) -> anyhow::Result<(u16, Bytes)> {
    let req = Request::get(url).body(Full::new(Bytes::new()))?;
    let fut = async {
        let resp = client.request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .with_context(|| format!("GET {url} timed out"))?
}

/// Sends signals to the gateway.
#[derive(Debug)]
pub struct GatewaySink {
    client: HttpClient,
    targets: Vec<String>,
    next: AtomicUsize,
    naming: Arc<Naming>,
    timeout: Duration,
}

impl GatewaySink {
    /// A sink over `targets` (base URLs, already validated), with a whole-request `timeout`.
    pub fn new(
        client: HttpClient,
        targets: Vec<String>,
        naming: Arc<Naming>,
        timeout: Duration,
    ) -> Self {
        Self {
            client,
            targets,
            next: AtomicUsize::new(0),
            naming,
            timeout,
        }
    }

    /// Sends one request; `seq` makes Event names unique.
    pub async fn send(&self, plan: &RequestPlan, seq: u64) -> Completion {
        let target = &self.targets[self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len()];
        let expected: Vec<String> = plan
            .signals
            .iter()
            .map(|s| self.naming.fingerprint(s.fp))
            .collect();
        let body = match serde_json::to_vec(&self.naming.body(plan, seq, Timestamp::now())) {
            Ok(b) => b,
            Err(e) => {
                return Completion::failed(
                    Outcome::Transport,
                    &plan.signals,
                    SignalStatus::Failed,
                    format!("encode: {e}"),
                );
            }
        };
        let req = Request::post(format!("{target}{}", plan.route.path()))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)));
        let req = match req {
            Ok(r) => r,
            Err(e) => {
                return Completion::failed(
                    Outcome::Transport,
                    &plan.signals,
                    SignalStatus::Failed,
                    format!("request: {e}"),
                );
            }
        };
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("send: {}", error_chain(&e)))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("read body: {}", error_chain(&e)))?;
            Ok::<_, String>((status, body.to_bytes()))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok((status, body))) => classify_response(status, &body, &plan.signals, &expected),
            Ok(Err(e)) => {
                Completion::failed(Outcome::Transport, &plan.signals, SignalStatus::Failed, e)
            }
            Err(_) => Completion::failed(
                Outcome::Transport,
                &plan.signals,
                SignalStatus::Failed,
                format!("timeout after {:?}", self.timeout),
            ),
        }
    }
}

/// `e: cause: cause`, so a transport error names its root (e.g. connection refused).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert_eq!(
            loopback_base("http://127.0.0.1:8080/").ok().as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert!(loopback_base("http://localhost:8080").is_ok());
        assert!(loopback_base("http://[::1]:8080").is_ok());
        assert!(loopback_base("http://127.1.2.3:80").is_ok());
        assert!(loopback_base("http://10.0.0.1:8080").is_err());
        assert!(loopback_base("http://example.com").is_err());
        assert!(loopback_base("https://127.0.0.1:8443").is_err());
        assert!(loopback_base("http://127.0.0.1:8080/api").is_err());
        assert!(loopback_base("not a url").is_err());
    }

    #[tokio::test]
    async fn refused_connection_is_a_transport_error() {
        // Bind then drop: the port is very likely closed for the instant of the test.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let naming = Arc::new(Naming {
            run_id: "t".into(),
            namespace: "ns".into(),
            kind: crate::scenario::TargetKind::Pod,
            steady_pool: 10,
        });
        let sink = GatewaySink::new(
            http_client(4),
            vec![format!("http://127.0.0.1:{port}")],
            naming,
            Duration::from_secs(2),
        );
        let plan = RequestPlan {
            route: crate::scenario::Route::Alertmanager,
            signals: vec![crate::scenario::PlannedSignal {
                fp: 0,
                variant: 0,
                first: true,
            }],
        };
        let c = sink.send(&plan, 0).await;
        assert_eq!(c.outcome, Outcome::Transport);
        assert!(c.detail.is_some_and(|d| d.contains("send")));
    }
}
