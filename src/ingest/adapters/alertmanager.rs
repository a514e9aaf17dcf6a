//! Alertmanager webhook payload, version 4 (DESIGN.md §2–3).
//!
//! The body is decoded by simd-json straight into borrowed wire structs: no DOM, and strings
//! borrow from the body until a [`Signal`] is built. Every field Alertmanager sends is declared
//! with its type, so a wrongly typed value rejects the request just as the kubernaut Gateway's
//! Go decoder does; unknown fields are ignored. A signal's `raw` is its alert re-serialised from
//! these structs (the seven v4 alert fields, in Alertmanager's order), so a field Alertmanager
//! never sends is not kept there.
//!
//! Per alert: name = `labels.alertname` (required), severity = `labels.severity` verbatim else
//! `"unknown"`, labels and annotations = the alert's merged over the common ones, target
//! resource from the hint labels [`TARGET_KIND_LABEL`] and [`TARGET_NAME_LABEL`] when both are
//! present, else from the first of [`RESOURCE_LABELS`], its namespace from the first of
//! [`NAMESPACE_LABELS`], firing time = `startsAt`. All label lookups read the merged labels, so
//! a `cluster` or `namespace` that only appears in `commonLabels` still counts. Labels with
//! empty values are treated as absent (Prometheus drops them). The [`Delivery`] digest covers
//! the fingerprint, the merged labels, `startsAt`, `endsAt` and `status`.
//!
//! The target's name, namespace and kind must be Kubernetes names ([`target`]); one that is not
//! rejects its alert (only that one, in a batch), naming the label it came from.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::wire::{Str, StrMap, first_non_empty};
use crate::fingerprint::Fingerprint;
use crate::ingest::freshness::{self, check_not_future, check_not_stale};
use crate::ingest::target;
use crate::ingest::{
    Delivery, Limits, Rejection, SEVERITY_MAX_CHARS, SIGNAL_NAME_MAX_CHARS, Signal,
    check_signal_bytes,
};
use crate::k8s::types::{ResourceRef, SignalSource, truncate_chars};

/// Labels that name the target resource, in precedence order: (label, its path as a rejection
/// names it, the kind it implies). `job` is absent on purpose: in Prometheus it is the scrape
/// job, not a Kubernetes Job.
pub const RESOURCE_LABELS: [(&str, &str, &str); 6] = [
    ("pod", "labels.pod", "Pod"),
    ("deployment", "labels.deployment", "Deployment"),
    ("statefulset", "labels.statefulset", "StatefulSet"),
    ("daemonset", "labels.daemonset", "DaemonSet"),
    ("node", "labels.node", "Node"),
    ("service", "labels.service", "Service"),
];

/// The label an alert rule sets to name its target's kind explicitly (`Deployment`, `Rollout`,
/// `PersistentVolume`...), overriding [`RESOURCE_LABELS`]. It counts only together with
/// [`TARGET_NAME_LABEL`]: one without the other is ignored, and the target is inferred as if
/// neither were there, so a half-written rule still reaches the resource its usual labels name.
pub const TARGET_KIND_LABEL: &str = "target_kind";
/// The label that names the target's object name explicitly; see [`TARGET_KIND_LABEL`].
pub const TARGET_NAME_LABEL: &str = "target_name";

/// Labels that name the target's namespace, in precedence order: (label, its path as a
/// rejection names it). `target_namespace` is the explicit hint, and counts with or without a
/// kind and name hint. `exported_namespace` comes next: when Prometheus scrapes an exporter
/// (kube-state-metrics) or a federated Prometheus without `honor_labels`, `namespace` is the
/// namespace of the exporter's own target and the original label is kept as
/// `exported_namespace`; an alert only carries it in that case.
pub const NAMESPACE_LABELS: [(&str, &str); 3] = [
    ("target_namespace", "labels.target_namespace"),
    ("exported_namespace", "labels.exported_namespace"),
    ("namespace", "labels.namespace"),
];

/// The namespace of a namespaced target when no label names one.
const DEFAULT_NAMESPACE: &str = "default";

/// The webhook body. Fields the gateway does not use are still declared so their types are
/// checked (see the module docs).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // type-checked, never read
struct Webhook<'a> {
    #[serde(borrow)]
    version: Option<Str<'a>>,
    #[serde(borrow)]
    group_key: Option<Str<'a>>,
    truncated_alerts: Option<i64>,
    #[serde(borrow)]
    status: Option<Str<'a>>,
    #[serde(borrow)]
    receiver: Option<Str<'a>>,
    #[serde(borrow)]
    group_labels: Option<StrMap<'a>>,
    #[serde(borrow)]
    common_labels: Option<StrMap<'a>>,
    #[serde(borrow)]
    common_annotations: Option<StrMap<'a>>,
    #[serde(borrow, rename = "externalURL")]
    external_url: Option<Str<'a>>,
    #[serde(borrow)]
    alerts: Option<Vec<Alert<'a>>>,
}

/// One alert. Serialised back, in Alertmanager's field order, as the signal's `raw` payload.
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Alert<'a> {
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    status: Option<Str<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    labels: Option<StrMap<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    annotations: Option<StrMap<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    starts_at: Option<Str<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    ends_at: Option<Str<'a>>,
    #[serde(
        borrow,
        rename = "generatorURL",
        skip_serializing_if = "Option::is_none"
    )]
    generator_url: Option<Str<'a>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<Str<'a>>,
}

/// Parses an Alertmanager webhook body.
///
/// `x_timestamp` is the raw `X-Timestamp` header, if any. The outer `Err` rejects the whole
/// request (malformed JSON, no alerts, freshness); the inner results are per alert, each
/// independent of the others, in payload order.
///
/// Freshness (DESIGN.md §2): with `X-Timestamp`, it must be integer unix seconds at most
/// [`freshness::MAX_AGE`] old and [`freshness::MAX_FUTURE`] ahead, checked before the body is
/// decoded so a replay costs no parse. Without it, the newest `startsAt` must exist and be at
/// most [`freshness::MAX_FUTURE`] ahead; there is no age limit, because Alertmanager re-sends
/// long-firing alerts with their original `startsAt`.
///
/// Per alert, a `startsAt` that is absent is [`Rejection::MissingField`], one that is not
/// RFC 3339 is [`Rejection::Freshness`]; neither affects the other alerts.
pub fn parse(
    body: &mut [u8],
    x_timestamp: Option<&[u8]>,
    now: Timestamp,
) -> Result<Vec<Result<Signal, Rejection>>, Rejection> {
    parse_limited(body, x_timestamp, now, &Limits::default())
}

