//! What is sent: which fingerprints each request carries, on which route, and the wire bodies.
//!
//! Every choice is drawn from a seeded generator, so a run is reproducible from its seed. The
//! mix is decided in the scheduling task (cheap, sequential state); the bodies are built in the
//! request task, at send time, so that their timestamps are fresh (the gateway rejects stale
//! Events).
//!
//! Fingerprint indices: the steady pool is `0..fingerprints`, the storm pool follows it. Each
//! index names one target resource, `lt-<run>-<index>` (or `lt-<run>-s<index>` in the storm
//! pool), so each index is one fingerprint and one RemediationRequest.

use jiff::{Timestamp, Unit};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Alert names cycled through; the fingerprint ignores them (DESIGN.md §3), so they vary freely.
const ALERT_NAMES: [&str; 6] = [
    "KubePodCrashLooping",
    "KubePodNotReady",
    "HighMemoryUsage",
    "HighCPUThrottling",
    "KubeContainerWaiting",
    "TargetDown",
];

/// Event reasons cycled through, for the Event route.
const EVENT_REASONS: [&str; 4] = ["BackOff", "OOMKilling", "Unhealthy", "FailedMount"];

/// Severities cycled through.
const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];

/// A small, fast, seedable generator (SplitMix64). Statistical quality is ample for choosing
/// fingerprints, and it keeps the tool free of a `rand` dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator that yields the same sequence for the same seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n`; `n` must be positive.
    pub fn below(&mut self, n: u32) -> u32 {
        // Multiply-shift: unbiased enough for n far below 2^32.
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }
}

/// Which gateway route a request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /api/v1/signals/prometheus`, an Alertmanager v4 webhook.
    Alertmanager,
    /// `POST /api/v1/signals/kubernetes-event`, one core/v1 Event.
    Event,
}

impl Route {
    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Route::Alertmanager => "/api/v1/signals/prometheus",
            Route::Event => "/api/v1/signals/kubernetes-event",
        }
    }
}

/// One signal of a request: the target resource (by fingerprint index) and a name variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedSignal {
    /// Fingerprint index (see the module docs).
    pub fp: u32,
    /// Picks the alert name / Event reason and severity; not part of the fingerprint.
    pub variant: u32,
    /// True when this is the first time the generator sends this fingerprint.
    pub first: bool,
}

/// One request to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestPlan {
    /// Route.
    pub route: Route,
    /// One signal for an Event, one or more alerts for a webhook.
    pub signals: Vec<PlannedSignal>,
}

/// Chooses fingerprints from the steady pool so that a given fraction of signals repeats a
/// fingerprint already sent. First sightings are taken in order from the unseen part of the
/// pool; duplicates uniformly from the seen part. When the pool runs out of unseen
/// fingerprints every further signal is a duplicate (the report shows the achieved ratio).
#[derive(Clone, Debug)]
pub struct DuplicatePicker {
    pool: u32,
    seen: u32,
    duplicate_ratio: f64,
}

impl DuplicatePicker {
    /// A picker over `pool` fingerprints (indices `0..pool`).
    pub fn new(pool: u32, duplicate_ratio: f64) -> Self {
        Self {
            pool,
            seen: 0,
            duplicate_ratio,
        }
    }

    /// The next fingerprint index and whether it is a first sighting.
    pub fn pick(&mut self, rng: &mut Rng) -> (u32, bool) {
        let roll = rng.next_f64();
        let want_new = self.seen == 0 || roll >= self.duplicate_ratio;
        if want_new && self.seen < self.pool {
            self.seen += 1;
            (self.seen - 1, true)
        } else {
            (rng.below(self.seen.max(1)), false)
        }
    }

    /// Fingerprints sent at least once so far.
    pub fn seen(&self) -> u32 {
        self.seen
    }
}

/// How a stream picks fingerprints.
#[derive(Clone, Debug)]
pub enum Picker {
    /// Steady traffic: a target duplicate ratio over a growing set of seen fingerprints.
    Duplicates(DuplicatePicker),
    /// A storm: uniform over a fixed, small pool `base..base + size`.
    Uniform {
        /// First index of the pool.
        base: u32,
        /// Pool size.
        size: u32,
        /// Which members were already sent (to mark first sightings).
        seen: Vec<bool>,
    },
}

impl Picker {
    fn pick(&mut self, rng: &mut Rng) -> (u32, bool) {
        match self {
            Picker::Duplicates(p) => p.pick(rng),
            Picker::Uniform { base, size, seen } => {
                let i = rng.below(*size);
                let first = !std::mem::replace(&mut seen[i as usize], true);
                (*base + i, first)
            }
        }
    }
}

