//! The gateway's signal API as this tool uses it: a keep-alive HTTP client (hyper-util's
//! pooled client), requests round-robin over the replicas, and the answers read back per
//! signal by the HTTP contract (DESIGN.md §2).
//!
//! Targets must be loopback addresses: this tool generates load, and it only ever aims it at
//! processes on the same machine. Reading an answer is pure ([`classify_response`]), so the
//! whole mapping from the contract is tested without a server (`tests/answers.rs`).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;

use crate::payload::Naming;
use crate::results::{Completion, Outcome, SignalResult, SignalStatus};
use crate::scenario::{PlannedSignal, Redelivery, RequestPlan};

/// Checks that `url` is `http://` to a loopback host and returns it without a trailing slash.
pub fn loopback_base(url: &str) -> anyhow::Result<String> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("target {url:?} is not a URL"))?;
    ensure!(
        uri.scheme_str() == Some("http"),
        "target {url:?}: only http:// is supported"
    );
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    ensure!(
        loopback,
        "target {url:?} is not a loopback address: this tool only loads local processes"
    );
    let base_only = uri.path_and_query().is_none_or(|p| p.as_str() == "/");
    ensure!(
        base_only,
        "target {url:?}: give the base URL only (scheme, host and port)"
    );
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

/// A status and a whole body, or why not.
pub type Answered = anyhow::Result<(u16, Bytes)>;

/// Sends `req` and reads the whole answer, within `timeout`; errors name their root cause.
async fn exchange(client: &HttpClient, req: Request<Full<Bytes>>, timeout: Duration) -> Answered {
    let answer = async {
        let resp = client.request(req).await.context("send")?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.context("read body")?;
        anyhow::Ok((status, body.to_bytes()))
    };
    let late = |_| anyhow!("timeout after {timeout:?}");
    tokio::time::timeout(timeout, answer).await.map_err(late)?
}

/// GETs `url` and returns status and body, within `timeout`.
pub async fn get(client: &HttpClient, url: &str, timeout: Duration) -> Answered {
    let req = Request::get(url).body(Full::default())?;
    exchange(client, req, timeout)
        .await
        .with_context(|| format!("GET {url}"))
}

/// Sends signals to the gateway.
#[derive(Debug)]
pub struct GatewaySink {
    client: HttpClient,
    /// Base URLs, already validated; requests go round-robin.
    targets: Vec<String>,
    next: AtomicUsize,
    naming: Arc<Naming>,
    /// Deadline of a whole request, body included.
    timeout: Duration,
    /// `Authorization` header value, when the gateways authenticate senders.
    authorization: Option<hyper::header::HeaderValue>,
}

impl GatewaySink {
    /// A sink over `targets`, with whole-request deadline `t`.
    pub fn new(client: HttpClient, targets: Vec<String>, naming: Arc<Naming>, t: Duration) -> Self {
        let next = AtomicUsize::new(0);
        GatewaySink {
            client,
            targets,
            next,
            naming,
            timeout: t,
            authorization: None,
        }
    }

    /// Every request carries `authorization` (e.g. `Bearer <token>`).
    pub fn with_authorization(mut self, authorization: hyper::header::HeaderValue) -> Self {
        self.authorization = Some(authorization);
        self
    }

    /// Sends one request; `seq` (unique in the phase) makes its signals deliveries of their
    /// own. A plan with a [`Redelivery`] sends the same body a second time, to the next
    /// replica (as a second Alertmanager of an HA pair reaches another pod behind the
    /// Service; the owner's redelivery window recognises it wherever it lands), and both
    /// answers come back.
    pub async fn send(&self, plan: &RequestPlan, seq: u64) -> Completion {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let target = &self.targets[turn % self.targets.len()];
        let again_target = &self.targets[(turn + 1) % self.targets.len()];
        let expected: Vec<String> = plan
            .signals
            .iter()
            .map(|s| self.naming.fingerprint(s.fp))
            .collect();
        let body = Bytes::from(self.naming.body(plan, seq, Timestamp::now()));
        let url = format!("{target}{}", plan.route.path());
        let again_url = format!("{again_target}{}", plan.route.path());
        let send_to = |url: &str| {
            let url = url.to_owned();
            let body = body.clone();
            let expected = &expected;
            async move {
                let answer = self.post(&url, body).await;
                self.classify(answer, plan, expected)
            }
        };
        let send = || send_to(&url);
        let resend = || send_to(&again_url);
        match plan.redelivery {
            None => send().await,
            Some(Redelivery::Concurrent) => {
                let (first, again) = tokio::join!(send(), resend());
                let redelivery = Some(Box::new(again));
                Completion {
                    redelivery,
                    ..first
                }
            }
            Some(Redelivery::AfterAnswer) => {
                let first = send().await;
                let redelivery = Some(Box::new(resend().await));
                Completion {
                    redelivery,
                    ..first
                }
            }
        }
    }

    async fn post(&self, url: &str, body: Bytes) -> Answered {
        let mut req = Request::post(url).header(CONTENT_TYPE, "application/json");
        if let Some(authorization) = &self.authorization {
            req = req.header(hyper::header::AUTHORIZATION, authorization.clone());
        }
        match req.body(Full::from(body)) {
            Ok(req) => exchange(&self.client, req, self.timeout).await,
            Err(e) => Err(e.into()),
        }
    }

