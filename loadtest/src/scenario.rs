//! What a run sends: the scenario options (given on the command line, resolved by
//! [`Scenario::resolve`], reported as they were used), and the seeded request mix each of its
//! streams yields — which fingerprints each request carries, on which route.
//!
//! Every choice is drawn from a seeded generator, so a run is reproducible from its seed, and
//! the gateway and the floor see the same requests. The mix is decided in the scheduling task
//! (cheap, sequential state); `payload` renders the bodies at send time.
//!
//! Fingerprint indices: the steady pool is `0..fingerprints`, the storm pool follows it. Each
//! index names one target resource (see `payload::Naming`), so each index is one fingerprint
//! and one RemediationRequest.

use std::time::Duration;

use anyhow::{bail, ensure};
use gateway::api::routes::{EVENT_PATH, PROMETHEUS_PATH};
use gateway::config::duration::parse as duration;
use serde::Serialize;

use crate::payload::{Naming, TargetKind};
use crate::schedule::{StreamClock, ticks_in};

/// The scenario: what to send, and how fast. `seed` and `run_id` are always set once resolved.
#[derive(clap::Args, Clone, Debug, Serialize)]
pub struct Scenario {
    /// Requests per second of the steady stream (0: no steady stream). A request carries
    /// --alerts-per-payload signals (one on the Event route).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Measured duration of the steady stream (e.g. 30s, 2m, 500ms).
    #[arg(long, default_value = "30s", value_parser = duration)]
    #[serde(with = "secs")]
    pub duration: Duration,
    /// Unmeasured lead-in at the same rate, before the measured span.
    #[arg(long, default_value = "5s", value_parser = duration)]
    #[serde(with = "secs")]
    pub warmup: Duration,
    /// Size of the steady fingerprint pool (0: as many as the run can use, so the duplicate
    /// ratio holds to the end).
    #[arg(long, default_value_t = 0)]
    pub fingerprints: u32,
    /// Fraction of steady signals that repeat an already-sent fingerprint.
    #[arg(long, default_value_t = 0.9)]
    pub duplicate_ratio: f64,
    /// Alerts per Alertmanager webhook (2 or more get a 207).
    #[arg(long, default_value_t = 1)]
    pub alerts_per_payload: u32,
    /// Fraction of requests sent to the Kubernetes Event route instead.
    #[arg(long, default_value_t = 0.0)]
    pub event_share: f64,
    /// Fraction of requests whose body is also sent a second time, verbatim, to the next
    /// replica (the same one when there is one): half of them at the same instant (a second
    /// Alertmanager of an HA pair), half right after the answer (a sender's retry). A resend is not an occurrence: it must be
    /// answered with the RR and ordinal of the delivery it repeats, and the count check expects
    /// it not to count. The floor sends every request once.
    #[arg(long, default_value_t = 0.0)]
    pub redeliveries: f64,
    /// Which resource label the signals carry.
    #[arg(long, value_enum, default_value_t = TargetKind::Pod)]
    pub target_kind: TargetKind,
    /// The `namespace` label of the signals (the workload's namespace, not where RRs live).
    #[arg(long, default_value = "loadtest-workloads")]
    pub label_namespace: String,
    /// Requests per second of a storm stream, run alongside the steady one (0: no storm).
    #[arg(long, default_value_t = 0.0)]
    pub storm_rate: f64,
    /// How long the storm lasts.
    #[arg(long, default_value = "10s", value_parser = duration)]
    #[serde(with = "secs")]
    pub storm_duration: Duration,
    /// How many fingerprints the storm hits (uniformly).
    #[arg(long, default_value_t = 100)]
    pub storm_fingerprints: u32,
    /// When the storm starts, counted from the end of the warm-up.
    #[arg(long, default_value = "0s", value_parser = duration)]
    #[serde(with = "secs")]
    pub storm_start: Duration,
    /// Seed of the scenario's choices [default: from the clock].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Tag in the target resources' names, so runs against one gateway do not collide
    /// [default: from the clock].
    #[arg(long)]
    pub run_id: Option<String>,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Largest fingerprint pool the tool will allocate for.
const MAX_POOL: u64 = 10_000_000;

impl Scenario {
    /// Validates the options and resolves the defaults that depend on others or on the clock.
    pub fn resolve(mut self) -> anyhow::Result<Self> {
        let (rate, storm, ratio, share) = (
            self.rate,
            self.storm_rate,
            self.duplicate_ratio,
            self.event_share,
        );
        ensure!(
            (0.0..=1.0).contains(&self.redeliveries),
            "--redeliveries must be within 0..=1"
        );
        let rate_ok = |r: f64| r.is_finite() && (0.0..=100_000.0).contains(&r);
        ensure!(
            rate_ok(rate) && rate_ok(storm),
            "rates must be within 0..=100000"
        );
        ensure!(
            rate > 0.0 || storm > 0.0,
            "nothing to send: --rate and --storm-rate are both 0"
        );
        ensure!(
            (0.0..=1.0).contains(&ratio),
            "--duplicate-ratio must be within 0..=1"
        );
        ensure!(
            (0.0..=1.0).contains(&share),
            "--event-share must be within 0..=1"
        );
        let batch = self.alerts_per_payload;
        ensure!(
            (1..=1000).contains(&batch),
            "--alerts-per-payload must be within 1..=1000"
        );
        ensure!(
            rate == 0.0 || !self.duration.is_zero(),
            "--duration must be positive"
        );
        let storm_ok =
            storm == 0.0 || (self.storm_fingerprints > 0 && !self.storm_duration.is_zero());
        ensure!(
            storm_ok,
            "--storm-fingerprints and --storm-duration must be positive"
        );
        let id_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let id_ok = |r: &String| (1..=20).contains(&r.len()) && r.bytes().all(id_char);
        ensure!(
            self.run_id.as_ref().is_none_or(id_ok),
            "--run-id must be 1..=20 lowercase letters or digits"
        );
        if self.rate == 0.0 {
            (self.warmup, self.duration) = (Duration::ZERO, Duration::ZERO);
        }
        if storm == 0.0 {
            self.storm_fingerprints = 0;
        }
        if self.fingerprints == 0 {
            let span = self.warmup + self.duration;
            self.fingerprints = auto_pool(rate, span, batch, share, ratio);
        }
        let total = u64::from(self.fingerprints) + u64::from(self.storm_fingerprints);
        if total > MAX_POOL {
            bail!("{total} fingerprints is more than the {MAX_POOL} this tool handles");
        }
        self.seed = Some(self.seed.unwrap_or_else(clock_seed));
        // From the clock, not the seed: a rerun with the same seed must still get fresh
        // fingerprints, or it would find the previous run's RRs.
        let run_id = self.run_id.take();
        self.run_id = Some(run_id.unwrap_or_else(|| format!("{:06x}", clock_seed() & 0xff_ffff)));
        Ok(self)
    }

