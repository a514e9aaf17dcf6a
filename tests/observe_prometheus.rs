//! The dashboard and the alert rules against a real Prometheus (Debian's `prometheus`,
//! started here on a loopback port) scraping two real gateway processes every second while
//! they take a short, varied load: creates, duplicates, Kubernetes Events, storms, a racing
//! create, redeliveries, 4xx, overload at an in-flight limit of 1, storm-queue overflow at a capacity of 1,
//! and an apiserver outage (503s, open circuit breaker, watch restarts). Then every query of
//! every dashboard panel and every rule expression goes to Prometheus's HTTP API and must
//! return data: a typo'd metric or label name returns nothing and fails the test. Prometheus
//! also evaluates `deploy/monitoring/rules.yaml` itself: every rule healthy, and the alerts
//! the scenario provokes (storm-queue overflow, readiness lost, 5xx ratio) become active.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod observe_support;
mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use observe_support::{deploy_dir, exported_metric_names, query, run, start_prometheus};
use serde_json::{Value, json};
use support::{Gateway, Http, Stack, alert, eventually};

/// Values for the dashboard's variables: its default job, all instances, and a rate window
/// that covers the whole scenario.
const VARIABLES: [(&str, &str); 3] = [
    ("$__rate_interval", "1m"),
    ("$job", "gateway"),
    ("$instance", ".*"),
];

fn dashboard() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(deploy_dir().join("monitoring/dashboard.json")).unwrap(),
    )
    .unwrap()
}

/// (panel title, expression) of every query of every panel.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|panel| panel["type"] != "row")
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap().to_owned();
            panel["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |target| (title.clone(), target["expr"].as_str().unwrap().to_owned()))
        })
        .collect()
}

fn substitute(expr: &str) -> String {
    let mut expr = expr.to_owned();
    for (variable, value) in VARIABLES {
        expr = expr.replace(variable, value);
    }
    assert!(!expr.contains('$'), "unknown variable in {expr}");
    expr
}

/// (alert name, expression) of every rule of `rules.yaml`.
fn rules() -> Vec<(String, String)> {
    let file: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(deploy_dir().join("monitoring/rules.yaml")).unwrap(),
    )
    .unwrap();
    file["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_sequence().unwrap().iter())
        .map(|rule| {
            (
                rule["alert"].as_str().unwrap().to_owned(),
                rule["expr"].as_str().unwrap().trim().to_owned(),
            )
        })
        .collect()
}

/// The signal side of an alert expression: every comparison with a number removed
/// (`x > 0.04` → `x`; `a == 1 or b == 0` → `a or b`). rules.yaml keeps its thresholds in such
/// comparisons only, so this is what the alert looks at, and it must have data.
fn signal_side(expr: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while !rest.is_empty() {
        let operator = ["==", "!=", ">=", "<=", ">", "<"]
            .iter()
            .find(|op| rest.starts_with(&format!(" {op} ")));
        if let Some(op) = operator {
            let after = &rest[op.len() + 2..];
            let number_len = after
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '-'))
                .unwrap_or(after.len());
            if number_len > 0 {
                rest = &after[number_len..];
                continue;
            }
        }
        let mut chars = rest.chars();
        out.push(chars.next().unwrap());
        rest = chars.as_str();
    }
    assert_ne!(out, expr, "no threshold comparison in {expr}");
    out
}

fn event(namespace: &str, pod: &str) -> Value {
    let now = jiff::Timestamp::now().to_string();
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{pod}.17f3a1b2c3d4e5f6"), "namespace": namespace},
        "involvedObject": {"kind": "Pod", "namespace": namespace, "name": pod, "apiVersion": "v1"},
        "reason": "BackOff",
        "message": "Back-off restarting failed container",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": "Warning"
    })
}