    fn classify(&self, answer: Answered, plan: &RequestPlan, expected: &[String]) -> Completion {
        match answer {
            Ok((status, body)) => classify_response(status, &body, &plan.signals, expected),
            Err(e) => {
                let detail = format!("{e:#}");
                Completion::failed(
                    Outcome::Transport,
                    &plan.signals,
                    SignalStatus::Failed,
                    detail,
                )
            }
        }
    }
}

/// The fields of the contract's bodies this tool reads: a 201 / 202 body, one item of a 207's
/// `results`, a 207 itself, or an RFC 7807 problem.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Answer {
    /// `created` / `duplicate` / `rejected` / `failed` (a problem's is its status code).
    status: Value,
    fingerprint: Option<String>,
    remediation_request_name: Option<String>,
    /// A 207 item's count.
    count: Option<u64>,
    /// A 202's `metadata.count`.
    metadata: Option<Box<Answer>>,
    results: Option<Vec<Answer>>,
    title: Option<String>,
    detail: Option<String>,
}

/// Classifies a gateway response to a request carrying `signals`, whose fingerprints (as
/// computed by the gateway's rule) are `fps`.
pub fn classify_response(
    status: u16,
    body: &[u8],
    signals: &[PlannedSignal],
    fps: &[String],
) -> Completion {
    let answer: Option<Answer> = serde_json::from_slice(body).ok();
    let failed = |outcome, status, detail| Completion::failed(outcome, signals, status, detail);
    let fingerprint_is = |i: usize, fp: Option<&str>| fps.get(i).map(String::as_str) == fp;
    let result = |s: &PlannedSignal, status, count, rr: Option<&String>, fingerprint_ok| {
        let result = SignalResult::new(s.fp, status, count, rr.cloned());
        SignalResult {
            fingerprint_ok,
            ..result
        }
    };
    match (status, answer) {
        (201 | 202, Some(a)) => {
            let (outcome, accepted, count) = if status == 201 {
                (Outcome::Created, SignalStatus::Created, Some(1))
            } else {
                let count = a.metadata.as_ref().and_then(|m| m.count);
                (Outcome::Duplicate, SignalStatus::Duplicate, count)
            };
            let fp = a.fingerprint.as_deref();
            // A payload of several alerts answered with 201/202 had all but one rejected:
            // the answer is about the alert whose fingerprint it names.
            let target = match signals.len() {
                1 => Some(0),
                _ => fps.iter().position(|e| Some(e.as_str()) == fp),
            };
            let rr = a.remediation_request_name.as_ref();
            let results = signals.iter().enumerate().map(|(i, s)| {
                if Some(i) == target {
                    result(s, accepted, count, rr, fingerprint_is(i, fp))
                } else {
                    result(s, SignalStatus::Rejected, None, None, true)
                }
            });
            Completion {
                outcome,
                signals: results.collect(),
                detail: (status == 202 && count.is_none())
                    .then(|| "202 without metadata.count".to_owned()),
                writes: 0,
                redelivery: None,
            }
        }
        (201 | 202, None) => failed(
            Outcome::Unexpected,
            SignalStatus::Failed,
            format!("{status} with a body that is not JSON"),
        ),
        (207, a) => {
            let Some(items) = a
                .and_then(|a| a.results)
                .filter(|r| r.len() == signals.len())
            else {
                let n = signals.len();
                let detail = format!("207 whose results do not match the {n} alerts sent");
                return failed(Outcome::Unexpected, SignalStatus::Failed, detail);
            };
            let results = signals.iter().zip(&items).enumerate().map(|(i, (s, r))| {
                let (status, count) = match r.status.as_str() {
                    Some("created") => (SignalStatus::Created, Some(r.count.unwrap_or(1))),
                    Some("duplicate") => (SignalStatus::Duplicate, r.count),
                    Some("rejected") => (SignalStatus::Rejected, None),
                    _ => (SignalStatus::Failed, None),
                };
                let fp_ok = !status.accepted() || fingerprint_is(i, r.fingerprint.as_deref());
                result(s, status, count, r.remediation_request_name.as_ref(), fp_ok)
            });
            Completion {
                outcome: Outcome::MultiStatus,
                signals: results.collect(),
                detail: None,
                writes: 0,
                redelivery: None,
            }
        }
        (400..=599, a) => {
            let a = a.unwrap_or_default();
            let title = a.title.as_deref().or(a.detail.as_deref());
            let title = title.unwrap_or("no problem body");
            let detail = format!("{status} {title}: {}", a.detail.as_deref().unwrap_or(""));
            if status < 500 {
                failed(Outcome::ClientError, SignalStatus::Rejected, detail)
            } else {
                failed(Outcome::ServerError, SignalStatus::Failed, detail)
            }
        }
        _ => failed(
            Outcome::Unexpected,
            SignalStatus::Failed,
            format!("unexpected status {status}"),
        ),
    }
}
