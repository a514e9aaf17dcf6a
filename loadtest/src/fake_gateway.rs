//! Tests only: an in-process stand-in for the gateway's signal routes, with exact counts kept
//! in memory, so the whole pipeline — schedule, client, classification, accounting, report,
//! count check — runs end to end without a cluster.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::check::RrState;
use crate::scenario::fingerprint;

/// The fake's state.
#[derive(Default)]
pub struct Fake {
    counts: Mutex<HashMap<String, u64>>,
    requests: AtomicU64,
    /// Answer 503 to every n-th request (0: never).
    fail_every: u64,
}

impl Fake {
    /// A fake that answers 503 to every `n`-th request.
    pub fn failing_every(n: u64) -> Self {
        Fake {
            fail_every: n,
            ..Fake::default()
        }
    }

    /// The RRs the fake holds, as the count check reads them.
    pub fn rrs(&self) -> Vec<RrState> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts
            .iter()
            .map(|(fp, n)| RrState {
                name: format!("rr-{}", &fp[..12]),
                fingerprint: fp.clone(),
                count: Some(*n),
                storm: false,
                storm_behind: false,
            })
            .collect()
    }

    fn count(&self, fp: &str) -> u64 {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(fp.to_owned()).or_insert(0);
        *n += 1;
        *n
    }

    fn answer(&self, path: &str, body: &[u8]) -> (u16, Value) {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if self.fail_every > 0 && n.is_multiple_of(self.fail_every) {
            return (
                503,
                json!({"title": "Service Unavailable", "detail": "injected", "status": 503}),
            );
        }
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return (400, json!({"title": "Bad Request", "status": 400}));
        };
        let targets: Vec<(String, String, String)> = if path.ends_with("kubernetes-event") {
            let o = &v["involvedObject"];
            vec![(
                o["namespace"].as_str().unwrap_or("").into(),
                o["kind"].as_str().unwrap_or("").into(),
                o["name"].as_str().unwrap_or("").into(),
            )]
        } else {
            v["alerts"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|al| {
                            let l = &al["labels"];
                            let (kind, name) = match (l["pod"].as_str(), l["deployment"].as_str()) {
                                (Some(p), _) => ("Pod", p),
                                (None, Some(d)) => ("Deployment", d),
                                _ => ("", ""),
                            };
                            (
                                l["namespace"].as_str().unwrap_or("default").into(),
                                kind.into(),
                                name.into(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let results: Vec<Value> = targets
            .iter()
            .map(|(ns, kind, name)| {
                let fp = fingerprint(ns, kind, name);
                let count = self.count(&fp);
                json!({
                    "status": if count == 1 { "created" } else { "duplicate" },
                    "fingerprint": fp,
                    "remediationRequestName": format!("rr-{}", &fp[..12]),
                    "count": count,
                })
            })
            .collect();
        match results.as_slice() {
            [] => (400, json!({"title": "Bad Request", "detail": "no alerts"})),
            [r] if r["count"] == 1 => (
                201,
                json!({"status": "created", "fingerprint": r["fingerprint"], "duplicate": false, "remediationRequestName": r["remediationRequestName"]}),
            ),
            [r] => (
                202,
                json!({"status": "duplicate", "fingerprint": r["fingerprint"], "duplicate": true, "remediationRequestName": r["remediationRequestName"], "metadata": {"count": r["count"]}}),
            ),
            many => (
                207,
                json!({"results": many, "summary": {"total": many.len()}}),
            ),
        }
    }
}

/// Serves the fake on a loopback port until the test's runtime ends; returns its base URL.
pub async fn serve(fake: Arc<Fake>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let fake = fake.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let fake = fake.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        // A little service time, so requests overlap.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        let (status, v) = fake.answer(&path, &body);
                        let resp = Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(v.to_string())));
                        Ok::<_, Infallible>(
                            resp.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}
