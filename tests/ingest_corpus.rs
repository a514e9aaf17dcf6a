//! Black-box tests of the adapters through the library's public surface, on the fuzzers' kept
//! inputs (`fuzz/seeds/`: realistic Alertmanager v4 and core/v1 Event payloads, and every input
//! a fuzzer ever found a crash with), each also run through the fuzzers' own checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The fuzz targets' checks (`fuzz/fuzz_targets/common.rs`), run here under stable.
#[path = "../fuzz/fuzz_targets/common.rs"]
mod fuzz_checks;

use std::path::{Path, PathBuf};

use gateway::fingerprint::Fingerprint;
use gateway::ingest::adapters::{alertmanager, kubernetes_event};
use gateway::ingest::{Rejection, Signal};

/// The fuzz targets' fixed clock; the seeds' timestamps are written against it.
use fuzz_checks::now;

fn seed(target: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The files of `dir` (relative to the workspace), sorted; panics if there are none, so a
/// moved or emptied corpus fails instead of checking nothing.
fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "{} holds no kept input", dir.display());
    out
}

fn alerts(name: &str) -> Result<Vec<Result<Signal, Rejection>>, Rejection> {
    let mut body = seed("alertmanager", name);
    alertmanager::parse(&mut body, None, now())
}

fn event(name: &str) -> Result<Signal, Rejection> {
    let mut body = seed("kubernetes_event", name);
    kubernetes_event::parse(&mut body, now())
}

#[test]
fn alertmanager_single_crashlooping_pod() {
    let all = alerts("single_pod_crashloop.json").unwrap();
    let s = all[0].as_ref().unwrap();
    assert_eq!(s.name, "KubePodCrashLooping");
    assert_eq!(s.severity, "warning");
    // kube-state-metrics alerts also carry `service="kube-state-metrics"`: pod wins.
    assert_eq!(s.resource.kind, "Pod");
    assert_eq!(s.resource.name, "payment-api-7d9f8b6c5-x2x4z");
    assert_eq!(s.resource.namespace.as_deref(), Some("payments"));
    assert_eq!(
        s.fingerprint,
        Fingerprint::of(None, "payments", "Pod", "payment-api-7d9f8b6c5-x2x4z")
    );
}

#[test]
fn alertmanager_batch_of_every_kind() {
    let all = alerts("batch_mixed_kinds.json").unwrap();
    let kinds: Vec<_> = all
        .iter()
        .map(|r| {
            r.as_ref()
                .map(|s| (s.resource.kind.as_str(), s.resource.namespace.as_deref()))
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            Ok(("Deployment", Some("shop"))),
            Ok(("Node", None)),
            Ok(("StatefulSet", Some("db"))),
            Ok(("DaemonSet", Some("monitoring"))),
            Ok(("Service", Some("shop"))),
            Err(&Rejection::NoTargetResource),
        ]
    );
    for s in all.iter().flatten() {
        assert_eq!(s.cluster.as_deref(), Some("eu-west-1-prod"));
    }
}

#[test]
fn alertmanager_resolved_escaped_and_truncated_groups() {
    assert!(alerts("resolved.json").unwrap()[0].is_ok());

    let s = alerts("escapes_and_unicode.json")
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(s.severity, "P1 \u{2013} page");
    assert_eq!(s.labels["team"], s.labels["owner"]);
    assert!(s.annotations["description"].contains('\u{1F680}'));
    assert!(s.annotations["description"].contains('\0'));

    let all = alerts("truncated_group.json").unwrap();
    assert_eq!(all.len(), 12);
    assert!(all.iter().all(Result::is_ok));
}

#[test]
fn alertmanager_exported_namespace_wins_over_the_exporters_namespace() {
    // kube-state-metrics scraped without honor_labels: `namespace` is kube-state-metrics' own.
    let s = alerts("exported_namespace_wins.json")
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(s.labels["namespace"], "monitoring");
    assert_eq!(s.resource.namespace.as_deref(), Some("shop"));
    assert_eq!(
        s.fingerprint,
        Fingerprint::of(None, "shop", "Deployment", "checkout")
    );
}