/// Produces the request sequence of one stream.
#[derive(Clone, Debug)]
pub struct StreamGen {
    rng: Rng,
    picker: Picker,
    alerts_per_payload: u32,
    event_share: f64,
}

impl StreamGen {
    /// A generator for steady traffic.
    pub fn steady(
        seed: u64,
        pool: u32,
        duplicate_ratio: f64,
        alerts_per_payload: u32,
        event_share: f64,
    ) -> Self {
        Self {
            rng: Rng::new(seed),
            picker: Picker::Duplicates(DuplicatePicker::new(pool, duplicate_ratio)),
            alerts_per_payload: alerts_per_payload.max(1),
            event_share,
        }
    }

    /// A generator for a storm over `size` fingerprints starting at index `base`.
    pub fn storm(
        seed: u64,
        base: u32,
        size: u32,
        alerts_per_payload: u32,
        event_share: f64,
    ) -> Self {
        Self {
            rng: Rng::new(seed),
            picker: Picker::Uniform {
                base,
                size: size.max(1),
                seen: vec![false; size.max(1) as usize],
            },
            alerts_per_payload: alerts_per_payload.max(1),
            event_share,
        }
    }

    /// The next request.
    pub fn next_request(&mut self) -> RequestPlan {
        let route = if self.event_share > 0.0 && self.rng.next_f64() < self.event_share {
            Route::Event
        } else {
            Route::Alertmanager
        };
        let n = if route == Route::Event {
            1
        } else {
            self.alerts_per_payload
        };
        let signals = (0..n)
            .map(|_| {
                let (fp, first) = self.picker.pick(&mut self.rng);
                PlannedSignal {
                    fp,
                    variant: self.rng.below(1 << 16),
                    first,
                }
            })
            .collect();
        RequestPlan { route, signals }
    }

    /// Steady pool fingerprints sent so far (`None` for a storm stream).
    pub fn fingerprints_seen(&self) -> Option<u32> {
        match &self.picker {
            Picker::Duplicates(p) => Some(p.seen()),
            Picker::Uniform { .. } => None,
        }
    }
}

/// Kind of the target resource named by the labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// `pod` label / `Pod` involvedObject.
    Pod,
    /// `deployment` label / `Deployment` involvedObject.
    Deployment,
}

impl TargetKind {
    /// The Kubernetes kind, as it enters the fingerprint.
    pub fn kind(self) -> &'static str {
        match self {
            TargetKind::Pod => "Pod",
            TargetKind::Deployment => "Deployment",
        }
    }

    /// The Alertmanager label naming the resource.
    pub fn label(self) -> &'static str {
        match self {
            TargetKind::Pod => "pod",
            TargetKind::Deployment => "deployment",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            TargetKind::Pod => "v1",
            TargetKind::Deployment => "apps/v1",
        }
    }
}

/// Lowercase hex SHA-256 of `"<namespace>:<Kind>:<name>"` (DESIGN.md §3, no cluster label).
pub fn fingerprint(namespace: &str, kind: &str, name: &str) -> String {
    let mut h = Sha256::new();
    h.update(namespace.as_bytes());
    h.update(b":");
    h.update(kind.as_bytes());
    h.update(b":");
    h.update(name.as_bytes());
    hex::encode(h.finalize())
}

/// Names the target resources of a run and renders the wire bodies.
#[derive(Clone, Debug)]
pub struct Naming {
    /// Distinguishes this run's resources from earlier runs against the same gateway.
    pub run_id: String,
    /// The `namespace` label of every signal (the workload's namespace, not the RRs').
    pub namespace: String,
    /// Pod or Deployment.
    pub kind: TargetKind,
    /// Size of the steady pool; indices at or above it belong to the storm pool.
    pub steady_pool: u32,
}

impl Naming {
    /// The target resource name of fingerprint index `fp`.
    pub fn resource_name(&self, fp: u32) -> String {
        if fp < self.steady_pool {
            format!("lt-{}-{fp}", self.run_id)
        } else {
            format!("lt-{}-s{}", self.run_id, fp - self.steady_pool)
        }
    }

    /// The fingerprint the gateway computes for index `fp`.
    pub fn fingerprint(&self, fp: u32) -> String {
        fingerprint(&self.namespace, self.kind.kind(), &self.resource_name(fp))
    }

