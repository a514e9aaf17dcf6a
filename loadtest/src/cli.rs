//! Command-line options and the scenario they describe.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure};
use clap::Parser;
use serde::Serialize;

use crate::recorder::StreamKind;
use crate::scenario::{Naming, StreamGen, TargetKind};
use crate::schedule::{StreamClock, ticks_in};

/// Open-loop, constant-arrival-rate load for the gateway, with a latency report, a
/// Kubernetes-writes-per-signal figure, an exact-count check and a direct-write floor.
#[derive(Parser, Debug, Clone)]
#[command(name = "gateway-loadtest", version)]
pub struct Args {
    /// Requests per second of the steady stream (0: no steady stream). A request carries
    /// --alerts-per-payload signals (one on the Event route).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Measured duration of the steady stream (e.g. 30s, 2m, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured lead-in at the same rate, before the measured span.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
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
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub storm_duration: Duration,
    /// How many fingerprints the storm hits (uniformly).
    #[arg(long, default_value_t = 100)]
    pub storm_fingerprints: u32,
    /// When the storm starts, counted from the end of the warm-up.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub storm_start: Duration,

    /// Gateway base URLs (loopback only), comma-separated; requests go round-robin. Without
    /// it, the tool starts a control plane and --replicas gateways itself.
    #[arg(long, value_delimiter = ',')]
    pub targets: Vec<String>,
    /// With --targets: the gateways' metrics base URLs, for writes per signal and RSS.
    #[arg(long, value_delimiter = ',')]
    pub metrics_targets: Vec<String>,
    /// With --targets: kubeconfig of the gateways' cluster, for the count check and --floor.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace the RRs live in (the gateways' controller namespace). Self-start creates it.
    #[arg(long, default_value = "loadtest")]
    pub namespace: String,
    /// Namespace for the floor's RRs [default: --namespace].
    #[arg(long)]
    pub floor_namespace: Option<String>,

    /// Self-start: gateway processes to run.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// Self-start: the gateway binary [default: <workspace>/target/release/gateway].
    #[arg(long)]
    pub gateway_bin: Option<PathBuf>,
    /// Self-start: an extra gateway argument; repeat for several (e.g. --gateway-arg=--config=gw.yaml).
    #[arg(long = "gateway-arg", allow_hyphen_values = true)]
    pub gateway_args: Vec<String>,
    /// Self-start: where etcd keeps its data.
    #[arg(long, value_enum, default_value_t = EtcdStorage::Tmpfs)]
    pub etcd_storage: EtcdStorage,
    /// Self-start: folder for the gateways' logs [default: <workspace>/target/loadtest].
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Self-start: how long a gateway gets to report ready.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub ready_timeout: Duration,

    /// Instead of the gateway, issue the same Kubernetes writes directly (the floor).
    #[arg(long, conflicts_with = "compare")]
    pub floor: bool,
    /// Run the gateway, then the floor, on the same scenario, and compare.
    #[arg(long)]
    pub compare: bool,

    /// Cap on requests in flight; a due request over it is dropped and reported.
    #[arg(long, default_value_t = 1000)]
    pub max_in_flight: usize,
    /// Deadline of one gateway request, body included.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Deadline of one Kubernetes call in floor mode (the gateway's default).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub k8s_timeout: Duration,
    /// Wait after the last response before reading metrics (lets storm writes flush).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub settle: Duration,
    /// How long the count check may wait for RR statuses to catch up.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub check_timeout: Duration,
    /// Seed of the scenario's choices [default: from the clock].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Tag in the target resources' names, so runs against one gateway do not collide
    /// [default: from the clock].
    #[arg(long)]
    pub run_id: Option<String>,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Where self-started etcd keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EtcdStorage {
    /// Memory (`/dev/shm`).
    Tmpfs,
    /// The temp directory.
    Disk,
}

/// Parses `250ms`, `10s`, `1.5s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 10s, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {s:?} (use ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// A storm stream.
#[derive(Clone, Debug, Serialize)]
pub struct Storm {
    /// Requests per second.
    pub rate: f64,
    /// Length.
    #[serde(with = "secs")]
    pub duration: Duration,
    /// Fingerprints hit.
    pub fingerprints: u32,
    /// Start, after the warm-up.
    #[serde(with = "secs")]
    pub start: Duration,
}

/// What to send, resolved from the options.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    /// Steady requests per second.
    pub rate: f64,
    /// Warm-up.
    #[serde(with = "secs")]
    pub warmup: Duration,
    /// Measured span of the steady stream.
    #[serde(with = "secs")]
    pub duration: Duration,
    /// Steady fingerprint pool (resolved when 0 was asked).
    pub fingerprints: u32,
    /// Target duplicate ratio of the steady stream.
    pub duplicate_ratio: f64,
    /// Alerts per webhook.
    pub alerts_per_payload: u32,
    /// Share of requests on the Event route.
    pub event_share: f64,
    /// Resource label.
    pub target_kind: TargetKind,
    /// `namespace` label.
    pub label_namespace: String,
    /// The storm, if any.
    pub storm: Option<Storm>,
    /// Seed.
    pub seed: u64,
    /// Run tag.
    pub run_id: String,
}