/// Sends bursts until one of `gateways` exports `metric` above zero (at most 50 bursts).
async fn drive_until(
    http: &Http,
    gateways: &[&Gateway],
    metric: &str,
    what: &str,
    mut burst: impl AsyncFnMut(u32),
) {
    for round in 0..50 {
        burst(round).await;
        for gateway in gateways {
            if gateway.metric(http, metric, &[]).await > 0.0 {
                return;
            }
        }
    }
    panic!("{what}: {metric} still zero after 50 bursts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_and_rule_returns_data_from_a_real_prometheus() {
    let began = Instant::now();
    let log = |what: &str| eprintln!("[{:>6.1?}] {what}", began.elapsed());
    let dir = tempfile::tempdir().unwrap();
    // envtest shortens the apiserver's wait on open watches, so the outage below starts at once.
    let plane = support::own_plane().await;

    // A: storms at 3 through the queue (the dashboard shows its panels). B: in-flight limit 1,
    // storm queue of one RR, slow flushes.
    let b_config = dir.path().join("b.yaml");
    std::fs::write(
        &b_config,
        "api: {max_in_flight: 1, max_alerts_per_request: 1, health_max_connections: 2}\nstorm: {threshold: 2, updates: async, queue_capacity: 1, flush_interval: 1s}\n",
    )
    .unwrap();
    let Stack {
        ns,
        http,
        mut gateways,
        ..
    } = Stack::open(
        &plane,
        "observe",
        &[
            &[
                "--storm-threshold",
                "3",
                "--storm-updates",
                "async",
                "--cluster-enabled",
                "false",
            ],
            &[
                "--config",
                b_config.to_str().unwrap(),
                "--cluster-enabled",
                "false",
            ],
            // C and D: a ring of two (A and B stay out of it, so what they provoke stays
            // theirs).
            &[],
            &[],
        ],
    )
    .await;
    let (a, b) = (gateways.remove(0), gateways.remove(0));
    let (c, d) = (gateways.remove(0), gateways.remove(0));
    let target = |g: &Gateway| g.metrics.trim_start_matches("http://").to_owned();
    let config = format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
         rule_files: [{rules}]\n\
         scrape_configs:\n  - job_name: gateway\n    static_configs:\n      \
         - targets: [{a}, {b}, {c}, {d}]\n",
        rules = deploy_dir().join("monitoring/rules.yaml").display(),
        a = target(&a),
        b = target(&b),
        c = target(&c),
        d = target(&d),
    );
    let prometheus = start_prometheus(dir.path(), &config).await;
    observe_support::wait_targets_up(&http, &prometheus.url, 4).await;
    log("control plane, 4 gateways and Prometheus up");

    let signal = |g: &Gateway| format!("{}/api/v1/signals/prometheus", g.api);
    let events = |g: &Gateway| format!("{}/api/v1/signals/kubernetes-event", g.api);
    // Traffic, not a correctness check (other tests do that): a 503 from a slow apiserver
    // is tolerated, anything else is a broken test.
    let accepted = |status: u16| matches!(status, 201 | 202 | 503);
    let load = async |rounds: u32, tag: &str| {
        for i in 0..rounds {
            let pod = format!("{tag}-{}", i % 15);
            let (status, body) = http
                .post(&signal(&a), &alert("HighLatency", &ns, &pod))
                .await;
            assert!(accepted(status), "{status} {body}");
            if i % 5 == 0 {
                let (status, body) = http.post(&events(&a), &event(&ns, &pod)).await;
                assert!(accepted(status), "{status} {body}");
                let (status, body) = http
                    .post(&signal(&b), &alert("HighLatency", &ns, &pod))
                    .await;
                assert!(accepted(status), "{status} {body}");
            }
            if i % 20 == 0 {
                let (status, _) = http.post(&signal(&a), &json!({"alerts": []})).await;
                assert_eq!(status, 400);
                let (status, _) = http.get(&format!("{}/nope", a.api)).await.unwrap();
                assert_eq!(status, 404);
            }
        }
    };
    load(150, "steady").await;

    // Storm states coalesce: sequential duplicates faster than the 200 ms flush.
    drive_until(
        &http,
        &[&a],
        "gateway_storm_coalesced_total",
        "coalescing",
        async |_| {
            for _ in 0..20 {
                http.post(&signal(&a), &alert("Storm", &ns, "storm-0"))
                    .await;
            }
        },
    )
    .await;
    // A create race between the replicas: one loses with already_exists.
    drive_until(
        &http,
        &[&a, &b],
        "gateway_crd_creation_errors_total",
        "create race",
        async |round| {
            let pod = format!("race-{round}");
            let bodies = [(); 3].map(|()| alert("Race", &ns, &pod));
            let (sa, sb) = (signal(&a), signal(&b));
            tokio::join!(
                http.post(&sa, &bodies[0]),
                http.post(&sa, &bodies[1]),
                http.post(&sb, &bodies[2])
            );
        },
    )
    .await;
    // Redeliveries: one body sent again (a second Alertmanager, a retry) is answered from A's
    // window with the ordinal of the first, not counted again.
    drive_until(
        &http,
        &[&a],
        "gateway_redeliveries_total",
        "redelivery",
        async |round| {
            let body = alert("Resent", &ns, &format!("resent-{round}"));
            let (created, first) = http.post(&signal(&a), &body).await;
            assert!(accepted(created), "{created} {first}");
            let (status, again) = http.post(&signal(&a), &body).await;
            assert!(accepted(status), "{status} {again}");
            if created == 201 {
                assert_eq!((status, &again["metadata"]["count"]), (202, &json!(1)));
            }
        },
    )
    .await;
    // Overload: concurrent requests at B's in-flight limit of 1.
    drive_until(
        &http,
        &[&b],
        "gateway_overload_rejections_total",
        "overload",
        async |round| {
            let url = signal(&b);
            let bodies: Vec<Value> = (0..8)
                .map(|i| alert("Burst", &ns, &format!("burst-{round}-{i}")))
                .collect();
            futures::future::join_all(bodies.iter().map(|body| http.post(&url, body))).await;
        },
    )
    .await;
    // Overflow: two RRs enter a storm at B within one flush interval; its queue holds one.
    drive_until(
        &http,
        &[&b],
        "gateway_storm_queue_overflow_total",
        "overflow",
        async |round| {
            for pod in ["flood-a", "flood-b"] {
                for _ in 0..3 {
                    let pod = format!("{pod}-{round}");
                    http.post(&signal(&b), &alert("Flood", &ns, &pod)).await;
                }
            }
        },
    )
    .await;
    // Limits: a batch over B's one alert per request (413), a signal over the 64 KiB of
    // labels and annotations (400), and a request without a token (401).
    drive_until(
        &http,
        &[&a, &b],
        "gateway_limit_rejections_total",
        "limits",
        async |round| {
            let mut two = alert("Limits", &ns, &format!("limit-{round}"));
            let second = two["alerts"][0].clone();
            two["alerts"].as_array_mut().unwrap().push(second);
            let (status, body) = http.post(&signal(&b), &two).await;
            assert_eq!(status, 413, "{body}");
            let mut large = alert("Limits", &ns, &format!("large-{round}"));
            large["alerts"][0]["annotations"]["description"] = "x".repeat(70_000).into();
            let (status, body) = http.post(&signal(&a), &large).await;
            assert_eq!(status, 400, "{body}");
            let (status, body) = Http::new()
                .post(&signal(&a), &alert("Limits", &ns, "anonymous"))
                .await;
            assert_eq!(status, 401, "{body}");
        },
    )
    .await;
    // Evictions: three idle connections to B's health listener, capped at two.
    drive_until(
        &http,
        &[&b],
        "gateway_connections_evicted_total",
        "eviction",
        async |_| {
            let address = b.health.trim_start_matches("http://").to_owned();
            let mut idle = Vec::new();
            for _ in 0..3 {
                idle.push(tokio::net::TcpStream::connect(&address).await.unwrap());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let (status, _) = http.get(&format!("{}/readyz", b.health)).await.unwrap();
            assert_eq!(status, 200);
        },
    )
    .await;
    // The ring: C forwards what D owns, once both see the other's Lease.
    for gateway in [&c, &d] {
        eventually(Duration::from_secs(20), "a ring of two", || async {
            let members = gateway.metric(&http, "gateway_cluster_members", &[]).await;
            (members == 2.0).then_some(())
        })
        .await;
    }
    drive_until(
        &http,
        &[&c],
        "gateway_forwarded_signals_total",
        "forwards",
        async |round| {
            for i in 0..10 {
                let pod = format!("ring-{round}-{i}");
                let (status, body) = http.post(&signal(&c), &alert("Ring", &ns, &pod)).await;
                assert!(accepted(status), "{status} {body}");
            }
        },
    )
    .await;
    log(
        "load done: creates, duplicates, events, 4xx, storms, race, redeliveries, overload, overflow, limits, forwards",
    );

    // Outage: 503s until the breaker opens, which Prometheus must see before the restart.
    plane.stop_apiserver().await.unwrap();
    log("apiserver stopped");
    // Spread over several scrapes: a labelled series is born at its first increment, and
    // rate() cannot see the jump into a series' first sample, only what follows.
    for i in 0..100 {
        let pod = format!("steady-{}", i % 15);
        let (status, _) = http
            .post(&signal(&a), &alert("HighLatency", &ns, &pod))
            .await;
        assert_eq!(status, 503);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    eventually(Duration::from_secs(30), "breaker open, scraped", || async {
        let open = query(&http, &prometheus.url, "gateway_circuit_breaker_state == 2").await;
        (!open.is_empty()).then_some(())
    })
    .await;
    log("503s sent, breaker open seen by Prometheus");
    plane.start_apiserver().await.unwrap();
    log("apiserver started");
    for gateway in [&a, &b] {
        gateway.ready(&http).await;
        eventually(Duration::from_secs(60), "watch restart counted", || async {
            (gateway
                .metric(&http, "gateway_watch_restarts_total", &[])
                .await
                >= 1.0)
                .then_some(())
        })
        .await;
    }
    log("apiserver outage and restart done");
    load(60, "after").await;
    log("second load done");

    // Every panel query, variables filled in, returns data once Prometheus has scraped the
    // series twice (rate needs two samples).
    let queries: Vec<(String, String)> = dashboard_queries(&dashboard())
        .into_iter()
        .map(|(title, expr)| (title, substitute(&expr)))
        .collect();
    let rule_list = rules();
    let mut expressions: Vec<(String, String)> = queries.clone();
    for (alert, expr) in &rule_list {
        expressions.push((format!("rule {alert}"), signal_side(expr)));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut empty = Vec::new();
        for (what, expr) in &expressions {
            if query(&http, &prometheus.url, expr).await.is_empty() {
                empty.push(format!("{what}: {expr}"));
            }
        }
        if empty.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "queries without data:\n{}",
            empty.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    log(&format!(
        "{} panel queries and {} rule signals have data",
        queries.len(),
        rule_list.len()
    ));
    // The full alert expressions parse and evaluate (empty is fine: not alerting).
    for (_, expr) in &rule_list {
        query(&http, &prometheus.url, expr).await;
    }

    // Prometheus evaluates the rules file itself: all healthy; the provoked alerts active.
    let provoked = [
        "GatewayStormQueueOverflow",
        "GatewayNotReady",
        "GatewayHighErrorRatio",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let active = loop {
        let (_, body) = http
            .get(&format!("{}/api/v1/rules?type=alert", prometheus.url))
            .await
            .unwrap();
        let body: Value = serde_json::from_str(&body).unwrap();
        let rules: Vec<Value> = body["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        assert_eq!(rules.len(), rule_list.len(), "rules loaded by Prometheus");
        for rule in &rules {
            assert_eq!(rule["health"], "ok", "rule evaluation failed: {rule}");
        }
        let active: BTreeSet<String> = rules
            .iter()
            .filter(|r| r["state"] == "pending" || r["state"] == "firing")
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect();
        if provoked.iter().all(|name| active.contains(*name)) {
            break active;
        }
        if Instant::now() > deadline {
            let mut report = String::new();
            for (alert, expr) in &rule_list {
                let value = query(&http, &prometheus.url, &signal_side(expr)).await;
                report.push_str(&format!("{alert}: {value:?}\n"));
            }
            panic!("provoked alerts {provoked:?} not all active: {active:?}\n{report}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    log(&format!("alerts active: {active:?}"));

    let mut promtool = Command::new(observe_support::promtool_bin());
    promtool
        .args(["check", "rules"])
        .arg(deploy_dir().join("monitoring/rules.yaml"));
    let (ok, out, err) = run(promtool, None, Duration::from_secs(60));
    assert!(ok, "promtool check rules: {out}{err}");
    drop(prometheus);
    log("done");
}

/// The dashboard imports as is: Grafana's dashboard model with a data-source variable (so
/// import asks for nothing and provisioning works), unique panel ids on a 24-column grid
/// without overlaps, every query on that data source, and every metric the gateway exports
/// shown somewhere. (No Grafana on these machines: the model is checked, not rendered.)
#[test]
fn the_dashboard_is_importable_and_shows_every_metric() {
    let dashboard = dashboard();
    assert!(dashboard["id"].is_null(), "an id would clash on import");
    assert!(
        dashboard["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty() && u.len() <= 40)
    );
    assert!(dashboard["title"].is_string());
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let datasource = variables
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data-source variable");
    assert_eq!(datasource["query"], "prometheus");
    let reference = json!({"type": "prometheus", "uid": format!("${{{}}}", datasource["name"].as_str().unwrap())});
    let names: BTreeSet<String> = variables
        .iter()
        .map(|v| format!("${}", v["name"].as_str().unwrap()))
        .collect();

    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate id: {panel}"
        );
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| grid[k].as_u64().unwrap());
        assert!(x + w <= 24 && w > 0 && h > 0, "{grid}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "panels overlap at {cx},{cy}");
            }
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"], reference, "{}", panel["title"]);
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty());
        let ref_ids: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        assert_eq!(
            ref_ids.len(),
            targets.len(),
            "refIds unique in {}",
            panel["title"]
        );
        for target in targets {
            assert_eq!(target["datasource"], reference);
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$')) {
                if word.starts_with('$') && !word.starts_with("$__") {
                    assert!(names.contains(word), "{word} is not a dashboard variable");
                }
            }
        }
    }
    let exprs: String = dashboard_queries(&dashboard)
        .into_iter()
        .map(|(_, expr)| expr)
        .collect::<Vec<_>>()
        .join("\n");
    for metric in exported_metric_names() {
        assert!(exprs.contains(&metric), "no dashboard panel shows {metric}");
    }
}

/// README's "Observe" table names every exported metric.
#[test]
fn the_readme_lists_every_metric() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let observe = readme
        .split("\n## Observe")
        .nth(1)
        .expect("an Observe section")
        .split("\n## ")
        .next()
        .unwrap();
    for metric in exported_metric_names() {
        let short = metric.trim_start_matches("gateway_");
        assert!(
            observe.contains(&format!("`{short}`")) || observe.contains(&format!("`{short}{{")),
            "README's Observe section does not list {metric}"
        );
    }
}

#[test]
fn signal_side_removes_only_threshold_comparisons() {
    assert_eq!(
        signal_side("rate(x{a=\"1\"}[5m]) > 0.04"),
        "rate(x{a=\"1\"}[5m])"
    );
    assert_eq!(
        signal_side("max_over_time(b[2m]) == 1 or up{job=\"g\"} == 0"),
        "max_over_time(b[2m]) or up{job=\"g\"}"
    );
}