    /// The run tag (set once resolved).
    pub fn run_id(&self) -> &str {
        self.run_id.as_deref().unwrap_or_default()
    }

    /// Every fingerprint index the run can use (steady pool, then storm pool).
    pub fn pool(&self) -> u32 {
        self.fingerprints + self.storm_fingerprints
    }

    /// Names for a phase of the run; `suffix` tells phases apart (the floor gets its own RRs).
    pub fn naming(&self, suffix: &str) -> Naming {
        let run_id = format!("{}{suffix}", self.run_id());
        Naming::new(
            &run_id,
            &self.label_namespace,
            self.target_kind,
            self.fingerprints,
        )
    }

    /// The streams, each with its clock and its (seeded) request generator. The same
    /// scenario always yields the same requests, so the gateway and the floor see the same.
    pub fn streams(&self) -> Vec<(StreamKind, StreamClock, StreamGen)> {
        let seed = self.seed.unwrap_or_default();
        let (batch, share) = (self.alerts_per_payload.max(1), self.event_share);
        let resend = self.redeliveries;
        let generator = |seed, picker| StreamGen(Rng(seed), picker, batch, share, resend);
        let mut out = Vec::new();
        if self.rate > 0.0 {
            let clock = StreamClock::new(self.rate, Duration::ZERO, self.warmup, self.duration);
            let picker = Picker::steady(self.fingerprints, self.duplicate_ratio);
            out.push((StreamKind::Steady, clock, generator(seed, picker)));
        }
        if self.storm_rate > 0.0 {
            let start = self.warmup + self.storm_start;
            let clock =
                StreamClock::new(self.storm_rate, start, Duration::ZERO, self.storm_duration);
            let picker = Picker::storm(self.fingerprints, self.storm_fingerprints);
            out.push((
                StreamKind::Storm,
                clock,
                generator(seed ^ 0x5704_3000, picker),
            ));
        }
        out
    }