    /// Signal name (alert name or Event reason) for a signal.
    pub fn signal_name(route: Route, s: &PlannedSignal) -> &'static str {
        match route {
            Route::Alertmanager => ALERT_NAMES[s.variant as usize % ALERT_NAMES.len()],
            Route::Event => EVENT_REASONS[s.variant as usize % EVENT_REASONS.len()],
        }
    }

    /// Severity label for an alert.
    pub fn severity(s: &PlannedSignal) -> &'static str {
        SEVERITIES[(s.variant as usize / 7) % SEVERITIES.len()]
    }

    /// The labels of one alert, as the gateway will see them.
    pub fn alert_labels(&self, s: &PlannedSignal) -> Value {
        let mut labels = serde_json::Map::new();
        labels.insert(
            "alertname".into(),
            Self::signal_name(Route::Alertmanager, s).into(),
        );
        labels.insert("severity".into(), Self::severity(s).into());
        labels.insert("namespace".into(), self.namespace.clone().into());
        labels.insert(self.kind.label().into(), self.resource_name(s.fp).into());
        labels.insert("job".into(), "kube-state-metrics".into());
        labels.insert("container".into(), "app".into());
        Value::Object(labels)
    }

    /// One alert of an Alertmanager webhook, firing since `now`.
    pub fn alert(&self, s: &PlannedSignal, now: Timestamp) -> Value {
        let starts = now.round(Unit::Millisecond).unwrap_or(now);
        json!({
            "status": "firing",
            "labels": self.alert_labels(s),
            "annotations": {
                "summary": format!("{} on {}", Self::signal_name(Route::Alertmanager, s), self.resource_name(s.fp)),
                "description": "generated by gateway-loadtest",
                "runbook_url": "https://runbooks.example/loadtest"
            },
            "startsAt": starts.to_string(),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.loadtest.svc:9090/graph?g0.expr=up",
            "fingerprint": &self.fingerprint(s.fp)[..16],
        })
    }

    /// An Alertmanager v4 webhook body carrying `signals`, all firing since `now`.
    pub fn alertmanager_body(&self, signals: &[PlannedSignal], now: Timestamp) -> Value {
        let first = signals
            .first()
            .map(|s| Self::signal_name(Route::Alertmanager, s))
            .unwrap_or("Unknown");
        json!({
            "version": "4",
            "groupKey": format!("{{}}:{{alertname=\"{first}\"}}"),
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "gateway",
            "groupLabels": { "alertname": first },
            "commonLabels": { "namespace": self.namespace },
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.loadtest.svc:9093",
            "alerts": signals.iter().map(|s| self.alert(s, now)).collect::<Vec<_>>(),
        })
    }

    /// A core/v1 Warning Event about the target of `s`, last seen `now`.
    pub fn event_body(&self, s: &PlannedSignal, seq: u64, now: Timestamp) -> Value {
        let at = now.round(Unit::Second).unwrap_or(now).to_string();
        let name = self.resource_name(s.fp);
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": format!("{name}.{seq:x}"),
                "namespace": self.namespace,
            },
            "involvedObject": {
                "kind": self.kind.kind(),
                "name": name,
                "namespace": self.namespace,
                "apiVersion": self.kind.api_version(),
            },
            "reason": Self::signal_name(Route::Event, s),
            "message": "generated by gateway-loadtest",
            "type": "Warning",
            "source": { "component": "kubelet" },
            "firstTimestamp": at,
            "lastTimestamp": at,
            "count": 1,
        })
    }

    /// The request body for `plan`.
    pub fn body(&self, plan: &RequestPlan, seq: u64, now: Timestamp) -> Value {
        match (plan.route, plan.signals.first()) {
            (Route::Event, Some(s)) => self.event_body(s, seq, now),
            _ => self.alertmanager_body(&plan.signals, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_reproducible_and_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            let x = a.next_f64();
            assert_eq!(x.to_bits(), b.next_f64().to_bits());
            assert!((0.0..1.0).contains(&x));
            assert!(a.below(10) < 10);
            b.below(10);
        }
    }

    #[test]
    fn duplicate_ratio_is_achieved() {
        let mut rng = Rng::new(1);
        let mut p = DuplicatePicker::new(1_000_000, 0.9);
        let n = 100_000;
        let firsts = (0..n).filter(|_| p.pick(&mut rng).1).count();
        let ratio = firsts as f64 / n as f64;
        assert!((ratio - 0.1).abs() < 0.01, "first-sighting share {ratio}");
        assert_eq!(p.seen() as usize, firsts);
    }

    #[test]
    fn first_sightings_are_new_and_duplicates_are_seen() {
        let mut rng = Rng::new(3);
        let mut p = DuplicatePicker::new(50, 0.5);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let (fp, first) = p.pick(&mut rng);
            assert!(fp < 50);
            assert_eq!(first, seen.insert(fp), "fp {fp} first={first}");
        }
        // The pool is exhausted long before 1000 picks: every fingerprint got used.
        assert_eq!(seen.len(), 50);
    }

    #[test]
    fn first_signal_is_always_new_even_at_ratio_one() {
        let mut rng = Rng::new(3);
        let mut p = DuplicatePicker::new(10, 1.0);
        assert_eq!(p.pick(&mut rng), (0, true));
        for _ in 0..100 {
            assert_eq!(p.pick(&mut rng), (0, false));
        }
    }

    #[test]
    fn storm_stays_in_its_pool() {
        let mut g = StreamGen::storm(5, 1000, 100, 1, 0.0);
        let mut firsts = 0;
        for _ in 0..5000 {
            let r = g.next_request();
            assert_eq!(r.route, Route::Alertmanager);
            let s = r.signals[0];
            assert!((1000..1100).contains(&s.fp));
            firsts += usize::from(s.first);
        }
        assert_eq!(firsts, 100);
    }

    #[test]
    fn event_share_and_batch_size() {
        let mut g = StreamGen::steady(9, 1_000_000, 0.9, 3, 0.25);
        let n = 20_000;
        let mut events = 0;
        for _ in 0..n {
            let r = g.next_request();
            match r.route {
                Route::Event => {
                    events += 1;
                    assert_eq!(r.signals.len(), 1);
                }
                Route::Alertmanager => assert_eq!(r.signals.len(), 3),
            }
        }
        let share = events as f64 / n as f64;
        assert!((share - 0.25).abs() < 0.02, "event share {share}");
    }

    #[test]
    fn fingerprint_matches_design() {
        // sha256("default:Pod:x")
        let fp = fingerprint("default", "Pod", "x");
        assert_eq!(fp.len(), 64);
        assert!(
            fp.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(fp, fingerprint("default", "Deployment", "x"));
        let mut h = Sha256::new();
        h.update(b"default:Pod:x");
        assert_eq!(fp, hex::encode(h.finalize()));
    }

    fn naming() -> Naming {
        Naming {
            run_id: "abc123".into(),
            namespace: "loadtest".into(),
            kind: TargetKind::Pod,
            steady_pool: 10,
        }
    }

    #[test]
    fn names_are_distinct_across_pools() {
        let n = naming();
        assert_eq!(n.resource_name(3), "lt-abc123-3");
        assert_eq!(n.resource_name(13), "lt-abc123-s3");
        assert_ne!(n.fingerprint(3), n.fingerprint(13));
    }

    #[test]
    fn alertmanager_body_shape() {
        let n = naming();
        let now = Timestamp::now();
        let s = [
            PlannedSignal {
                fp: 1,
                variant: 0,
                first: true,
            },
            PlannedSignal {
                fp: 2,
                variant: 1,
                first: true,
            },
        ];
        let body = n.alertmanager_body(&s, now);
        assert_eq!(body["version"], "4");
        let alerts = body["alerts"].as_array().map(Vec::len);
        assert_eq!(alerts, Some(2));
        let a = &body["alerts"][1];
        assert_eq!(a["labels"]["pod"], "lt-abc123-2");
        assert_eq!(a["labels"]["namespace"], "loadtest");
        assert_eq!(a["labels"]["alertname"], ALERT_NAMES[1]);
        let starts: Timestamp = a["startsAt"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        assert!(now.duration_since(starts).abs().as_secs_f64() < 1.0);
    }

    #[test]
    fn event_body_shape() {
        let n = Naming {
            kind: TargetKind::Deployment,
            ..naming()
        };
        let now = Timestamp::now();
        let body = n.event_body(
            &PlannedSignal {
                fp: 4,
                variant: 2,
                first: false,
            },
            99,
            now,
        );
        assert_eq!(body["type"], "Warning");
        assert_eq!(body["involvedObject"]["kind"], "Deployment");
        assert_eq!(body["involvedObject"]["name"], "lt-abc123-4");
        assert_eq!(body["reason"], EVENT_REASONS[2]);
        let last: Timestamp = body["lastTimestamp"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        assert!(now.duration_since(last).abs().as_secs_f64() <= 1.0);
    }
}