/// [`parse`] with the request limits: more than `limits.max_alerts` alerts rejects the payload
/// ([`Rejection::TooManyAlerts`]) before any alert is built, and an alert whose merged labels
/// and annotations exceed `limits.max_signal_bytes` is rejected alone ([`Rejection::TooLarge`])
/// — its copy of the common labels and annotations is dropped at once, so a large
/// `commonAnnotations` is never held once per alert.
pub fn parse_limited(
    body: &mut [u8],
    x_timestamp: Option<&[u8]>,
    now: Timestamp,
    limits: &Limits,
) -> Result<Vec<Result<Signal, Rejection>>, Rejection> {
    let header_checked = check_x_timestamp(x_timestamp, now)?;
    let webhook: Webhook<'_> = super::wire::with_simd_buffers(|buffers| {
        simd_json::serde::from_slice_with_buffers(body, buffers)
    })
    .map_err(|e| Rejection::MalformedJson(e.to_string()))?;
    signals(webhook, header_checked, now, limits)
}

/// [`parse`] with serde_json as the decoder: same wire structs, same rules. Not used on the
/// request path; it is the baseline of the `hot_path` bench and a second opinion for the fuzz
/// targets.
pub fn parse_with_serde_json(
    body: &[u8],
    x_timestamp: Option<&[u8]>,
    now: Timestamp,
) -> Result<Vec<Result<Signal, Rejection>>, Rejection> {
    let header_checked = check_x_timestamp(x_timestamp, now)?;
    let webhook: Webhook<'_> =
        serde_json::from_slice(body).map_err(|e| Rejection::MalformedJson(e.to_string()))?;
    signals(webhook, header_checked, now, &Limits::default())
}

/// Checks `X-Timestamp` when present; says whether it was.
fn check_x_timestamp(x_timestamp: Option<&[u8]>, now: Timestamp) -> Result<bool, Rejection> {
    let Some(raw) = x_timestamp else {
        return Ok(false);
    };
    let sent = freshness::parse_x_timestamp(raw)?;
    check_not_stale(sent, now, "X-Timestamp")?;
    check_not_future(sent, now, "X-Timestamp")?;
    Ok(true)
}

fn signals(
    webhook: Webhook<'_>,
    header_checked: bool,
    now: Timestamp,
    limits: &Limits,
) -> Result<Vec<Result<Signal, Rejection>>, Rejection> {
    let alerts = webhook.alerts.unwrap_or_default();
    if alerts.is_empty() {
        return Err(Rejection::NoAlerts);
    }
    if alerts.len() > limits.max_alerts {
        return Err(Rejection::TooManyAlerts {
            count: alerts.len(),
            max: limits.max_alerts,
        });
    }

    let starts: Vec<Result<Option<Timestamp>, Rejection>> = alerts
        .iter()
        .map(|a| freshness::parse_rfc3339(a.starts_at.as_deref(), "startsAt"))
        .collect();
    if !header_checked {
        let newest = starts
            .iter()
            .filter_map(|s| s.as_ref().ok().copied().flatten())
            .max()
            .ok_or_else(|| {
                Rejection::Freshness("no alert carries a valid startsAt timestamp".into())
            })?;
        check_not_future(newest, now, "newest startsAt")?;
    }

    let mut common_labels = BTreeMap::new();
    if let Some(common) = &webhook.common_labels {
        common.merge_into(&mut common_labels);
    }
    let mut common_annotations = BTreeMap::new();
    if let Some(common) = &webhook.common_annotations {
        common.merge_into(&mut common_annotations);
    }

    Ok(alerts
        .iter()
        .zip(starts)
        .map(|(alert, starts_at)| {
            to_signal(
                alert,
                starts_at,
                &common_labels,
                &common_annotations,
                limits,
            )
        })
        .collect())
}

fn to_signal(
    alert: &Alert<'_>,
    starts_at: Result<Option<Timestamp>, Rejection>,
    common_labels: &BTreeMap<String, String>,
    common_annotations: &BTreeMap<String, String>,
    limits: &Limits,
) -> Result<Signal, Rejection> {
    let mut labels = common_labels.clone();
    if let Some(own) = &alert.labels {
        own.merge_into(&mut labels);
    }

    let name = first_non_empty(&labels, &["alertname"])
        .ok_or(Rejection::MissingField("labels.alertname"))?;
    let target = Target::of(&labels)?;
    let firing_time = starts_at?.ok_or(Rejection::MissingField("startsAt"))?;
    let cluster = first_non_empty(&labels, &["cluster"]);
    if let Some(cluster) = cluster {
        target::check_cluster(cluster, "labels.cluster")?;
    }
    let severity = first_non_empty(&labels, &["severity"]).unwrap_or("unknown");

    let fingerprint = Fingerprint::of(
        cluster,
        target.namespace.unwrap_or(""),
        target.kind,
        target.name,
    );
    // What changes between two notifications of one alert: Alertmanager moves `endsAt` on at
    // every re-notification of a firing alert and flips `status` when it resolves; a
    // re-fired alert has a new `startsAt`. The labels are the alert's identity.
    let delivery = Delivery::digest(SignalSource::Prometheus, &fingerprint)
        .labels("labels", &labels)
        .time("startsAt", Some(firing_time))
        .text("endsAt", alert.ends_at.as_deref())
        .text("status", alert.status.as_deref())
        .finish();
    let resource = ResourceRef {
        kind: target.kind.to_owned(),
        name: target.name.to_owned(),
        namespace: target.namespace.map(str::to_owned),
        api_version: None,
    };
    let name = truncate_chars(name, SIGNAL_NAME_MAX_CHARS).to_owned();
    let severity = truncate_chars(severity, SEVERITY_MAX_CHARS).to_owned();
    let cluster = cluster.map(str::to_owned);

    let mut annotations = common_annotations.clone();
    if let Some(own) = &alert.annotations {
        own.merge_into(&mut annotations);
    }
    check_signal_bytes(&labels, &annotations, limits)?;
    // Serialising borrowed strings and string maps cannot fail; an empty `raw` would only cost
    // the RR its copy of the payload.
    let raw = simd_json::to_string(alert).unwrap_or_default();

    Ok(Signal {
        fingerprint,
        delivery,
        name,
        severity,
        source: SignalSource::Prometheus,
        resource,
        labelled: None,
        cluster,
        labels,
        annotations,
        firing_time,
        raw,
        origin: Default::default(),
    })
}