    /// When the last request of the run is due.
    pub fn length(&self) -> Duration {
        let ends = self.streams().into_iter().map(|(_, c, _)| c.end());
        ends.max().unwrap_or_default()
    }
}

/// A steady pool large enough that first sightings never run out: the expected number of
/// new fingerprints plus a margin of 10 % and 100.
pub fn auto_pool(rate: f64, span: Duration, batch: u32, event_share: f64, ratio: f64) -> u32 {
    let requests = ticks_in(span, rate) as f64;
    let per_request = event_share + (1.0 - event_share) * f64::from(batch);
    let new = requests * per_request * (1.0 - ratio);
    // The epsilon absorbs float noise (3575.0000000001 is 3575).
    let pool = (new * 1.1 + 100.0 - 1e-6).ceil();
    pool.min(MAX_POOL as f64) as u32
}

fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

/// Which stream a request belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    /// Constant-rate traffic with a duplicate ratio.
    #[default]
    Steady,
    /// A burst on a small set of fingerprints.
    Storm,
}

impl StreamKind {
    /// Label in the report.
    pub fn label(self) -> &'static str {
        match self {
            StreamKind::Steady => "steady",
            StreamKind::Storm => "storm",
        }
    }
}

/// A small, fast, seedable generator (SplitMix64): the same seed yields the same sequence.
/// Statistical quality is ample for choosing fingerprints, and it keeps the tool free of a
/// `rand` dependency.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
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
            Route::Alertmanager => PROMETHEUS_PATH,
            Route::Event => EVENT_PATH,
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
    /// Whether, and how, its body is sent a second time (`--redeliveries`).
    pub redelivery: Option<Redelivery>,
}

/// How a body is sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redelivery {
    /// At the same instant as the first (a second Alertmanager of an HA pair).
    Concurrent,
    /// Once the first is answered (a sender's retry).
    AfterAnswer,
}

impl PlannedSignal {
    /// Signal `variant` about fingerprint index `fp`.
    pub fn new(fp: u32, variant: u32, first: bool) -> Self {
        PlannedSignal { fp, variant, first }
    }
}

impl RequestPlan {
    /// `signals` on `route`.
    pub fn new(route: Route, signals: Vec<PlannedSignal>) -> Self {
        let redelivery = None;
        RequestPlan {
            route,
            signals,
            redelivery,
        }
    }

    /// A webhook of first sightings of `fps`, variant 0.
    pub fn alerts(fps: &[u32]) -> Self {
        let signals = fps.iter().map(|&fp| PlannedSignal::new(fp, 0, true));
        RequestPlan::new(Route::Alertmanager, signals.collect())
    }
}

/// How a stream picks fingerprints.
#[derive(Clone, Debug)]
pub enum Picker {
    /// Steady traffic over `0..pool`, so that a given fraction of signals repeats a fingerprint
    /// already sent: first sightings in order from the unseen part, duplicates uniformly from
    /// the seen part `0..seen`. Once the pool is used up every further signal is a duplicate
    /// (the report shows the achieved ratio).
    Steady {
        /// Pool size.
        pool: u32,
        /// Fingerprints sent so far.
        seen: u32,
        /// Target share of duplicates.
        ratio: f64,
    },
    /// A storm: uniform over the small pool `base..base + seen.len()`; `seen` marks first
    /// sightings.
    Storm {
        /// First index of the pool.
        base: u32,
        /// Which members were already sent.
        seen: Vec<bool>,
    },
}

impl Picker {
    /// A steady picker over `0..pool`.
    pub fn steady(pool: u32, duplicate_ratio: f64) -> Self {
        let (seen, ratio) = (0, duplicate_ratio);
        Picker::Steady { pool, seen, ratio }
    }

    /// A storm picker over `base..base + size`.
    pub fn storm(base: u32, size: u32) -> Self {
        let seen = vec![false; size.max(1) as usize];
        Picker::Storm { base, seen }
    }

