//! A core/v1 Event (DESIGN.md §2).
//!
//! `type` must be `Warning` or `Error`; `reason`, `involvedObject.kind` and
//! `involvedObject.name` are required and the target must be named as Kubernetes names things.
//! Name = `reason`, severity = `type`, resource = `involvedObject`.
//!
//! Timestamps come in two generations. The `core/v1` recorder (kubelet, most controllers)
//! writes `firstTimestamp`, `lastTimestamp` and `count`. The `events.k8s.io/v1` recorder
//! (kube-scheduler, newer controllers), read back through `core/v1`, leaves those null or
//! absent and writes `eventTime` (first observation, a MicroTime: RFC 3339 with microseconds)
//! and, for a repeating event, `series.lastObservedTime` and `series.count`. Both are accepted:
//! the replay guard checks the newest of the four timestamps, the firing time is
//! `firstTimestamp`, else `eventTime`, else that newest one, and the occurrence count is
//! `count`, else `series.count`.
//!
//! The [`Delivery`] digest covers the fingerprint, the Event's identity (`metadata.namespace`,
//! `name`, `uid`; `reason` and `type`), `count`, the four timestamps and `series.count`: what
//! a recorder changes when the Event repeats.
//!
//! The body is parsed once by simd-json into a borrowed DOM, which serves twice: the typed view
//! the rules read is deserialised from it (strings still borrowed from the body), and `raw` is
//! encoded from it, so the RR keeps every field of the Event (metadata, source, series...), not
//! only those declared here. An Event is one object per request, so the DOM costs little; the
//! Alertmanager adapter, whose alerts have a fixed schema, decodes straight into structs.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Deserialize;
use simd_json::prelude::Writable;

use super::wire::Str;
use crate::fingerprint::Fingerprint;
use crate::ingest::freshness::{self, check_not_future, check_not_stale};
use crate::ingest::target;
use crate::ingest::{Delivery, Rejection, SIGNAL_NAME_MAX_CHARS, Signal};
use crate::k8s::types::{ResourceRef, SignalSource, truncate_chars};

/// The fields of a core/v1 Event the gateway reads. Declared types are checked: a wrongly
/// typed value is malformed JSON.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    #[serde(borrow, rename = "type")]
    type_: Option<Str<'a>>,
    #[serde(borrow)]
    reason: Option<Str<'a>>,
    #[serde(borrow)]
    message: Option<Str<'a>>,
    #[serde(borrow)]
    metadata: Option<Metadata<'a>>,
    #[serde(borrow)]
    involved_object: Option<ObjectReference<'a>>,
    #[serde(borrow)]
    first_timestamp: Option<Str<'a>>,
    #[serde(borrow)]
    last_timestamp: Option<Str<'a>>,
    count: Option<i64>,
    #[serde(borrow)]
    source: Option<EventSource<'a>>,
    #[serde(borrow)]
    event_time: Option<Str<'a>>,
    #[serde(borrow)]
    series: Option<EventSeries<'a>>,
}

/// A repeating event's summary, as the `events.k8s.io/v1` recorder keeps it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventSeries<'a> {
    count: Option<i64>,
    #[serde(borrow)]
    last_observed_time: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow)]
    namespace: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    uid: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectReference<'a> {
    #[serde(borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    namespace: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    api_version: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct EventSource<'a> {
    #[serde(borrow)]
    component: Option<Str<'a>>,
    #[serde(borrow)]
    host: Option<Str<'a>>,
}

/// The namespace of a namespaced target when neither the object reference nor the Event names
/// one.
const DEFAULT_NAMESPACE: &str = "default";

/// Label and annotation keys the signal carries, the same the kubernaut Gateway writes, so the
/// remediation orchestrator can select Event-born RRs as it does today.
const LABEL_EVENT_SOURCE: &str = "kubernaut.io/event-source";
const LABEL_EVENT_TYPE: &str = "kubernaut.io/event-type";
const LABEL_RESOURCE_KIND: &str = "kubernaut.io/resource-kind";
const ANNOTATION_MESSAGE: &str = "kubernaut.io/event-message";
const ANNOTATION_COUNT: &str = "kubernaut.io/event-count";
const ANNOTATION_SOURCE_HOST: &str = "kubernaut.io/source-host";
const ANNOTATION_FIRST_TIMESTAMP: &str = "kubernaut.io/first-timestamp";
const ANNOTATION_LAST_TIMESTAMP: &str = "kubernaut.io/last-timestamp";