/// The resource an alert is about, read from its merged labels and validated.
struct Target<'l> {
    kind: &'l str,
    name: &'l str,
    /// `None` for a cluster-scoped kind.
    namespace: Option<&'l str>,
}

impl<'l> Target<'l> {
    fn of(labels: &'l BTreeMap<String, String>) -> Result<Self, Rejection> {
        let (name, field, kind) = match Self::hint(labels)? {
            Some(hinted) => hinted,
            None => RESOURCE_LABELS
                .iter()
                .find_map(|&(label, field, kind)| {
                    Some((first_non_empty(labels, &[label])?, field, kind))
                })
                .ok_or(Rejection::NoTargetResource)?,
        };
        target::check_name(name, field)?;
        // A cluster-scoped kind has no namespace: a namespace label on a node alert is the
        // exporter's, not the node's, so it is ignored (and not checked).
        let namespace = if target::is_cluster_scoped(kind) {
            None
        } else if let Some((namespace, field)) = NAMESPACE_LABELS
            .iter()
            .find_map(|&(label, field)| Some((first_non_empty(labels, &[label])?, field)))
        {
            target::check_namespace(namespace, field)?;
            Some(namespace)
        } else {
            Some(DEFAULT_NAMESPACE)
        };
        Ok(Target {
            kind,
            name,
            namespace,
        })
    }

