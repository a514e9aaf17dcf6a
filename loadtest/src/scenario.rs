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

use anyhow::bail;
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
        let rate_ok = |r: f64| r.is_finite() && (0.0..=100_000.0).contains(&r);
        let run_id_ok = self.run_id.as_ref().is_none_or(|r| {
            (1..=20).contains(&r.len())
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        let storm = self.storm_rate > 0.0;
        let rules = [
            (rate_ok(self.rate), "--rate must be within 0..=100000"),
            (
                rate_ok(self.storm_rate),
                "--storm-rate must be within 0..=100000",
            ),
            (
                self.rate > 0.0 || storm,
                "nothing to send: --rate and --storm-rate are both 0",
            ),
            (
                (0.0..=1.0).contains(&self.duplicate_ratio),
                "--duplicate-ratio must be within 0..=1",
            ),
            (
                (0.0..=1.0).contains(&self.event_share),
                "--event-share must be within 0..=1",
            ),
            (
                (1..=1000).contains(&self.alerts_per_payload),
                "--alerts-per-payload must be within 1..=1000",
            ),
            (
                self.rate == 0.0 || !self.duration.is_zero(),
                "--duration must be positive",
            ),
            (
                !storm || self.storm_fingerprints > 0,
                "--storm-fingerprints must be positive",
            ),
            (
                !storm || !self.storm_duration.is_zero(),
                "--storm-duration must be positive",
            ),
            (
                run_id_ok,
                "--run-id must be 1..=20 lowercase letters or digits",
            ),
        ];
        if let Some((_, why)) = rules.iter().find(|(ok, _)| !ok) {
            bail!("{why}");
        }
        if self.rate == 0.0 {
            (self.warmup, self.duration) = (Duration::ZERO, Duration::ZERO);
        }
        if !storm {
            self.storm_fingerprints = 0;
        }
        if self.fingerprints == 0 {
            let span = self.warmup + self.duration;
            self.fingerprints = auto_pool(
                self.rate,
                span,
                self.alerts_per_payload,
                self.event_share,
                self.duplicate_ratio,
            );
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
        Naming {
            run_id: format!("{}{suffix}", self.run_id()),
            namespace: self.label_namespace.clone(),
            kind: self.target_kind,
            steady_pool: self.fingerprints,
        }
    }

    /// The streams, each with its clock and its (seeded) request generator. The same
    /// scenario always yields the same requests, so the gateway and the floor see the same.
    pub fn streams(&self) -> Vec<(StreamKind, StreamClock, StreamGen)> {
        let seed = self.seed.unwrap_or_default();
        let generator = |seed, picker| StreamGen {
            rng: Rng::new(seed),
            picker,
            alerts_per_payload: self.alerts_per_payload.max(1),
            event_share: self.event_share,
        };
        let mut out = Vec::new();
        if self.rate > 0.0 {
            let clock = StreamClock {
                rate: self.rate,
                start: Duration::ZERO,
                warmup: self.warmup,
                measure: self.duration,
            };
            let picker = Picker::steady(self.fingerprints, self.duplicate_ratio);
            out.push((StreamKind::Steady, clock, generator(seed, picker)));
        }
        if self.storm_rate > 0.0 {
            let clock = StreamClock {
                rate: self.storm_rate,
                start: self.warmup + self.storm_start,
                warmup: Duration::ZERO,
                measure: self.storm_duration,
            };
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
pub fn auto_pool(
    rate: f64,
    span: Duration,
    alerts_per_payload: u32,
    event_share: f64,
    duplicate_ratio: f64,
) -> u32 {
    let requests = ticks_in(span, rate) as f64;
    let per_request = event_share + (1.0 - event_share) * f64::from(alerts_per_payload);
    let new = requests * per_request * (1.0 - duplicate_ratio);
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
}

impl RequestPlan {
    /// A webhook of first sightings of `fps`, variant 0.
    pub fn alerts(fps: &[u32]) -> Self {
        let signal = |&fp| PlannedSignal {
            fp,
            variant: 0,
            first: true,
        };
        let signals = fps.iter().map(signal).collect();
        RequestPlan {
            route: Route::Alertmanager,
            signals,
        }
    }
}

/// How a stream picks fingerprints.
#[derive(Clone, Debug)]
pub enum Picker {
    /// Steady traffic over `0..pool`, so that a given fraction of signals repeats a fingerprint
    /// already sent: first sightings in order from the unseen part, duplicates uniformly from
    /// the `seen` part. Once the pool is used up every further signal is a duplicate (the
    /// report shows the achieved ratio).
    Steady {
        /// Pool size.
        pool: u32,
        /// Fingerprints sent at least once so far (`0..seen`).
        seen: u32,
        /// Target share of duplicates.
        duplicate_ratio: f64,
    },
    /// A storm: uniform over the small pool `base..base + seen.len()`.
    Storm {
        /// First index of the pool.
        base: u32,
        /// Which members were already sent (to mark first sightings).
        seen: Vec<bool>,
    },
}

impl Picker {
    /// A steady picker over `0..pool`.
    pub fn steady(pool: u32, duplicate_ratio: f64) -> Self {
        Picker::Steady {
            pool,
            seen: 0,
            duplicate_ratio,
        }
    }

    /// A storm picker over `base..base + size`.
    pub fn storm(base: u32, size: u32) -> Self {
        Picker::Storm {
            base,
            seen: vec![false; size.max(1) as usize],
        }
    }

    /// The next fingerprint index and whether it is a first sighting.
    pub fn pick(&mut self, rng: &mut Rng) -> (u32, bool) {
        match self {
            Picker::Steady {
                pool,
                seen,
                duplicate_ratio,
            } => {
                let want_new = *seen == 0 || rng.next_f64() >= *duplicate_ratio;
                if want_new && *seen < *pool {
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

/// Produces the request sequence of one stream.
#[derive(Clone, Debug)]
pub struct StreamGen {
    rng: Rng,
    /// Which fingerprints.
    pub picker: Picker,
    alerts_per_payload: u32,
    event_share: f64,
}

impl StreamGen {
    /// The next request.
    pub fn next_request(&mut self) -> RequestPlan {
        let event = self.event_share > 0.0 && self.rng.next_f64() < self.event_share;
        let (route, n) = match event {
            true => (Route::Event, 1),
            false => (Route::Alertmanager, self.alerts_per_payload),
        };
        let signals = (0..n).map(|_| {
            let (fp, first) = self.picker.pick(&mut self.rng);
            let variant = self.rng.below(1 << 16);
            PlannedSignal { fp, variant, first }
        });
        RequestPlan {
            route,
            signals: signals.collect(),
        }
    }
}

/// The scenario of a command line (`--rate 50 --seed 1`), resolved, for tests.
#[cfg(test)]
pub fn parse(argv: &str) -> anyhow::Result<Scenario> {
    use clap::Parser;
    let argv = std::iter::once("gateway-loadtest").chain(argv.split_whitespace());
    crate::cli::Args::try_parse_from(argv)?.scenario.resolve()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(argv: &str) -> Scenario {
        parse(argv).unwrap_or_else(|e| panic!("{argv}: {e}"))
    }

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
        let mut p = Picker::steady(1_000_000, 0.9);
        let n = 100_000;
        let firsts = (0..n).filter(|_| p.pick(&mut rng).1).count();
        let ratio = firsts as f64 / n as f64;
        assert!((ratio - 0.1).abs() < 0.01, "first-sighting share {ratio}");
        assert_eq!(p.seen(), Some(firsts as u32));
    }

    #[test]
    fn first_sightings_are_new_and_duplicates_are_seen() {
        let mut rng = Rng::new(3);
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
    fn first_signal_is_always_new_even_at_ratio_one() {
        let mut rng = Rng::new(3);
        let mut p = Picker::steady(10, 1.0);
        assert_eq!(p.pick(&mut rng), (0, true));
        for _ in 0..100 {
            assert_eq!(p.pick(&mut rng), (0, false));
        }
    }

    #[test]
    fn storm_stays_in_its_pool() {
        let s =
            ok("--rate 0 --storm-rate 10 --storm-fingerprints 100 --fingerprints 1000 --seed 5");
        let (_, _, mut g) = s.streams().remove(0);
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
        let s = ok("--fingerprints 1000000 --alerts-per-payload 3 --event-share 0.25 --seed 9");
        let (_, _, mut g) = s.streams().remove(0);
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
    fn defaults_resolve() {
        let s = ok("--seed 42");
        assert_eq!(s.run_id().len(), 6);
        // 35 s × 100/s × 10 % new = 350, plus margin.
        assert_eq!(s.fingerprints, 485);
        assert_eq!(s.storm_fingerprints, 0);
        assert_eq!(s.streams().len(), 1);
        assert_eq!(s.length(), Duration::from_secs(35));
    }

    #[test]
    fn storm_only() {
        let s = ok("--rate 0 --storm-rate 2000 --storm-duration 10s --storm-fingerprints 100");
        let streams = s.streams();
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].0, StreamKind::Storm);
        assert_eq!(streams[0].1.total_ticks(), 20_000);
        assert_eq!(s.pool(), s.fingerprints + 100);
        assert_eq!(s.length(), Duration::from_secs(10));
    }

    #[test]
    fn storm_alongside_steady_starts_after_warmup() {
        let s = ok("--rate 100 --warmup 2s --duration 20s --storm-rate 500 --storm-start 5s");
        let streams = s.streams();
        assert_eq!(streams[1].1.start, Duration::from_secs(7));
        assert_eq!(s.length(), Duration::from_secs(22));
    }

    #[test]
    fn rejects_bad_options() {
        for bad in [
            "--duplicate-ratio 1.5",
            "--rate 0",
            "--alerts-per-payload 0",
            "--event-share=-0.1",
            "--run-id Bad_Id",
            "--rate 0 --storm-rate 10 --storm-fingerprints 0",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn auto_pool_covers_new_fingerprints() {
        let pool = |rate, secs, batch, events, ratio| {
            auto_pool(rate, Duration::from_secs(secs), batch, events, ratio)
        };
        assert_eq!(pool(1000.0, 60, 1, 0.0, 0.9), 6700);
        assert_eq!(pool(100.0, 10, 1, 0.0, 1.0), 100);
        // Batches of 4, a quarter of requests on the Event route: 3.25 signals per request.
        assert_eq!(pool(100.0, 10, 4, 0.25, 0.0), 3675);
    }
}