#[test]
fn alertmanager_invalid_target_names_reject_only_their_alerts() {
    let all = alerts("invalid_target_names.json").unwrap();
    let fields: Vec<_> = all
        .iter()
        .map(|r| match r {
            Ok(s) => Ok(s.resource.name.as_str()),
            Err(Rejection::InvalidField { field, .. }) => Err(*field),
            Err(other) => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        fields,
        vec![
            Ok("frontend"),
            Err("labels.service"),
            Err("labels.namespace"),
            Err("labels.node"),
        ]
    );
}

#[test]
fn alertmanager_target_hints_override_the_resource_labels() {
    // An Argo Rollouts alert: `pod` is the controller's own pod, the hint names the Rollout.
    let s = alerts("target_hints.json").unwrap().remove(0).unwrap();
    assert_eq!(
        (s.resource.kind.as_str(), s.resource.name.as_str()),
        ("Rollout", "checkout")
    );
    assert_eq!(s.resource.namespace.as_deref(), Some("shop"));
    assert_eq!(
        s.fingerprint,
        Fingerprint::of(None, "shop", "Rollout", "checkout")
    );
}

#[test]
fn alertmanager_rejections() {
    assert_eq!(
        alerts("missing_alertname.json").unwrap(),
        vec![Err(Rejection::MissingField("labels.alertname"))]
    );
    assert_eq!(alerts("empty_object.json"), Err(Rejection::NoAlerts));
    assert_eq!(alerts("no_alerts.json"), Err(Rejection::NoAlerts));
}

#[test]
fn alertmanager_with_x_timestamp() {
    let raw = seed("alertmanager", "x_timestamp_header.txt");
    // Split as the fuzz target splits it.
    let (header, body) = fuzz_checks::split_x_timestamp(&raw);
    let value = header.expect("an `X-Timestamp: <value>` first line");
    let mut body = body.to_vec();
    let all = alertmanager::parse(&mut body, Some(value), now()).unwrap();
    assert!(all[0].is_ok());
}

#[test]
fn events_accepted() {
    let s = event("pod_backoff.json").unwrap();
    assert_eq!(
        (s.name.as_str(), s.severity.as_str()),
        ("BackOff", "Warning")
    );
    assert_eq!(s.resource.namespace.as_deref(), Some("payments"));

    let s = event("node_not_ready.json").unwrap();
    assert_eq!(s.resource.namespace, None);
    assert_eq!(
        s.fingerprint,
        Fingerprint::of(None, "", "Node", "worker-3.example.internal")
    );

    assert!(event("failed_scheduling.json").is_ok());
    let s = event("oom_statefulset_error.json").unwrap();
    assert_eq!(s.severity, "Error");
    assert_eq!(s.resource.api_version.as_deref(), Some("apps/v1"));

    // No firstTimestamp: the firing time is eventTime, the first observation.
    let s = event("series_no_first_timestamp.json").unwrap();
    assert_eq!(s.firing_time, "2026-03-01T11:50:00Z".parse().unwrap());

    let s = event("namespace_from_metadata.json").unwrap();
    assert_eq!(s.resource.namespace.as_deref(), Some("web"));
}

#[test]
fn events_from_the_events_v1_recorder_are_accepted() {
    // kube-scheduler: firstTimestamp and lastTimestamp null, eventTime and series instead.
    let s = event("events_v1_failed_scheduling.json").unwrap();
    assert_eq!(s.name, "FailedScheduling");
    assert_eq!(
        s.fingerprint,
        Fingerprint::of(None, "ml", "Pod", "trainer-1")
    );
    assert_eq!(
        s.firing_time,
        "2026-03-01T11:58:30.412345Z".parse().unwrap()
    );
    assert_eq!(s.annotations["kubernaut.io/event-count"], "4");
    // Fresh by series.lastObservedTime (11:59:41.998877) alone: 5 min after it still passes,
    // though eventTime is by then more than 6 min old.
    let mut body = seed("kubernetes_event", "events_v1_failed_scheduling.json");
    let later = "2026-03-01T12:04:41.998877Z".parse().unwrap();
    assert!(kubernetes_event::parse(&mut body, later).is_ok());
}

#[test]
fn events_rejected() {
    assert_eq!(
        event("normal_scheduled.json"),
        Err(Rejection::UnsupportedEventType("Normal".into()))
    );
    assert_eq!(
        event("missing_reason.json"),
        Err(Rejection::MissingField("reason"))
    );
    // lastTimestamp 11:54:59 is 5 min 1 s before the clock.
    assert!(matches!(event("stale.json"), Err(Rejection::Freshness(_))));
}

/// A fuzz target's checks of one input.
type Check = fn(&[u8]);

/// Every kept input of each fuzz target (the seeds, and any crash input copied there after
/// its fix) passes that target's checks: no panic, valid signals, both JSON decoders agree.
#[test]
fn kept_fuzz_inputs_pass_the_fuzzers_checks() {
    let checks: [(&str, Check); 2] = [
        ("alertmanager", fuzz_checks::alertmanager),
        ("kubernetes_event", fuzz_checks::kubernetes_event),
    ];
    for (target, check) in checks {
        for path in files(&format!("fuzz/seeds/{target}")) {
            let data = std::fs::read(&path).unwrap();
            // The check's own panic message is printed above this one.
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                panic!("{target} checks failed on {}", path.display());
            }
        }
    }
}