    /// The explicit target, when both hint labels are present: (name, its field, kind), the
    /// kind already checked.
    fn hint(
        labels: &'l BTreeMap<String, String>,
    ) -> Result<Option<(&'l str, &'static str, &'l str)>, Rejection> {
        let kind = first_non_empty(labels, &[TARGET_KIND_LABEL]);
        let name = first_non_empty(labels, &[TARGET_NAME_LABEL]);
        let (Some(kind), Some(name)) = (kind, name) else {
            return Ok(None);
        };
        target::check_kind(kind, "labels.target_kind")?;
        Ok(Some((name, "labels.target_name", kind)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::ingest::freshness::{MAX_AGE, MAX_FUTURE};
    use jiff::SignedDuration;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn now() -> Timestamp {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    fn alert(labels: Value) -> Value {
        json!({
            "status": "firing",
            "labels": labels,
            "annotations": {"summary": "it broke"},
            "startsAt": "2026-03-01T11:58:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
            "fingerprint": "0123456789abcdef"
        })
    }

    fn webhook(alerts: Vec<Value>) -> Value {
        json!({
            "version": "4",
            "groupKey": "{}:{alertname=\"X\"}",
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "gateway",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": alerts
        })
    }

    fn run(payload: &Value) -> Result<Vec<Result<Signal, Rejection>>, Rejection> {
        run_with(payload, None, now())
    }

    fn run_with(
        payload: &Value,
        x_timestamp: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<Vec<Result<Signal, Rejection>>, Rejection> {
        let mut body = serde_json::to_vec(payload).unwrap();
        let by_serde = parse_with_serde_json(&body, x_timestamp, now);
        let by_simd = parse(&mut body, x_timestamp, now);
        // Both decoders must agree on every payload of this suite.
        match (&by_simd, &by_serde) {
            (Err(Rejection::MalformedJson(_)), Err(Rejection::MalformedJson(_))) => {}
            _ => assert_eq!(by_simd, by_serde),
        }
        by_simd
    }

    fn one(payload: &Value) -> Result<Signal, Rejection> {
        let mut all = run(payload).expect("request accepted");
        assert_eq!(all.len(), 1);
        all.remove(0)
    }

    fn deploy_labels() -> Value {
        json!({"alertname": "HighLatency", "severity": "critical",
               "namespace": "prod", "deployment": "api"})
    }

    #[test]
    fn a_realistic_alert_becomes_a_signal() {
        let s = one(&webhook(vec![alert(deploy_labels())])).unwrap();
        assert_eq!(s.name, "HighLatency");
        assert_eq!(s.severity, "critical");
        assert_eq!(s.source, SignalSource::Prometheus);
        assert_eq!(
            s.resource,
            ResourceRef {
                kind: "Deployment".into(),
                name: "api".into(),
                namespace: Some("prod".into()),
                api_version: None,
            }
        );
        assert_eq!(s.cluster, None);
        assert_eq!(
            s.fingerprint.as_str(),
            // printf %s 'prod:Deployment:api' | sha256sum
            "ef1b76d88f42344978562a9fa0edb7e5d356a16d2d11396312e91a137d393384"
        );
        assert_eq!(s.firing_time, "2026-03-01T11:58:00Z".parse().unwrap());
        assert_eq!(s.annotations["summary"], "it broke");
    }

    #[test]
    fn raw_is_the_single_alert_as_compact_json() {
        let a = alert(deploy_labels());
        let s = one(&webhook(vec![a.clone()])).unwrap();
        assert!(!s.raw.contains('\n') && !s.raw.contains(": "));
        assert_eq!(serde_json::from_str::<Value>(&s.raw).unwrap(), a);
        assert!(
            s.raw
                .starts_with(r#"{"status":"firing","labels":{"alertname""#)
        );
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let s = one(&webhook(vec![alert(json!({
            "alertname": "Quote\"d\u{e9}", "pod": "p1", "namespace": "n", "team": "a\\b"
        }))]))
        .unwrap();
        assert_eq!(s.name, "Quote\"d\u{e9}");
        assert_eq!(s.labels["team"], "a\\b");
        assert!(s.raw.contains(r#""alertname":"Quote\"dé""#), "{}", s.raw);
    }

    #[test]
    fn missing_or_empty_alertname_rejects_only_that_alert() {
        let payload = webhook(vec![
            alert(json!({"pod": "p", "namespace": "n"})),
            alert(json!({"alertname": "", "pod": "p", "namespace": "n"})),
            alert(json!({"alertname": "A", "pod": "p", "namespace": "n"})),
        ]);
        let all = run(&payload).unwrap();
        assert_eq!(all[0], Err(Rejection::MissingField("labels.alertname")));
        assert_eq!(all[1], Err(Rejection::MissingField("labels.alertname")));
        assert!(all[2].is_ok());
    }

    #[test]
    fn alertname_may_come_from_common_labels() {
        let mut payload = webhook(vec![alert(json!({"pod": "p"}))]);
        payload["commonLabels"] = json!({"alertname": "FromCommon"});
        assert_eq!(one(&payload).unwrap().name, "FromCommon");
    }

    #[test]
    fn severity_is_verbatim_else_unknown_and_truncated_to_50() {
        let sev = |v: Value| {
            let mut labels = json!({"alertname": "A", "pod": "p"});
            if !v.is_null() {
                labels["severity"] = v;
            }
            one(&webhook(vec![alert(labels)])).unwrap().severity
        };
        assert_eq!(sev(json!("Sev1")), "Sev1");
        assert_eq!(sev(json!("P0 page NOW")), "P0 page NOW");
        assert_eq!(sev(Value::Null), "unknown");
        assert_eq!(sev(json!("")), "unknown");
        assert_eq!(sev(json!("é".repeat(51))), "é".repeat(50));
        assert_eq!(sev(json!("x".repeat(50))), "x".repeat(50));
    }

    #[test]
    fn long_alertname_is_truncated_to_253_chars() {
        let long = "A".repeat(300);
        let s = one(&webhook(vec![alert(
            json!({"alertname": long, "pod": "p"}),
        )]))
        .unwrap();
        assert_eq!(s.name.chars().count(), SIGNAL_NAME_MAX_CHARS);
        let fits = "ü".repeat(253);
        let s = one(&webhook(vec![alert(
            json!({"alertname": fits, "pod": "p"}),
        )]))
        .unwrap();
        assert_eq!(s.name, "ü".repeat(253));
    }

    /// The field a rejection names, when it is an invalid field.
    fn invalid_field(r: Result<Signal, Rejection>) -> &'static str {
        match r {
            Err(Rejection::InvalidField { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn resource_label_longer_than_a_kubernetes_name_is_rejected() {
        let ok = one(&webhook(vec![alert(
            json!({"alertname": "A", "pod": "p".repeat(253)}),
        )]));
        assert!(ok.is_ok());
        let too_long = one(&webhook(vec![alert(
            json!({"alertname": "A", "pod": "p".repeat(254)}),
        )]));
        assert_eq!(invalid_field(too_long), "labels.pod");
    }

    #[test]
    fn resource_names_must_be_kubernetes_names_and_the_rejection_names_the_label() {
        for (label, value) in [
            ("pod", "API-0"),
            ("deployment", "web_frontend"),
            ("statefulset", "db:0"),
            ("daemonset", "-agent"),
            ("node", "10.0.0.1:9100"),
            ("service", "Payment API"),
        ] {
            let r = one(&webhook(vec![alert(
                json!({"alertname": "A", label: value}),
            )]));
            assert_eq!(
                invalid_field(r),
                format!("labels.{label}"),
                "{label}={value}"
            );
        }
        // Only the label that names the target is checked: a later one is not read at all.
        let s = one(&webhook(vec![alert(
            json!({"alertname": "A", "pod": "api-0", "service": "Payment API"}),
        )]))
        .unwrap();
        assert_eq!(s.resource.name, "api-0");
        // And an invalid first label is a rejection, not a reason to try the next one.
        let r = one(&webhook(vec![alert(
            json!({"alertname": "A", "pod": "API-0", "deployment": "api"}),
        )]));
        assert_eq!(invalid_field(r), "labels.pod");
    }

    #[test]
    fn the_cluster_label_must_be_a_label_value() {
        for good in ["prod-eu-1", "gke_project_zone_name", "a", "Prod.2"] {
            let mut labels = deploy_labels();
            labels["cluster"] = json!(good);
            assert_eq!(
                one(&webhook(vec![alert(labels)]))
                    .unwrap()
                    .cluster
                    .as_deref(),
                Some(good)
            );
        }
        let too_long = "c".repeat(64);
        for bad in ["a:b", "-edge", "edge-", "with space", too_long.as_str()] {
            let mut labels = deploy_labels();
            labels["cluster"] = json!(bad);
            assert_eq!(
                invalid_field(one(&webhook(vec![alert(labels)]))),
                "labels.cluster",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn namespaces_must_be_dns_labels_and_the_rejection_names_the_label() {
        for (label, value) in [
            ("namespace", "Prod"),
            ("namespace", "team.prod"),
            ("namespace", &"n".repeat(64)),
            ("exported_namespace", "prod_eu"),
        ] {
            let r = one(&webhook(vec![alert(
                json!({"alertname": "A", "pod": "p", label: value}),
            )]));
            assert_eq!(
                invalid_field(r),
                format!("labels.{label}"),
                "{label}={value}"
            );
        }
        // The label that lost precedence is not read, so not checked either.
        let s = one(&webhook(vec![alert(json!({
            "alertname": "A", "pod": "p", "namespace": "Not_Used", "exported_namespace": "shop"
        }))]))
        .unwrap();
        assert_eq!(s.resource.namespace.as_deref(), Some("shop"));
        // Nor is the namespace label of a cluster-scoped kind.
        let s = one(&webhook(vec![alert(
            json!({"alertname": "A", "node": "worker-1", "namespace": "Not_Used"}),
        )]))
        .unwrap();
        assert_eq!(s.resource.namespace, None);
    }

    #[test]
    fn an_invalid_alert_of_a_batch_is_rejected_alone() {
        let all = run(&webhook(vec![
            alert(json!({"alertname": "A", "pod": "ok", "namespace": "shop"})),
            alert(json!({"alertname": "B", "pod": "ok", "namespace": "Shop"})),
            alert(json!({"alertname": "C", "pod": "Bad", "namespace": "shop"})),
        ]))
        .unwrap();
        assert!(all[0].is_ok());
        assert_eq!(invalid_field(all[1].clone()), "labels.namespace");
        assert_eq!(invalid_field(all[2].clone()), "labels.pod");
    }

    #[test]
    fn labels_and_annotations_merge_with_the_alert_winning() {
        let mut payload = webhook(vec![alert(json!({
            "alertname": "A", "pod": "p", "team": "alert"
        }))]);
        payload["commonLabels"] = json!({"team": "common", "region": "eu"});
        payload["commonAnnotations"] = json!({"summary": "common", "runbook": "r"});
        let s = one(&payload).unwrap();
        assert_eq!(s.labels["team"], "alert");
        assert_eq!(s.labels["region"], "eu");
        assert_eq!(s.annotations["summary"], "it broke");
        assert_eq!(s.annotations["runbook"], "r");
    }

    #[test]
    fn resource_precedence_follows_design() {
        let kind_of = |labels: Value| {
            let s = one(&webhook(vec![alert(labels)])).unwrap();
            (s.resource.kind, s.resource.name)
        };
        let all = json!({"alertname": "A", "pod": "p", "deployment": "d", "statefulset": "s",
                         "daemonset": "ds", "node": "n", "service": "svc", "job": "j"});
        assert_eq!(kind_of(all.clone()), ("Pod".into(), "p".into()));
        let mut labels = all;
        for (drop, next) in [
            ("pod", ("Deployment", "d")),
            ("deployment", ("StatefulSet", "s")),
            ("statefulset", ("DaemonSet", "ds")),
            ("daemonset", ("Node", "n")),
            ("node", ("Service", "svc")),
        ] {
            labels.as_object_mut().unwrap().remove(drop);
            assert_eq!(kind_of(labels.clone()), (next.0.into(), next.1.into()));
        }
    }

    #[test]
    fn job_label_is_not_a_resource() {
        let r = one(&webhook(vec![alert(
            json!({"alertname": "A", "job": "kube-state-metrics", "namespace": "n"}),
        )]));
        assert_eq!(r, Err(Rejection::NoTargetResource));
    }

    #[test]
    fn empty_resource_label_is_absent() {
        let s = one(&webhook(vec![alert(
            json!({"alertname": "A", "pod": "", "deployment": "d"}),
        )]))
        .unwrap();
        assert_eq!(s.resource.kind, "Deployment");
        let r = one(&webhook(vec![alert(json!({"alertname": "A", "pod": ""}))]));
        assert_eq!(r, Err(Rejection::NoTargetResource));
    }

    #[test]
    fn namespace_is_exported_namespace_then_namespace_then_default() {
        let ns = |labels: Value| {
            one(&webhook(vec![alert(labels)]))
                .unwrap()
                .resource
                .namespace
        };
        // kube-state-metrics scraped without honor_labels: `namespace` is the exporter's.
        assert_eq!(
            ns(
                json!({"alertname": "A", "pod": "p", "namespace": "monitoring",
                      "exported_namespace": "shop"})
            ),
            Some("shop".into())
        );
        assert_eq!(
            ns(json!({"alertname": "A", "pod": "p", "exported_namespace": "b"})),
            Some("b".into())
        );
        assert_eq!(
            ns(json!({"alertname": "A", "pod": "p", "namespace": "a"})),
            Some("a".into())
        );
        // An empty label is absent.
        assert_eq!(
            ns(json!({"alertname": "A", "pod": "p", "namespace": "a", "exported_namespace": ""})),
            Some("a".into())
        );
        assert_eq!(
            ns(json!({"alertname": "A", "service": "s"})),
            Some("default".into())
        );
    }

    #[test]
    fn exported_namespace_decides_the_fingerprint() {
        let mut payload = webhook(vec![alert(json!({
            "alertname": "KubeDeploymentReplicasMismatch", "deployment": "checkout",
            "namespace": "monitoring", "exported_namespace": "shop", "job": "kube-state-metrics"
        }))]);
        payload["commonLabels"] = json!({"cluster": "eu-1"});
        let s = one(&payload).unwrap();
        assert_eq!(
            s.fingerprint,
            Fingerprint::of(Some("eu-1"), "shop", "Deployment", "checkout")
        );
    }

    // ---- explicit target hints ----

    /// `base` with `extra`'s labels added.
    fn with(base: Value, extra: &Value) -> Value {
        let mut labels = base;
        labels
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        labels
    }

    #[test]
    fn target_kind_and_name_override_the_resource_labels() {
        let s = one(&webhook(vec![alert(json!({
            "alertname": "RolloutStuck", "pod": "checkout-6f7d9-abcde", "namespace": "shop",
            "target_kind": "Rollout", "target_name": "checkout"
        }))]))
        .unwrap();
        assert_eq!(
            s.resource,
            ResourceRef {
                kind: "Rollout".into(),
                name: "checkout".into(),
                namespace: Some("shop".into()),
                api_version: None,
            }
        );
        assert_eq!(
            s.fingerprint,
            Fingerprint::of(None, "shop", "Rollout", "checkout")
        );
        // Without any resource label too; namespaced by default.
        let s = one(&webhook(vec![alert(json!({
            "alertname": "A", "target_kind": "Deployment", "target_name": "api"
        }))]))
        .unwrap();
        assert_eq!(
            s.fingerprint,
            Fingerprint::of(None, "default", "Deployment", "api")
        );
    }

    #[test]
    fn a_hinted_cluster_scoped_kind_has_no_namespace() {
        let s = one(&webhook(vec![alert(json!({
            "alertname": "KubePersistentVolumeErrors", "namespace": "monitoring",
            "target_namespace": "shop", "target_kind": "PersistentVolume",
            "target_name": "pvc-0a1b2c3d"
        }))]))
        .unwrap();
        assert_eq!(s.resource.namespace, None);
        assert_eq!(
            s.fingerprint,
            Fingerprint::of(None, "", "PersistentVolume", "pvc-0a1b2c3d")
        );
    }

    #[test]
    fn a_lone_kind_or_name_hint_is_ignored() {
        for lone in [
            json!({"target_kind": "Deployment"}),
            json!({"target_name": "api"}),
            json!({"target_kind": "Deployment", "target_name": ""}),
            // Ignored means not checked either.
            json!({"target_kind": "not a kind"}),
        ] {
            let labels = with(
                json!({"alertname": "A", "pod": "api-0", "namespace": "shop"}),
                &lone,
            );
            let s = one(&webhook(vec![alert(labels)])).unwrap();
            assert_eq!(
                s.fingerprint,
                Fingerprint::of(None, "shop", "Pod", "api-0"),
                "{lone}"
            );
            // With no resource label to fall back on, there is no target.
            let labels = with(json!({"alertname": "A"}), &lone);
            assert_eq!(
                one(&webhook(vec![alert(labels)])),
                Err(Rejection::NoTargetResource),
                "{lone}"
            );
        }
    }

    #[test]
    fn target_namespace_comes_first() {
        let ns = |labels: Value| {
            one(&webhook(vec![alert(labels)]))
                .unwrap()
                .resource
                .namespace
        };
        assert_eq!(
            ns(
                json!({"alertname": "A", "target_kind": "Deployment", "target_name": "api",
                      "target_namespace": "shop", "exported_namespace": "b", "namespace": "c"})
            ),
            Some("shop".into())
        );
        // It names the namespace of an inferred target too.
        assert_eq!(
            ns(
                json!({"alertname": "A", "pod": "api-0", "target_namespace": "shop",
                      "namespace": "monitoring"})
            ),
            Some("shop".into())
        );
    }

    #[test]
    fn hints_are_validated_and_the_rejection_names_the_label() {
        for (hints, field) in [
            (
                json!({"target_kind": "apps/v1.Deployment", "target_name": "api"}),
                "labels.target_kind",
            ),
            (
                json!({"target_kind": "Deployment", "target_name": "API"}),
                "labels.target_name",
            ),
            (
                json!({"target_kind": "Deployment", "target_name": "api",
                       "target_namespace": "Shop"}),
                "labels.target_namespace",
            ),
            (
                json!({"pod": "api-0", "target_namespace": "-"}),
                "labels.target_namespace",
            ),
        ] {
            let labels = with(json!({"alertname": "A", "namespace": "shop"}), &hints);
            let r = one(&webhook(vec![alert(labels)]));
            assert_eq!(invalid_field(r), field, "{hints}");
        }
    }

    #[test]
    fn node_is_cluster_scoped() {
        let s = one(&webhook(vec![alert(
            json!({"alertname": "NodeDown", "node": "worker-1", "namespace": "monitoring"}),
        )]))
        .unwrap();
        assert_eq!(s.resource.namespace, None);
        assert_eq!(s.fingerprint, Fingerprint::of(None, "", "Node", "worker-1"));
        assert_eq!(
            s.fingerprint.as_str(),
            // printf %s ':Node:worker-1' | sha256sum
            "5811a14c33e6ea55be7f43355c2cffd48201fcbf3fc51c48a3f58e375e6f7ccc"
        );
        // exported_namespace does not make a node namespaced either.
        let s = one(&webhook(vec![alert(json!({
            "alertname": "NodeDown", "node": "worker-1", "namespace": "monitoring",
            "exported_namespace": "shop"
        }))]))
        .unwrap();
        assert_eq!(s.resource.namespace, None);
        assert_eq!(s.fingerprint, Fingerprint::of(None, "", "Node", "worker-1"));
    }

    #[test]
    fn cluster_label_prefixes_the_fingerprint() {
        let mut payload = webhook(vec![alert(deploy_labels())]);
        payload["commonLabels"] = json!({"cluster": "eu-1"});
        let s = one(&payload).unwrap();
        assert_eq!(s.cluster.as_deref(), Some("eu-1"));
        assert_eq!(
            s.fingerprint,
            Fingerprint::of(Some("eu-1"), "prod", "Deployment", "api")
        );
    }

    #[test]
    fn alertname_is_not_part_of_the_fingerprint() {
        let a = one(&webhook(vec![alert(deploy_labels())])).unwrap();
        let mut other = deploy_labels();
        other["alertname"] = json!("SomethingElse");
        let b = one(&webhook(vec![alert(other)])).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
    }

    #[test]
    fn batch_alerts_are_independent_and_in_order() {
        let payload = webhook(vec![
            alert(json!({"alertname": "A", "pod": "p1"})),
            alert(json!({"alertname": "B"})),
            alert(json!({"alertname": "C", "node": "n"})),
        ]);
        let all = run(&payload).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].as_ref().unwrap().name, "A");
        assert_eq!(all[1], Err(Rejection::NoTargetResource));
        assert_eq!(all[2].as_ref().unwrap().name, "C");
    }

    #[test]
    fn resolved_alerts_are_ingested() {
        let mut a = alert(deploy_labels());
        a["status"] = json!("resolved");
        a["endsAt"] = json!("2026-03-01T11:59:00Z");
        assert!(one(&webhook(vec![a])).is_ok());
    }

    // ---- whole-request rejections ----

    #[test]
    fn malformed_json_is_rejected() {
        for body in [
            &b"{"[..],
            b"",
            b"not json",
            b"[]",
            b"null",
            b"{\"alerts\": {}}",
            b"{\"alerts\": [1]}",
            b"{\"alerts\": [{\"labels\": {\"a\": 1}}]}",
            b"{\"alerts\": [{\"labels\": []}]}",
            b"{\"alerts\": [{\"startsAt\": 5}]}",
            b"{\"commonLabels\": \"x\", \"alerts\": []}",
            b"{\"truncatedAlerts\": \"0\", \"alerts\": []}",
            b"{\"alerts\": [], \"alerts\": []}",
            b"{\"alerts\": [{}]} trailing",
            b"\xff\xfe",
            b"{\"alerts\": [{\"status\": \"\xff\"}]}",
        ] {
            let mut owned = body.to_vec();
            let r = parse(&mut owned, None, now());
            assert!(
                matches!(r, Err(Rejection::MalformedJson(_))),
                "{:?} -> {r:?}",
                String::from_utf8_lossy(body)
            );
            assert!(
                matches!(
                    parse_with_serde_json(body, None, now()),
                    Err(Rejection::MalformedJson(_))
                ),
                "serde_json accepted {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn empty_object_and_empty_alerts_are_no_alerts() {
        for body in [&b"{}"[..], b"{\"alerts\": []}", b"{\"alerts\": null}"] {
            let mut owned = body.to_vec();
            assert_eq!(parse(&mut owned, None, now()), Err(Rejection::NoAlerts));
        }
    }

    #[test]
    fn deep_nesting_is_rejected_not_a_crash() {
        let depth = 100_000;
        let mut body = format!(
            "{{\"x\":{}{}, \"alerts\": []}}",
            "[".repeat(depth),
            "]".repeat(depth)
        )
        .into_bytes();
        assert!(matches!(
            parse(&mut body, None, now()),
            Err(Rejection::MalformedJson(_))
        ));
    }

    #[test]
    fn reused_parse_buffers_carry_nothing_over() {
        // The thread's simd-json buffers grow on a large body, then serve a malformed and a
        // small one: each result must be what a fresh parse gives.
        let big = webhook(
            (0..200)
                .map(|i| alert(json!({"alertname": "A", "pod": format!("p{i}")})))
                .collect(),
        );
        assert_eq!(run(&big).unwrap().len(), 200);
        let mut broken = br#"{"alerts": [{"labels": {"alertname": "#.to_vec();
        assert!(matches!(
            parse(&mut broken, None, now()),
            Err(Rejection::MalformedJson(_))
        ));
        let small = one(&webhook(vec![alert(
            json!({"alertname": "B", "node": "n1"}),
        )]))
        .unwrap();
        assert_eq!(
            (small.name.as_str(), small.resource.name.as_str()),
            ("B", "n1")
        );
    }

    // ---- freshness: X-Timestamp ----

    fn secs(ts: Timestamp) -> Vec<u8> {
        ts.as_second().to_string().into_bytes()
    }

    #[test]
    fn x_timestamp_edges() {
        let payload = webhook(vec![alert(deploy_labels())]);
        // `now` on a whole second so the header (whole seconds) can hit the edge exactly.
        let n = now();
        let ok = |ts: Timestamp| run_with(&payload, Some(&secs(ts)), n);
        assert!(ok(n).is_ok());
        assert!(ok(n - MAX_AGE).is_ok(), "exactly 5 min old passes");
        assert!(matches!(
            ok(n - MAX_AGE - SignedDuration::from_secs(1)),
            Err(Rejection::Freshness(_))
        ));
        assert!(ok(n + MAX_FUTURE).is_ok(), "exactly 2 min ahead passes");
        assert!(matches!(
            ok(n + MAX_FUTURE + SignedDuration::from_secs(1)),
            Err(Rejection::Freshness(_))
        ));
        // Sub-second precision of `now` counts: 1 ns past the edge fails.
        let later = n + SignedDuration::from_nanos(1);
        assert!(matches!(
            run_with(&payload, Some(&secs(n - MAX_AGE)), later),
            Err(Rejection::Freshness(_))
        ));
    }

    #[test]
    fn x_timestamp_must_be_an_integer() {
        let payload = webhook(vec![alert(deploy_labels())]);
        for bad in [&b"abc"[..], b"", b"1.0", b"-5", b"2026-03-01T12:00:00Z"] {
            assert!(matches!(
                run_with(&payload, Some(bad), now()),
                Err(Rejection::Freshness(_))
            ));
        }
    }

    #[test]
    fn x_timestamp_replaces_the_starts_at_check() {
        // A startsAt far in the future is only checked when there is no header.
        let mut a = alert(deploy_labels());
        a["startsAt"] = json!("2026-03-01T13:00:00Z");
        let payload = webhook(vec![a]);
        assert!(matches!(run(&payload), Err(Rejection::Freshness(_))));
        assert!(run_with(&payload, Some(&secs(now())), now()).unwrap()[0].is_ok());
    }

    #[test]
    fn x_timestamp_is_checked_before_the_body() {
        let mut body = b"not json".to_vec();
        let stale = secs(now() - SignedDuration::from_secs(3600));
        assert!(matches!(
            parse(&mut body, Some(&stale), now()),
            Err(Rejection::Freshness(_))
        ));
    }

    // ---- freshness: newest startsAt ----

    fn with_starts(starts: &[Option<&str>]) -> Value {
        webhook(
            starts
                .iter()
                .map(|s| {
                    let mut a = alert(deploy_labels());
                    match s {
                        Some(s) => a["startsAt"] = json!(s),
                        None => {
                            a.as_object_mut().unwrap().remove("startsAt");
                        }
                    }
                    a
                })
                .collect(),
        )
    }

    #[test]
    fn newest_starts_at_edges() {
        let at = |d: SignedDuration| (now() + d).to_string();
        let edge = at(MAX_FUTURE);
        assert!(
            run(&with_starts(&[Some(&edge)])).is_ok(),
            "exactly 2 min ahead passes"
        );
        let past = now() + MAX_FUTURE + SignedDuration::from_nanos(1);
        assert!(matches!(
            run(&with_starts(&[Some(&past.to_string())])),
            Err(Rejection::Freshness(_))
        ));
        // No age limit: a week-old alert is still firing.
        let old = at(SignedDuration::from_hours(-24 * 7));
        assert!(run(&with_starts(&[Some(&old)])).unwrap()[0].is_ok());
        // Only the newest counts.
        let future = at(SignedDuration::from_hours(1));
        assert!(matches!(
            run(&with_starts(&[Some(&old), Some(&future)])),
            Err(Rejection::Freshness(_))
        ));
    }

    #[test]
    fn starts_at_must_exist_somewhere() {
        for starts in [
            &[None][..],
            &[Some("0001-01-01T00:00:00Z")],
            &[Some("")],
            &[Some("garbage"), None],
        ] {
            assert!(
                matches!(run(&with_starts(starts)), Err(Rejection::Freshness(_))),
                "{starts:?}"
            );
        }
    }

    #[test]
    fn a_bad_starts_at_rejects_only_its_alert() {
        let all = run(&with_starts(&[
            Some("2026-03-01T11:00:00Z"),
            None,
            Some("garbage"),
        ]))
        .unwrap();
        assert!(all[0].is_ok());
        assert_eq!(all[1], Err(Rejection::MissingField("startsAt")));
        assert!(matches!(all[2], Err(Rejection::Freshness(_))));
    }

    #[test]
    fn starts_at_with_offset_and_fraction() {
        let s = one(&with_starts(&[Some("2026-03-01T12:58:00.123456789+01:00")])).unwrap();
        assert_eq!(
            s.firing_time,
            "2026-03-01T11:58:00.123456789Z"
                .parse::<Timestamp>()
                .unwrap()
        );
    }

    // ---- properties ----

    /// A value valid as a namespace and as an object name.
    fn label_value() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?"
    }

    /// `extra` labels (those that identify a resource left out) with `alertname`, `pod` and
    /// `namespace`: labels of an alert about pod `ns/pod`.
    fn pod_labels(extra: BTreeMap<String, String>, ns: &str, pod: &str) -> Vec<(String, String)> {
        let identifying = [
            "alertname",
            "pod",
            "deployment",
            "statefulset",
            "daemonset",
            "node",
            "service",
            "namespace",
            "exported_namespace",
            "cluster",
            "target_kind",
            "target_name",
            "target_namespace",
        ];
        let mut pairs: Vec<(String, String)> = extra
            .into_iter()
            .filter(|(k, _)| !identifying.contains(&k.as_str()))
            .collect();
        pairs.push(("alertname".into(), "A".into()));
        pairs.push(("pod".into(), pod.to_owned()));
        pairs.push(("namespace".into(), ns.to_owned()));
        pairs
    }

    /// `pairs` in an order drawn from `seed` (a deterministic xorshift shuffle).
    fn shuffled(pairs: &[(String, String)], seed: u64) -> Vec<(String, String)> {
        let mut shuffled = pairs.to_vec();
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        shuffled
    }

    proptest! {
        /// Label order and labels that do not identify the resource never change the
        /// fingerprint.
        #[test]
        fn fingerprint_ignores_label_order_and_irrelevant_labels(
            ns in label_value(),
            pod in label_value(),
            extra in proptest::collection::btree_map("[a-z_]{1,12}", label_value(), 0..8),
            seed in any::<u64>(),
        ) {
            let pairs = pod_labels(extra, &ns, &pod);
            let shuffled = shuffled(&pairs, seed);
            let body_of = |pairs: &[(String, String)]| {
                let labels: String = pairs
                    .iter()
                    .map(|(k, v)| format!("{k:?}:{v:?}"))
                    .collect::<Vec<_>>()
                    .join(",");
                format!(r#"{{"alerts":[{{"labels":{{{labels}}},"startsAt":"2026-03-01T11:00:00Z"}}]}}"#)
            };
            let fp = |pairs: &[(String, String)]| {
                let mut body = body_of(pairs).into_bytes();
                parse(&mut body, None, now()).unwrap().remove(0).unwrap().fingerprint
            };
            let expected = Fingerprint::of(None, &ns, "Pod", &pod);
            prop_assert_eq!(fp(&pairs), expected);
            prop_assert_eq!(fp(&shuffled), expected);
            prop_assert_eq!(fp(&[
                ("alertname".into(), "Other".into()),
                ("pod".into(), pod.clone()),
                ("namespace".into(), ns.clone()),
            ]), expected);
        }

        /// The delivery digest depends on the merged label set, not on the order the labels
        /// were written in nor on which of them came as common labels, and ignores what HA
        /// replicas' copies of one notification differ in; each field it covers changes it.
        #[test]
        fn delivery_ignores_label_order_and_follows_every_field_it_covers(
            ns in label_value(),
            pod in label_value(),
            extra in proptest::collection::btree_map("[a-z_]{1,12}", label_value(), 0..8),
            seed in any::<u64>(),
            common in any::<prop::sample::Index>(),
            starts in 0u32..3600,
            ends in 0u32..3600,
        ) {
            let pairs = pod_labels(extra, &ns, &pod);
            let shuffled = shuffled(&pairs, seed);
            let object = |pairs: &[(String, String)]| {
                let fields: Vec<String> = pairs.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
                format!("{{{}}}", fields.join(","))
            };
            let starts_at = |offset: u32| {
                let at = Timestamp::from_second(1_772_362_800 + i64::from(offset)).unwrap();
                at.to_string()
            };
            /// One alert as sent: its own labels, the common labels, startsAt, endsAt, status,
            /// and who sent it (what HA copies of one notification differ in).
            #[derive(Clone)]
            struct Sent<'a> {
                labels: &'a [(String, String)],
                common: &'a [(String, String)],
                starts: String,
                ends: String,
                status: &'a str,
                sender: &'a str,
            }
            let delivery = |a: &Sent<'_>| {
                let body = format!(
                    r#"{{"receiver":"{sender}","externalURL":"http://{sender}:9093","groupKey":"{sender}","commonLabels":{common},"alerts":[{{"status":"{status}","labels":{labels},"annotations":{{"value":"{sender}"}},"startsAt":"{starts}","endsAt":"{ends}","generatorURL":"http://{sender}/graph"}}]}}"#,
                    sender = a.sender,
                    common = object(a.common),
                    status = a.status,
                    labels = object(a.labels),
                    starts = a.starts,
                    ends = a.ends,
                );
                let mut body = body.into_bytes();
                parse(&mut body, None, now()).unwrap().remove(0).unwrap().delivery
            };
            let first = Sent {
                labels: &pairs,
                common: &[],
                starts: starts_at(starts),
                ends: starts_at(ends),
                status: "firing",
                sender: "am-0",
            };
            let expected = delivery(&first);
            // The same delivery: another order, labels moved to the common ones, another
            // Alertmanager's copy (receiver, URLs, group key, annotations).
            prop_assert_eq!(delivery(&Sent { labels: &shuffled, ..first.clone() }), expected);
            let split = common.index(pairs.len() + 1);
            prop_assert_eq!(
                delivery(&Sent { labels: &pairs[split..], common: &pairs[..split], ..first.clone() }),
                expected
            );
            prop_assert_eq!(delivery(&Sent { sender: "am-1", ..first.clone() }), expected);
            // A new one: each covered field.
            let mut renamed = pairs.clone();
            if let Some(alertname) = renamed.iter_mut().find(|(k, _)| k == "alertname") {
                alertname.1 = "B".into();
            }
            let mut more = pairs.clone();
            more.push(("Added".into(), "x".into()));
            let mut moved = pairs.clone();
            if let Some(target) = moved.iter_mut().find(|(k, _)| k == "pod") {
                target.1.push('x');
            }
            for other in [
                Sent { labels: &renamed, ..first.clone() },
                Sent { labels: &more, ..first.clone() },
                Sent { labels: &moved, ..first.clone() },
                Sent { starts: starts_at(starts + 1), ..first.clone() },
                Sent { ends: starts_at(ends + 1), ..first.clone() },
                Sent { ends: "0001-01-01T00:00:00Z".into(), ..first.clone() },
                Sent { status: "resolved", ..first.clone() },
            ] {
                prop_assert_ne!(delivery(&other), expected);
            }
        }

        /// The cluster label, wherever it comes from, changes the fingerprint.
        #[test]
        fn cluster_label_changes_the_fingerprint(cluster in label_value(), pod in label_value()) {
            let fp = |labels: Value| one(&webhook(vec![alert(labels)])).unwrap().fingerprint;
            let without = fp(json!({"alertname": "A", "pod": pod}));
            let with = fp(json!({"alertname": "A", "pod": pod, "cluster": cluster}));
            prop_assert_ne!(without, with);
            prop_assert_eq!(with, Fingerprint::of(Some(&cluster), "default", "Pod", &pod));
        }

        /// Whatever the target labels hold, an alert is either a signal whose target keeps to
        /// the Kubernetes name rules or a rejection naming a label; never a panic.
        #[test]
        fn arbitrary_target_labels_never_panic(
            name in any::<String>(),
            namespace in any::<String>(),
            exported in proptest::option::of(any::<String>()),
        ) {
            let mut labels = json!({"alertname": "A", "deployment": &name, "namespace": namespace});
            if let Some(exported) = exported {
                labels["exported_namespace"] = json!(exported);
            }
            match one(&webhook(vec![alert(labels)])) {
                Ok(s) => {
                    prop_assert!(target::check_name(&s.resource.name, "f").is_ok());
                    let ns = s.resource.namespace.unwrap();
                    prop_assert!(target::check_namespace(&ns, "f").is_ok());
                }
                Err(Rejection::InvalidField { field, .. }) => prop_assert!(
                    ["labels.deployment", "labels.namespace", "labels.exported_namespace"]
                        .contains(&field),
                    "{}", field
                ),
                Err(Rejection::NoTargetResource) => prop_assert!(name.is_empty()),
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        }

        /// Whatever the bytes, parsing returns; both decoders agree on what they accept.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut owned = bytes.clone();
            let _ = parse(&mut owned, None, now());
            let _ = parse_with_serde_json(&bytes, None, now());
        }
    }
}