mod secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Largest fingerprint pool the tool will allocate for.
const MAX_POOL: u64 = 10_000_000;

impl Scenario {
    /// Validates the options and resolves defaults.
    pub fn from_args(a: &Args) -> anyhow::Result<Self> {
        ensure!(
            a.rate.is_finite() && a.rate >= 0.0,
            "--rate must be 0 or more"
        );
        ensure!(
            a.storm_rate.is_finite() && a.storm_rate >= 0.0,
            "--storm-rate must be 0 or more"
        );
        ensure!(
            a.rate > 0.0 || a.storm_rate > 0.0,
            "nothing to send: --rate and --storm-rate are both 0"
        );
        ensure!(
            a.rate <= 100_000.0 && a.storm_rate <= 100_000.0,
            "rates above 100000/s are not supported"
        );
        ensure!(
            (0.0..=1.0).contains(&a.duplicate_ratio),
            "--duplicate-ratio must be within 0..=1"
        );
        ensure!(
            (0.0..=1.0).contains(&a.event_share),
            "--event-share must be within 0..=1"
        );
        ensure!(
            (1..=1000).contains(&a.alerts_per_payload),
            "--alerts-per-payload must be within 1..=1000"
        );
        ensure!(a.max_in_flight > 0, "--max-in-flight must be positive");
        ensure!(a.threads > 0, "--threads must be positive");
        if a.rate > 0.0 {
            ensure!(!a.duration.is_zero(), "--duration must be positive");
        }
        let storm = if a.storm_rate > 0.0 {
            ensure!(
                a.storm_fingerprints > 0,
                "--storm-fingerprints must be positive"
            );
            ensure!(
                !a.storm_duration.is_zero(),
                "--storm-duration must be positive"
            );
            Some(Storm {
                rate: a.storm_rate,
                duration: a.storm_duration,
                fingerprints: a.storm_fingerprints,
                start: a.storm_start,
            })
        } else {
            None
        };
        let fingerprints = if a.fingerprints > 0 {
            a.fingerprints
        } else {
            auto_pool(
                a.rate,
                a.warmup + a.duration,
                a.alerts_per_payload,
                a.event_share,
                a.duplicate_ratio,
            )
        };
        let total =
            u64::from(fingerprints) + storm.as_ref().map_or(0, |s| u64::from(s.fingerprints));
        if total > MAX_POOL {
            bail!("{total} fingerprints is more than the {MAX_POOL} this tool handles");
        }
        let seed = a.seed.unwrap_or_else(clock_seed);
        let run_id = match &a.run_id {
            Some(r) => {
                ensure!(
                    !r.is_empty()
                        && r.len() <= 20
                        && r.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                    "--run-id must be 1..=20 lowercase letters or digits"
                );
                r.clone()
            }
            // From the clock, not the seed: a rerun with the same seed must still get fresh
            // fingerprints, or it would find the previous run's RRs.
            None => format!("{:06x}", clock_seed() & 0xff_ffff),
        };
        Ok(Scenario {
            rate: a.rate,
            warmup: if a.rate > 0.0 {
                a.warmup
            } else {
                Duration::ZERO
            },
            duration: if a.rate > 0.0 {
                a.duration
            } else {
                Duration::ZERO
            },
            fingerprints,
            duplicate_ratio: a.duplicate_ratio,
            alerts_per_payload: a.alerts_per_payload,
            event_share: a.event_share,
            target_kind: a.target_kind,
            label_namespace: a.label_namespace.clone(),
            storm,
            seed,
            run_id,
        })
    }

    /// Every fingerprint index the run can use (steady pool, then storm pool).
    pub fn pool(&self) -> u32 {
        self.fingerprints + self.storm.as_ref().map_or(0, |s| s.fingerprints)
    }

