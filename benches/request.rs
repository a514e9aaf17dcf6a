//! The gateway's own cost per request, without network or Kubernetes: routing, limits, body
//! read, parse, fingerprint, a processor that answers at once, response serialisation and
//! telemetry — everything `api::routes::handle` does around the Kubernetes write — with no
//! authentication (`auth.mode: none`) and with a bearer token the decision cache already holds
//! (the steady state of `auth.mode: kubernetes`).

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use gateway::api::App;
use gateway::auth::cache::{Cached, Limits};
use gateway::auth::{Authenticator, Open, Reviewer, UserInfo};
use gateway::clock::SystemClock;
use gateway::config::ApiConfig;
use gateway::health::Health;
use gateway::ingest::Signal;
use gateway::processor::{Outcome, ProcessError, Processor};
use gateway::telemetry::Metrics;
use http_body_util::Full;

/// Answers every signal as the 42nd duplicate.
struct Duplicate;

impl Processor for Duplicate {
    async fn process(&self, signal: Signal) -> Result<Outcome, ProcessError> {
        Ok(Outcome::Duplicate {
            name: "rr-0123456789ab-cdef0123".into(),
            namespace: "remediation".into(),
            count: 42,
            first_seen: signal.firing_time,
            last_seen: signal.firing_time,
        })
    }
}

/// Allows every token; reached once, on the first request.
struct AllowAll;

impl Reviewer for AllowAll {
    fn review_token<'a>(
        &'a self,
        _token: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<UserInfo>, String>> {
        Box::pin(async {
            Ok(Some(UserInfo {
                username: "system:serviceaccount:monitoring:alertmanager".into(),
                ..UserInfo::default()
            }))
        })
    }

    fn review_access<'a>(
        &'a self,
        _user: &'a UserInfo,
    ) -> futures::future::BoxFuture<'a, Result<bool, String>> {
        Box::pin(async { Ok(true) })
    }
}

fn payload(alerts: usize) -> Bytes {
    let now = jiff::Timestamp::now().to_string();
    let alerts: Vec<_> = (0..alerts)
        .map(|i| {
            serde_json::json!({
                "status": "firing",
                "labels": {"alertname": "HighErrorRate", "severity": "critical", "namespace": "shop",
                           "pod": format!("api-{i}"), "instance": "10.0.0.1:8080", "job": "api"},
                "annotations": {"summary": "error rate above 5%", "runbook_url": "https://runbooks.local/api"},
                "startsAt": now, "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local/graph?g0.expr=x", "fingerprint": "0123456789abcdef"
            })
        })
        .collect();
    Bytes::from(
        serde_json::json!({
            "version": "4", "groupKey": "{}:{alertname=\"HighErrorRate\"}", "truncatedAlerts": 0,
            "status": "firing", "receiver": "gateway", "groupLabels": {"alertname": "HighErrorRate"},
            "commonLabels": {"alertname": "HighErrorRate"}, "commonAnnotations": {},
            "externalURL": "http://alertmanager.local", "alerts": alerts
        })
        .to_string(),
    )
}

fn request(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let app = |auth: Arc<dyn Authenticator>| {
        Arc::new(App::new(
            Arc::new(Duplicate),
            auth,
            ApiConfig::default(),
            Arc::new(Health::new()),
            Metrics::new(),
            Arc::new(SystemClock),
        ))
    };
    let limits = Limits {
        ttl: std::time::Duration::from_secs(3600),
        negative_ttl: std::time::Duration::from_secs(10),
        capacity: 100,
    };
    let cached = Arc::new(Cached::new(AllowAll, limits, Metrics::new()));
    let token = "eyJhbGciOiJFUzI1NiJ9.".to_owned() + &"x".repeat(900);
    let mut group = c.benchmark_group("request");
    for (auth, app) in [("open", app(Arc::new(Open))), ("cached_token", app(cached))] {
        for alerts in [1, 50] {
            if auth == "cached_token" && alerts == 50 {
                continue;
            }
            let body = payload(alerts);
            group.bench_function(format!("handle_prometheus_{alerts}_alerts_{auth}"), |b| {
                b.iter(|| {
                    let request = http::Request::post("/api/v1/signals/prometheus")
                        .header("content-type", "application/json")
                        .header("authorization", format!("Bearer {token}"))
                        .body(Full::new(body.clone()))
                        .unwrap_or_else(|e| panic!("{e}"));
                    black_box(runtime.block_on(gateway::api::routes::handle(app.clone(), request)))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, request);
criterion_main!(benches);