/// Parses one core/v1 Event.
///
/// Checks in order: JSON shape, `type`, required fields, timestamps. Freshness (DESIGN.md §2,
/// widened for the `events.k8s.io/v1` recorder): the newest of `lastTimestamp`,
/// `series.lastObservedTime`, `eventTime` and `firstTimestamp` must exist (null and Go's zero
/// time count as absent), be at most [`freshness::MAX_AGE`] old and at most
/// [`freshness::MAX_FUTURE`] ahead. Any of them present but not RFC 3339 is a rejection.
///
/// Namespace of the resource: `involvedObject.namespace`, else the Event's
/// `metadata.namespace`, else `default`; none for [`target::CLUSTER_SCOPED_KINDS`]. The kind,
/// the name and the namespace used must be Kubernetes names ([`target`]); a rejection names the
/// field that is not (`involvedObject.name`...).
pub fn parse(body: &mut [u8], now: Timestamp) -> Result<Signal, Rejection> {
    let malformed = |e: simd_json::Error| Rejection::MalformedJson(e.to_string());
    let dom = super::wire::with_simd_buffers(|buffers| {
        simd_json::to_borrowed_value_with_buffers(body, buffers)
    })
    .map_err(malformed)?;
    let event: Event<'_> = simd_json::serde::from_refborrowed_value(&dom).map_err(malformed)?;

    let event_type = non_empty(&event.type_).ok_or(Rejection::MissingField("type"))?;
    if event_type != "Warning" && event_type != "Error" {
        return Err(Rejection::UnsupportedEventType(event_type.to_owned()));
    }
    let reason = non_empty(&event.reason).ok_or(Rejection::MissingField("reason"))?;
    let object = event.involved_object.as_ref();
    let kind = object
        .and_then(|o| non_empty(&o.kind))
        .ok_or(Rejection::MissingField("involvedObject.kind"))?;
    let name = object
        .and_then(|o| non_empty(&o.name))
        .ok_or(Rejection::MissingField("involvedObject.name"))?;
    target::check_kind(kind, "involvedObject.kind")?;
    target::check_name(name, "involvedObject.name")?;

    let first = freshness::parse_rfc3339(event.first_timestamp.as_deref(), "firstTimestamp")?;
    let last = freshness::parse_rfc3339(event.last_timestamp.as_deref(), "lastTimestamp")?;
    let event_time = freshness::parse_rfc3339(event.event_time.as_deref(), "eventTime")?;
    let series = event.series.as_ref();
    let last_observed = freshness::parse_rfc3339(
        series.and_then(|s| s.last_observed_time.as_deref()),
        "series.lastObservedTime",
    )?;
    let newest = [last, last_observed, event_time, first]
        .into_iter()
        .flatten()
        .max()
        .ok_or_else(|| {
            Rejection::Freshness(
                "event has no timestamp: none of lastTimestamp, series.lastObservedTime, \
                 eventTime, firstTimestamp"
                    .into(),
            )
        })?;
    check_not_stale(newest, now, "event timestamp")?;
    check_not_future(newest, now, "event timestamp")?;
    let firing_time = first.or(event_time).unwrap_or(newest);

    let namespace = if target::is_cluster_scoped(kind) {
        None
    } else {
        let given = object
            .and_then(|o| non_empty(&o.namespace))
            .map(|ns| (ns, "involvedObject.namespace"))
            .or_else(|| {
                let meta = event.metadata.as_ref();
                meta.and_then(|m| non_empty(&m.namespace))
                    .map(|ns| (ns, "metadata.namespace"))
            });
        match given {
            Some((namespace, field)) => {
                target::check_namespace(namespace, field)?;
                Some(namespace)
            }
            None => Some(DEFAULT_NAMESPACE),
        }
    };
    let fingerprint = Fingerprint::of(None, namespace.unwrap_or(""), kind, name);
    // An Event object is updated in place when it repeats: its identity stays, and `count`
    // and `lastTimestamp` (`series` for the events.k8s.io/v1 recorder) move on. Reason and
    // type stand in for the identity when a hand-made Event carries no metadata.
    let meta = event.metadata.as_ref();
    let delivery = Delivery::digest(SignalSource::KubernetesEvents, &fingerprint)
        .text(
            "metadata.namespace",
            meta.and_then(|m| m.namespace.as_deref()),
        )
        .text("metadata.name", meta.and_then(|m| m.name.as_deref()))
        .text("metadata.uid", meta.and_then(|m| m.uid.as_deref()))
        .text("reason", Some(reason))
        .text("type", Some(event_type))
        .number("count", event.count)
        .time("firstTimestamp", first)
        .time("lastTimestamp", last)
        .time("eventTime", event_time)
        .number("series.count", series.and_then(|s| s.count))
        .time("series.lastObservedTime", last_observed)
        .finish();

    let mut labels = BTreeMap::new();
    labels.insert(LABEL_EVENT_TYPE.to_owned(), event_type.to_lowercase());
    labels.insert(LABEL_RESOURCE_KIND.to_owned(), kind.to_lowercase());
    let source = event.source.as_ref();
    if let Some(component) = source.and_then(|s| non_empty(&s.component)) {
        labels.insert(LABEL_EVENT_SOURCE.to_owned(), component.to_owned());
    }
    let mut annotations = BTreeMap::new();
    if let Some(message) = non_empty(&event.message) {
        annotations.insert(ANNOTATION_MESSAGE.to_owned(), message.to_owned());
    }
    // The `core/v1` recorder's `count`, else the `events.k8s.io/v1` recorder's `series.count`
    // (it leaves `count` out, or 0).
    let count = event
        .count
        .filter(|c| *c > 0)
        .or_else(|| series.and_then(|s| s.count).filter(|c| *c > 0));
    if let Some(count) = count {
        annotations.insert(ANNOTATION_COUNT.to_owned(), count.to_string());
    }
    if let Some(host) = source.and_then(|s| non_empty(&s.host)) {
        annotations.insert(ANNOTATION_SOURCE_HOST.to_owned(), host.to_owned());
    }
    if let Some(first) = first {
        annotations.insert(ANNOTATION_FIRST_TIMESTAMP.to_owned(), first.to_string());
    }
    if let Some(last) = last {
        annotations.insert(ANNOTATION_LAST_TIMESTAMP.to_owned(), last.to_string());
    }

    Ok(Signal {
        fingerprint,
        delivery,
        name: truncate_chars(reason, SIGNAL_NAME_MAX_CHARS).to_owned(),
        // Only `Warning` or `Error` get here: within the severity limit.
        severity: event_type.to_owned(),
        source: SignalSource::KubernetesEvents,
        resource: ResourceRef {
            kind: kind.to_owned(),
            name: name.to_owned(),
            namespace: namespace.map(str::to_owned),
            api_version: object
                .and_then(|o| non_empty(&o.api_version))
                .map(str::to_owned),
        },
        labelled: None,
        cluster: None,
        labels,
        annotations,
        firing_time,
        raw: dom.encode(),
        origin: Default::default(),
    })
}