    /// The next fingerprint index and whether it is a first sighting.
    pub fn pick(&mut self, rng: &mut Rng) -> (u32, bool) {
        match self {
            Picker::Steady { pool, seen, ratio } => {
                let want_new = *seen == 0 || rng.next_f64() >= *ratio;
                if want_new && seen < pool {
                    *seen += 1;
                    (*seen - 1, true)
                } else {
                    (rng.below((*seen).max(1)), false)
                }
            }
            Picker::Storm { base, seen } => {
                let i = rng.below(seen.len() as u32);
                let first = !std::mem::replace(&mut seen[i as usize], true);
                (*base + i, first)
            }
        }
    }

    /// Steady pool fingerprints sent so far (`None` for a storm).
    pub fn seen(&self) -> Option<u32> {
        match self {
            Picker::Steady { seen, .. } => Some(*seen),
            Picker::Storm { .. } => None,
        }
    }
}

/// Produces the request sequence of one stream: its generator, its picker, the alerts per
/// webhook, the share of requests on the Event route and the share sent twice.
#[derive(Clone, Debug)]
pub struct StreamGen(Rng, pub Picker, u32, f64, f64);

impl StreamGen {
    /// Steady pool fingerprints sent so far (`None` for a storm).
    pub fn fingerprints_seen(&self) -> Option<u32> {
        self.1.seen()
    }

    /// The next request.
    pub fn next_request(&mut self) -> RequestPlan {
        let StreamGen(rng, picker, batch, event_share, resend) = self;
        let event = *event_share > 0.0 && rng.next_f64() < *event_share;
        let (route, n) = if event {
            (Route::Event, 1)
        } else {
            (Route::Alertmanager, *batch)
        };
        let signals = (0..n).map(|_| {
            let (fp, first) = picker.pick(rng);
            PlannedSignal::new(fp, rng.below(1 << 16), first)
        });
        let mut plan = RequestPlan::new(route, signals.collect());
        // Drawn only when asked for, so that a seed without resends yields the requests it
        // always did.
        if *resend > 0.0 && rng.next_f64() < *resend {
            plan.redelivery = Some(if rng.next_u64() & 1 == 0 {
                Redelivery::Concurrent
            } else {
                Redelivery::AfterAnswer
            });
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_reproducible_and_in_range() {
        let mut a = Rng(7);
        let mut b = Rng(7);
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
        let mut rng = Rng(1);
        let mut p = Picker::steady(1_000_000, 0.9);
        let n = 100_000;
        let firsts = (0..n).filter(|_| p.pick(&mut rng).1).count();
        let ratio = firsts as f64 / n as f64;
        assert!((ratio - 0.1).abs() < 0.01, "first-sighting share {ratio}");
        assert_eq!(p.seen(), Some(firsts as u32));
    }

    #[test]
    fn first_sightings_are_new_and_duplicates_are_seen() {
        let mut rng = Rng(3);
        let mut p = Picker::steady(50, 0.5);
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
    fn redeliveries_are_drawn_only_when_asked_for_and_in_both_shapes() {
        let picker = || Picker::steady(1_000, 0.9);
        let mut plain = StreamGen(Rng(5), picker(), 1, 0.0, 0.0);
        let mut resending = StreamGen(Rng(5), picker(), 1, 0.0, 0.25);
        let (mut concurrent, mut after) = (0, 0);
        for _ in 0..4_000 {
            let (a, b) = (plain.next_request(), resending.next_request());
            assert_eq!(a.redelivery, None);
            match b.redelivery {
                Some(Redelivery::Concurrent) => concurrent += 1,
                Some(Redelivery::AfterAnswer) => after += 1,
                None => {}
            }
        }
        let share = f64::from(concurrent + after) / 4_000.0;
        assert!((share - 0.25).abs() < 0.03, "resent share {share}");
        assert!(concurrent > 300 && after > 300, "{concurrent} {after}");
    }

    #[test]
    fn first_signal_is_always_new_even_at_ratio_one() {
        let mut rng = Rng(3);
        let mut p = Picker::steady(10, 1.0);
        assert_eq!(p.pick(&mut rng), (0, true));
        for _ in 0..100 {
            assert_eq!(p.pick(&mut rng), (0, false));
        }
    }
}