    /// Names for a phase of the run; `suffix` tells phases apart (the floor gets its own RRs).
    pub fn naming(&self, suffix: &str) -> Naming {
        Naming {
            run_id: format!("{}{suffix}", self.run_id),
            namespace: self.label_namespace.clone(),
            kind: self.target_kind,
            steady_pool: self.fingerprints,
        }
    }

    /// The streams, each with its clock and its (seeded) request generator. The same
    /// scenario always yields the same requests, so the gateway and the floor see the same.
    pub fn streams(&self) -> Vec<(StreamKind, StreamClock, StreamGen)> {
        let mut out = Vec::new();
        if self.rate > 0.0 {
            let clock = StreamClock {
                rate: self.rate,
                start: Duration::ZERO,
                warmup: self.warmup,
                measure: self.duration,
            };
            let generator = StreamGen::steady(
                self.seed,
                self.fingerprints,
                self.duplicate_ratio,
                self.alerts_per_payload,
                self.event_share,
            );
            out.push((StreamKind::Steady, clock, generator));
        }
        if let Some(s) = &self.storm {
            let clock = StreamClock {
                rate: s.rate,
                start: self.warmup + s.start,
                warmup: Duration::ZERO,
                measure: s.duration,
            };
            let generator = StreamGen::storm(
                self.seed ^ 0x5704_3000,
                self.fingerprints,
                s.fingerprints,
                self.alerts_per_payload,
                self.event_share,
            );
            out.push((StreamKind::Storm, clock, generator));
        }
        out
    }

    /// When the last request of the run is due.
    pub fn length(&self) -> Duration {
        self.streams()
            .iter()
            .map(|(_, c, _)| c.end())
            .max()
            .unwrap_or_default()
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
    if pool >= MAX_POOL as f64 {
        MAX_POOL as u32
    } else {
        pool as u32
    }
}

fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["gateway-loadtest"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn defaults_resolve() {
        let s = Scenario::from_args(&args(&["--seed", "42"])).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.run_id.len(), 6);
        // 35 s × 100/s × 10 % new = 350, plus margin.
        assert_eq!(s.fingerprints, 485);
        assert!(s.storm.is_none());
        assert_eq!(s.streams().len(), 1);
        assert_eq!(s.length(), Duration::from_secs(35));
    }

    #[test]
    fn storm_only() {
        let a = args(&[
            "--rate",
            "0",
            "--storm-rate",
            "2000",
            "--storm-duration",
            "10s",
            "--storm-fingerprints",
            "100",
            "--seed",
            "1",
        ]);
        let s = Scenario::from_args(&a).unwrap_or_else(|e| panic!("{e}"));
        let streams = s.streams();
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].0, StreamKind::Storm);
        assert_eq!(streams[0].1.total_ticks(), 20_000);
        assert_eq!(s.pool(), s.fingerprints + 100);
        assert_eq!(s.length(), Duration::from_secs(10));
    }

    #[test]
    fn storm_alongside_steady_starts_after_warmup() {
        let a = args(&[
            "--rate",
            "100",
            "--warmup",
            "2s",
            "--duration",
            "20s",
            "--storm-rate",
            "500",
            "--storm-start",
            "5s",
        ]);
        let s = Scenario::from_args(&a).unwrap_or_else(|e| panic!("{e}"));
        let streams = s.streams();
        assert_eq!(streams[1].1.start, Duration::from_secs(7));
        assert_eq!(s.length(), Duration::from_secs(22));
    }

    #[test]
    fn rejects_bad_options() {
        for bad in [
            &["--duplicate-ratio", "1.5"][..],
            &["--rate", "0"],
            &["--alerts-per-payload", "0"],
            &["--event-share=-0.1"],
            &["--run-id", "Bad_Id"],
            &[
                "--rate",
                "0",
                "--storm-rate",
                "10",
                "--storm-fingerprints",
                "0",
            ],
        ] {
            assert!(Scenario::from_args(&args(bad)).is_err(), "{bad:?} accepted");
        }
        assert!(Args::try_parse_from(["x", "--floor", "--compare"]).is_err());
    }

    #[test]
    fn auto_pool_covers_new_fingerprints() {
        assert_eq!(
            auto_pool(1000.0, Duration::from_secs(60), 1, 0.0, 0.9),
            6700
        );
        assert_eq!(auto_pool(100.0, Duration::from_secs(10), 1, 0.0, 1.0), 100);
        // Batches of 4, a quarter of requests on the Event route: 3.25 signals per request.
        assert_eq!(
            auto_pool(100.0, Duration::from_secs(10), 4, 0.25, 0.0),
            3675
        );
    }
}