fn non_empty<'s>(field: &'s Option<Str<'_>>) -> Option<&'s str> {
    field.as_deref().filter(|s| !s.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::ingest::freshness::{MAX_AGE, MAX_FUTURE};
    use jiff::SignedDuration;
    use serde_json::{Value, json};

    fn now() -> Timestamp {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    /// An Event as `kubectl get event -o json` prints it.
    fn event() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": "api-7d9f8b6c5-x2x4z.17f3a1b2c3d4e5f6",
                "namespace": "prod",
                "uid": "6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b",
                "resourceVersion": "123456",
                "creationTimestamp": "2026-03-01T11:58:00Z"
            },
            "involvedObject": {
                "kind": "Pod",
                "namespace": "prod",
                "name": "api-7d9f8b6c5-x2x4z",
                "uid": "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
                "apiVersion": "v1",
                "resourceVersion": "98765",
                "fieldPath": "spec.containers{api}"
            },
            "reason": "BackOff",
            "message": "Back-off restarting failed container api in pod api-7d9f8b6c5-x2x4z",
            "source": {"component": "kubelet", "host": "worker-1"},
            "firstTimestamp": "2026-03-01T11:58:00Z",
            "lastTimestamp": "2026-03-01T11:59:30Z",
            "count": 7,
            "type": "Warning",
            "eventTime": null,
            "reportingComponent": "kubelet",
            "reportingInstance": "worker-1"
        })
    }

    fn run(payload: &Value) -> Result<Signal, Rejection> {
        run_at(payload, now())
    }

    fn run_at(payload: &Value, now: Timestamp) -> Result<Signal, Rejection> {
        let mut body = serde_json::to_vec(payload).unwrap();
        parse(&mut body, now)
    }

    fn without(mut v: Value, path: &[&str]) -> Value {
        let (last, parents) = path.split_last().unwrap();
        let mut cur = &mut v;
        for p in parents {
            cur = &mut cur[*p];
        }
        cur.as_object_mut().unwrap().remove(*last);
        v
    }

    #[test]
    fn a_realistic_event_becomes_a_signal() {
        let s = run(&event()).unwrap();
        assert_eq!(s.name, "BackOff");
        assert_eq!(s.severity, "Warning");
        assert_eq!(s.source, SignalSource::KubernetesEvents);
        assert_eq!(
            s.resource,
            ResourceRef {
                kind: "Pod".into(),
                name: "api-7d9f8b6c5-x2x4z".into(),
                namespace: Some("prod".into()),
                api_version: Some("v1".into()),
            }
        );
        assert_eq!(
            s.fingerprint,
            Fingerprint::of(None, "prod", "Pod", "api-7d9f8b6c5-x2x4z")
        );
        assert_eq!(s.firing_time, "2026-03-01T11:58:00Z".parse().unwrap());
        assert_eq!(s.cluster, None);
        assert_eq!(s.labels[LABEL_EVENT_TYPE], "warning");
        assert_eq!(s.labels[LABEL_RESOURCE_KIND], "pod");
        assert_eq!(s.labels[LABEL_EVENT_SOURCE], "kubelet");
        assert_eq!(s.annotations[ANNOTATION_COUNT], "7");
        assert_eq!(s.annotations[ANNOTATION_SOURCE_HOST], "worker-1");
        assert!(s.annotations[ANNOTATION_MESSAGE].starts_with("Back-off"));
    }

    #[test]
    fn the_delivery_moves_on_with_the_event_and_not_otherwise() {
        let delivery = |e: &Value| run(e).unwrap().delivery;
        let first = delivery(&event());
        // A verbatim resend, another field order, another message or reporter: the same.
        assert_eq!(delivery(&event()), first);
        // Written by hand: serde_json's map would sort the keys again.
        let fields: Vec<String> = event()
            .as_object()
            .unwrap()
            .iter()
            .rev()
            .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
            .collect();
        let mut body = format!("{{{}}}", fields.join(",")).into_bytes();
        assert_eq!(parse(&mut body, now()).unwrap().delivery, first);
        let mut e = event();
        e["message"] = json!("Back-off restarting failed container api (again)");
        e["reportingInstance"] = json!("worker-2");
        assert_eq!(delivery(&e), first);
        // The Event repeated, or another Event: a new delivery.
        let changed = |path: &[&str], value: Value| {
            let mut e = event();
            let (last, parents) = path.split_last().unwrap();
            let mut cur = &mut e;
            for p in parents {
                cur = &mut cur[*p];
            }
            cur[*last] = value;
            delivery(&e)
        };
        for (path, value) in [
            (&["count"][..], json!(8)),
            (&["lastTimestamp"], json!("2026-03-01T11:59:45Z")),
            (&["firstTimestamp"], json!("2026-03-01T11:57:00Z")),
            (&["eventTime"], json!("2026-03-01T11:58:00.000001Z")),
            (
                &["series"],
                json!({"count": 2, "lastObservedTime": "2026-03-01T11:59:30.000000Z"}),
            ),
            (
                &["metadata", "name"],
                json!("api-7d9f8b6c5-x2x4z.17f3a1b2c3d4e5f7"),
            ),
            (
                &["metadata", "uid"],
                json!("6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5c"),
            ),
            (&["reason"], json!("Unhealthy")),
            (&["type"], json!("Error")),
            (&["involvedObject", "name"], json!("api-7d9f8b6c5-y3y5a")),
        ] {
            assert_ne!(changed(path, value.clone()), first, "{path:?} = {value}");
        }
        // The events.k8s.io/v1 recorder moves series on instead.
        let mut v1 = event();
        v1["series"] = json!({"count": 2, "lastObservedTime": "2026-03-01T11:59:30.000000Z"});
        let series = delivery(&v1);
        v1["series"]["count"] = json!(3);
        assert_ne!(delivery(&v1), series);
        v1["series"]["count"] = json!(2);
        v1["series"]["lastObservedTime"] = json!("2026-03-01T11:59:40.000000Z");
        assert_ne!(delivery(&v1), series);
    }

    #[test]
    fn raw_is_the_whole_event_as_compact_json() {
        let s = run(&event()).unwrap();
        assert!(!s.raw.contains('\n') && !s.raw.contains(": "));
        assert_eq!(serde_json::from_str::<Value>(&s.raw).unwrap(), event());
    }

    #[test]
    fn error_events_are_accepted() {
        let mut e = event();
        e["type"] = json!("Error");
        assert_eq!(run(&e).unwrap().severity, "Error");
    }

    #[test]
    fn normal_and_other_types_are_rejected() {
        for t in ["Normal", "warning", "Info"] {
            let mut e = event();
            e["type"] = json!(t);
            assert_eq!(run(&e), Err(Rejection::UnsupportedEventType(t.into())));
        }
        assert_eq!(
            run(&without(event(), &["type"])),
            Err(Rejection::MissingField("type"))
        );
    }

    #[test]
    fn required_fields() {
        for (path, field) in [
            (&["reason"][..], "reason"),
            (&["involvedObject", "kind"], "involvedObject.kind"),
            (&["involvedObject", "name"], "involvedObject.name"),
            (&["involvedObject"], "involvedObject.kind"),
        ] {
            assert_eq!(
                run(&without(event(), path)),
                Err(Rejection::MissingField(field))
            );
        }
        let mut e = event();
        e["reason"] = json!("");
        assert_eq!(run(&e), Err(Rejection::MissingField("reason")));
    }

    #[test]
    fn malformed_or_wrongly_typed_json_is_rejected() {
        let mut wrong_reason = event();
        wrong_reason["reason"] = json!(42);
        let mut wrong_count = event();
        wrong_count["count"] = json!("7");
        let mut wrong_object = event();
        wrong_object["involvedObject"] = json!("pod/api");
        for payload in [wrong_reason, wrong_count, wrong_object] {
            assert!(matches!(run(&payload), Err(Rejection::MalformedJson(_))));
        }
        for body in [&b"{"[..], b"", b"[]", b"null", b"\"Warning\"", b"{} {}"] {
            let mut owned = body.to_vec();
            assert!(matches!(
                parse(&mut owned, now()),
                Err(Rejection::MalformedJson(_))
            ));
        }
    }

    #[test]
    fn namespace_precedence() {
        let ns = |e: Value| run(&e).unwrap().resource.namespace;
        assert_eq!(ns(event()), Some("prod".into()));
        let mut e = without(event(), &["involvedObject", "namespace"]);
        e["metadata"]["namespace"] = json!("from-meta");
        assert_eq!(ns(e.clone()), Some("from-meta".into()));
        assert_eq!(
            ns(without(e, &["metadata", "namespace"])),
            Some("default".into())
        );
    }

    #[test]
    fn node_events_are_cluster_scoped() {
        let mut e = event();
        e["involvedObject"] = json!({"kind": "Node", "name": "worker-1", "uid": "worker-1"});
        e["metadata"]["namespace"] = json!("default");
        e["reason"] = json!("NodeNotReady");
        let s = run(&e).unwrap();
        assert_eq!(s.resource.namespace, None);
        assert_eq!(s.resource.api_version, None);
        assert_eq!(
            s.fingerprint.as_str(),
            "5811a14c33e6ea55be7f43355c2cffd48201fcbf3fc51c48a3f58e375e6f7ccc"
        );
    }

    #[test]
    fn reason_is_not_part_of_the_fingerprint() {
        let mut e = event();
        e["reason"] = json!("Unhealthy");
        assert_eq!(
            run(&e).unwrap().fingerprint,
            run(&event()).unwrap().fingerprint
        );
    }

    /// The field a rejection names, when it is an invalid field.
    fn invalid_field(r: Result<Signal, Rejection>) -> &'static str {
        match r {
            Err(Rejection::InvalidField { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn long_values() {
        let mut e = event();
        e["reason"] = json!("R".repeat(300));
        assert_eq!(run(&e).unwrap().name.len(), SIGNAL_NAME_MAX_CHARS);
        let mut e = event();
        e["involvedObject"]["name"] = json!("n".repeat(254));
        assert_eq!(invalid_field(run(&e)), "involvedObject.name");
        let mut e = event();
        e["involvedObject"]["kind"] = json!("K".repeat(64));
        assert_eq!(invalid_field(run(&e)), "involvedObject.kind");
    }

    #[test]
    fn the_target_must_be_named_as_kubernetes_names_things() {
        for (path, value, field) in [
            (
                &["involvedObject", "name"][..],
                "Api-0",
                "involvedObject.name",
            ),
            (&["involvedObject", "name"], "api_0", "involvedObject.name"),
            (
                &["involvedObject", "kind"],
                "apps/v1 Pod",
                "involvedObject.kind",
            ),
            (&["involvedObject", "kind"], "9Pod", "involvedObject.kind"),
            (
                &["involvedObject", "namespace"],
                "Prod",
                "involvedObject.namespace",
            ),
        ] {
            let mut e = event();
            e[path[0]][path[1]] = json!(value);
            assert_eq!(invalid_field(run(&e)), field, "{value:?}");
        }
        // A namespace taken from the Event's metadata is named so.
        let mut e = without(event(), &["involvedObject", "namespace"]);
        e["metadata"]["namespace"] = json!("prod.eu");
        assert_eq!(invalid_field(run(&e)), "metadata.namespace");
        // The metadata namespace is not read, nor checked, when the object names its own...
        let mut e = event();
        e["metadata"]["namespace"] = json!("Not_Used");
        assert!(run(&e).is_ok());
        // ...nor for a cluster-scoped kind.
        let mut e = event();
        e["involvedObject"] = json!({"kind": "Node", "name": "worker-1", "namespace": "X_"});
        e["metadata"]["namespace"] = json!("default");
        assert_eq!(run(&e).unwrap().resource.namespace, None);
    }

    fn at(d: SignedDuration) -> String {
        (now() + d).to_string()
    }

    fn with_times(first: Option<String>, last: Option<String>) -> Value {
        let mut e = event();
        e["firstTimestamp"] = first.map_or(Value::Null, Value::String);
        e["lastTimestamp"] = last.map_or(Value::Null, Value::String);
        e
    }

    #[test]
    fn freshness_uses_the_newest_timestamp() {
        let old = Some(at(SignedDuration::from_hours(-1)));
        let fresh = Some(at(SignedDuration::from_secs(-10)));
        // Recurring event: first seen an hour ago, last seen now. Fresh.
        let s = run(&with_times(old.clone(), fresh.clone())).unwrap();
        assert_eq!(s.firing_time, now() - SignedDuration::from_hours(1));
        // Both an hour old: stale.
        assert!(matches!(
            run(&with_times(old.clone(), old.clone())),
            Err(Rejection::Freshness(_))
        ));
        // The newest counts, whichever field holds it.
        assert!(run(&with_times(fresh.clone(), old.clone())).is_ok());
        // Only firstTimestamp: it is the one checked, and the firing time.
        assert!(run(&with_times(fresh.clone(), None)).is_ok());
        assert!(matches!(
            run(&with_times(old.clone(), None)),
            Err(Rejection::Freshness(_))
        ));
        // Only lastTimestamp: firing time falls back to it.
        let s = run(&with_times(None, fresh)).unwrap();
        assert_eq!(s.firing_time, now() - SignedDuration::from_secs(10));
    }

    #[test]
    fn freshness_edges() {
        let check = |d: SignedDuration| run(&with_times(None, Some(at(d))));
        assert!(check(-MAX_AGE).is_ok(), "exactly 5 min old passes");
        assert!(matches!(
            check(-MAX_AGE - SignedDuration::from_nanos(1)),
            Err(Rejection::Freshness(_))
        ));
        assert!(check(MAX_FUTURE).is_ok(), "exactly 2 min ahead passes");
        assert!(matches!(
            check(MAX_FUTURE + SignedDuration::from_nanos(1)),
            Err(Rejection::Freshness(_))
        ));
    }

    #[test]
    fn timestamps_must_exist_and_parse() {
        for (first, last) in [
            (None, None),
            (Some("0001-01-01T00:00:00Z".to_owned()), None),
            (Some("".to_owned()), Some("".to_owned())),
            (None, Some("not a time".to_owned())),
            (
                Some("not a time".to_owned()),
                Some(at(SignedDuration::ZERO)),
            ),
        ] {
            assert!(
                matches!(
                    run(&with_times(first.clone(), last.clone())),
                    Err(Rejection::Freshness(_))
                ),
                "{first:?} {last:?}"
            );
        }
    }

    // ---- Events written by the events.k8s.io/v1 recorder ----

    /// kube-scheduler's `FailedScheduling` as its `events.k8s.io/v1` recorder writes it, read
    /// through `core/v1` (`kubectl get event -o json`): `firstTimestamp` and `lastTimestamp`
    /// null, no `count`, an empty `source`, `eventTime` a MicroTime, and a `series` because the
    /// scheduler has retried the pod. `metadata.name` is the pod's name and the first
    /// observation in hex nanoseconds, as that recorder names its Events; the reporting
    /// controller is `reportingComponent` on the `core/v1` wire.
    fn scheduler_event() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": "trainer-1.1898b5c4d7ff5ea8",
                "namespace": "ml",
                "uid": "3d1f6b2a-8c4e-4f7a-9b0d-2e5c7a9f1b3d",
                "resourceVersion": "9912301",
                "creationTimestamp": "2026-03-01T11:58:30Z"
            },
            "involvedObject": {
                "kind": "Pod",
                "namespace": "ml",
                "name": "trainer-1",
                "uid": "7a9c1e3f-5b2d-4c6e-8f0a-1b3d5f7a9c2e",
                "apiVersion": "v1",
                "resourceVersion": "771302"
            },
            "reason": "FailedScheduling",
            "message": "0/6 nodes are available: 3 Insufficient nvidia.com/gpu, 3 node(s) had \
                        untolerated taint {node-role.kubernetes.io/control-plane: }. \
                        preemption: 0/6 nodes are available: 3 No preemption victims found \
                        for incoming pod, 3 Preemption is not helpful for scheduling.",
            "source": {},
            "firstTimestamp": null,
            "lastTimestamp": null,
            "type": "Warning",
            "eventTime": "2026-03-01T11:58:30.412345Z",
            "series": {"count": 4, "lastObservedTime": "2026-03-01T11:59:41.998877Z"},
            "action": "Scheduling",
            "reportingComponent": "default-scheduler",
            "reportingInstance": "default-scheduler-control-plane-1"
        })
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn an_events_v1_scheduler_event_becomes_a_signal() {
        let s = run(&scheduler_event()).unwrap();
        assert_eq!(s.name, "FailedScheduling");
        assert_eq!(s.severity, "Warning");
        assert_eq!(
            s.resource,
            ResourceRef {
                kind: "Pod".into(),
                name: "trainer-1".into(),
                namespace: Some("ml".into()),
                api_version: Some("v1".into()),
            }
        );
        // Fingerprint rules unchanged: the target only.
        assert_eq!(
            s.fingerprint,
            Fingerprint::of(None, "ml", "Pod", "trainer-1")
        );
        // Firing time: eventTime, to the microsecond.
        assert_eq!(s.firing_time, ts("2026-03-01T11:58:30.412345Z"));
        assert_eq!(s.annotations[ANNOTATION_COUNT], "4");
        assert!(s.annotations[ANNOTATION_MESSAGE].starts_with("0/6 nodes are available"));
        // The null legacy fields are absent, not empty.
        assert!(!s.annotations.contains_key(ANNOTATION_FIRST_TIMESTAMP));
        assert!(!s.annotations.contains_key(ANNOTATION_LAST_TIMESTAMP));
        assert!(!s.labels.contains_key(LABEL_EVENT_SOURCE));
        assert_eq!(
            serde_json::from_str::<Value>(&s.raw).unwrap(),
            scheduler_event()
        );
    }

    #[test]
    fn series_last_observed_time_keeps_an_event_fresh() {
        let e = scheduler_event();
        let observed = ts("2026-03-01T11:59:41.998877Z");
        // eventTime is 5 min 30 s old here, the last observation 4 min 18 s: fresh, and the
        // firing time is still the first observation.
        let s = run_at(&e, ts("2026-03-01T12:04:00Z")).unwrap();
        assert_eq!(s.firing_time, ts("2026-03-01T11:58:30.412345Z"));
        // Exactly 5 min after the last observation passes, 1 µs more does not.
        assert!(run_at(&e, observed + MAX_AGE).is_ok());
        assert!(matches!(
            run_at(&e, observed + MAX_AGE + SignedDuration::from_micros(1)),
            Err(Rejection::Freshness(_))
        ));
        // Too far ahead is judged on the same, newest, timestamp.
        assert!(run_at(&e, observed - MAX_FUTURE).is_ok());
        assert!(matches!(
            run_at(&e, observed - MAX_FUTURE - SignedDuration::from_micros(1)),
            Err(Rejection::Freshness(_))
        ));
    }

    #[test]
    fn a_single_events_v1_event_has_only_event_time() {
        let mut e = scheduler_event();
        e["series"] = Value::Null;
        let s = run(&e).unwrap();
        assert_eq!(s.firing_time, ts("2026-03-01T11:58:30.412345Z"));
        assert!(!s.annotations.contains_key(ANNOTATION_COUNT));
        // Its freshness is eventTime's.
        assert!(matches!(
            run_at(&e, ts("2026-03-01T12:03:31Z")),
            Err(Rejection::Freshness(_))
        ));
        let s = run(&without(e, &["series"])).unwrap();
        assert!(!s.annotations.contains_key(ANNOTATION_COUNT));
    }

    #[test]
    fn firing_time_is_first_timestamp_else_event_time_else_the_newest() {
        let mut e = scheduler_event();
        e["firstTimestamp"] = json!("2026-03-01T11:57:00Z");
        assert_eq!(run(&e).unwrap().firing_time, ts("2026-03-01T11:57:00Z"));
        // Neither: the newest there is (series.lastObservedTime).
        let mut e = scheduler_event();
        e["eventTime"] = Value::Null;
        assert_eq!(
            run(&e).unwrap().firing_time,
            ts("2026-03-01T11:59:41.998877Z")
        );
        // All four: the newest decides freshness (lastTimestamp alone would be stale here),
        // firstTimestamp the firing time.
        let mut e = event();
        e["eventTime"] = json!("2026-03-01T11:58:00.000001Z");
        e["series"] = json!({"count": 7, "lastObservedTime": "2026-03-01T11:59:59.999999Z"});
        let s = run_at(&e, ts("2026-03-01T12:04:59.999999Z")).unwrap();
        assert_eq!(s.firing_time, ts("2026-03-01T11:58:00Z"));
    }

    #[test]
    fn count_is_count_else_series_count() {
        let count = |e: &Value| run(e).unwrap().annotations.get(ANNOTATION_COUNT).cloned();
        let mut e = event();
        e["series"] = json!({"count": 9, "lastObservedTime": "2026-03-01T11:59:30Z"});
        assert_eq!(count(&e), Some("7".into()));
        e["count"] = json!(0);
        assert_eq!(count(&e), Some("9".into()));
        let mut e = without(e, &["count"]);
        assert_eq!(count(&e), Some("9".into()));
        e["series"]["count"] = json!(0);
        assert_eq!(count(&e), None);
    }

    #[test]
    fn new_timestamps_must_parse_and_be_typed() {
        let mut e = scheduler_event();
        e["eventTime"] = json!("yesterday");
        assert!(matches!(run(&e), Err(Rejection::Freshness(m)) if m.contains("eventTime")));
        let mut e = scheduler_event();
        e["series"]["lastObservedTime"] = json!("2026-03-01 11:59");
        assert!(
            matches!(run(&e), Err(Rejection::Freshness(m)) if m.contains("series.lastObservedTime"))
        );
        for (field, value) in [
            ("series", json!([1])),
            ("series", json!({"count": "4"})),
            ("eventTime", json!(1_772_366_310)),
        ] {
            let mut e = scheduler_event();
            e[field] = value;
            assert!(
                matches!(run(&e), Err(Rejection::MalformedJson(_))),
                "{field}"
            );
        }
        // Null eventTime and series with nothing else: no timestamp at all.
        let mut e = scheduler_event();
        e["eventTime"] = Value::Null;
        e["series"] = Value::Null;
        assert!(matches!(run(&e), Err(Rejection::Freshness(m)) if m.contains("no timestamp")));
    }

    #[test]
    fn deep_nesting_is_rejected_not_a_crash() {
        let depth = 100_000;
        let mut body = format!("{{\"x\":{}{}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
        assert!(matches!(
            parse(&mut body, now()),
            Err(Rejection::MalformedJson(_))
        ));
        // Just under simd-json's depth limit is accepted as JSON and handled.
        let depth = 1000;
        let json = serde_json::to_string(&event()).unwrap();
        let mut body = format!(
            "{}, \"deep\": {}{}}}",
            &json[..json.len() - 1],
            "[".repeat(depth),
            "]".repeat(depth)
        )
        .into_bytes();
        assert!(parse(&mut body, now()).is_ok());
    }
}
