//! The run from start to report: set up the environment (self-started or given targets),
//! run the gateway phase and/or the floor phase, gather metrics, memory and the count check,
//! tear down.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use gateway_envtest::ControlPlane;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::check;
use crate::cli::{Args, Scenario};
use crate::floor::FloorSink;
use crate::http_sink::{GatewaySink, HttpClient, get, http_client, loopback_base};
use crate::load::{PhaseResult, Sink, run_phase};
use crate::promtext::{self, Sample};
use crate::recorder::Recorder;
use crate::report::{CheckReport, ProcessReport, Report, RunReport, WritesReport};
use crate::scenario::Naming;
use crate::stack::{self, GatewayOptions, GatewayProcess};

/// Metric holding Kubernetes calls by verb and outcome (DESIGN.md §7).
const K8S_REQUESTS: &str = "gateway_k8s_requests_total";
/// Histogram of Kubernetes call durations by verb, seconds.
const K8S_DURATION: &str = "gateway_k8s_request_duration_seconds";
/// Verbs that write; a verb counts when it starts with one (`patch_storm` is a patch).
const WRITE_VERBS: [&str; 3] = ["create", "patch", "update"];
/// Outcomes that never reached the API (the circuit breaker refused the call).
const NOT_SENT: [&str; 1] = ["breaker_open"];
/// Counters whose increase over the run is reported alongside.
const COUNTERS: [&str; 8] = [
    "gateway_signals_received_total",
    "gateway_signals_deduplicated_total",
    "gateway_crds_created_total",
    "gateway_crd_creation_errors_total",
    "gateway_storms_detected_total",
    "gateway_storm_patches_total",
    "gateway_storm_coalesced_total",
    "gateway_watch_restarts_total",
];
/// How long a stopping gateway gets to drain before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Which phases run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Gateway,
    Floor,
}

/// The processes and clients a run works with.
struct Environment {
    /// Set in self-start mode; stops on drop.
    control_plane: Option<ControlPlane>,
    /// Self-started gateways; killed on drop.
    gateways: Vec<GatewayProcess>,
    /// Gateway API base URLs (from --targets, or the self-started gateways).
    targets: Vec<String>,
    /// Gateway metrics base URLs.
    metrics: Vec<String>,
    /// Kubernetes access for the count check and the floor.
    kube_config: Option<kube::Config>,
    /// Kubeconfig path handed to self-started gateways.
    kubeconfig_path: Option<PathBuf>,
}

impl Environment {
    fn self_started(&self) -> bool {
        self.control_plane.is_some()
    }

    fn label(&self) -> &'static str {
        if self.self_started() {
            "self-start"
        } else {
            "targets"
        }
    }
}

/// Runs everything the options ask for and returns the report.
pub async fn run(args: Args) -> anyhow::Result<Report> {
    let scenario = Scenario::from_args(&args)?;
    let phases: &[Phase] = if args.compare {
        &[Phase::Gateway, Phase::Floor]
    } else if args.floor {
        &[Phase::Floor]
    } else {
        &[Phase::Gateway]
    };
    let http = http_client(args.max_in_flight);
    let mut env = prepare(&args).await?;
    eprintln!(
        "environment: {} (run id {}, seed {})",
        env.label(),
        scenario.run_id,
        scenario.seed
    );
    let mut runs = Vec::new();
    for phase in phases {
        let report = match phase {
            Phase::Gateway => gateway_phase(&args, &scenario, &mut env, &http).await?,
            Phase::Floor => floor_phase(&args, &scenario, &mut env).await?,
        };
        runs.push(report);
    }
    let label = env.label();
    for g in std::mem::take(&mut env.gateways) {
        g.stop(STOP_GRACE).await;
    }
    if let Some(cp) = env.control_plane.take() {
        cp.shutdown().await.context("stopping the control plane")?;
    }
    Ok(Report::new(scenario, label, runs))
}

async fn prepare(args: &Args) -> anyhow::Result<Environment> {
    if !args.targets.is_empty() {
        let targets = args
            .targets
            .iter()
            .map(|t| loopback_base(t))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let metrics = args
            .metrics_targets
            .iter()
            .map(|t| loopback_base(t))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let kube_config = match &args.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Some(kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?)
            }
            None => None,
        };
        ensure!(
            kube_config.is_some() || !(args.floor || args.compare),
            "--floor and --compare need --kubeconfig with --targets"
        );
        return Ok(Environment {
            control_plane: None,
            gateways: Vec::new(),
            targets,
            metrics,
            kube_config,
            kubeconfig_path: args.kubeconfig.clone(),
        });
    }
    ensure!(
        args.replicas >= 1 && args.replicas <= 16,
        "--replicas must be within 1..=16"
    );
    let log_dir = log_dir(args);
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let kubeconfig = log_dir.join("kubeconfig");
    eprintln!(
        "starting the control plane (etcd on {:?})",
        args.etcd_storage
    );
    let cp =
        stack::start_control_plane(args.etcd_storage, &args.namespace, kubeconfig.clone()).await?;
    let kube_config = Some(cp.config());
    Ok(Environment {
        control_plane: Some(cp),
        gateways: Vec::new(),
        targets: Vec::new(),
        metrics: Vec::new(),
        kube_config,
        kubeconfig_path: Some(kubeconfig),
    })
}

fn log_dir(args: &Args) -> PathBuf {
    args.log_dir
        .clone()
        .unwrap_or_else(|| gateway_envtest::workspace_root().join("target/loadtest"))
}

/// A client for checks: default settings.
fn check_client(config: &kube::Config) -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_from(config.clone())?)
}

/// A client for the floor, set up as the gateway's (`src/k8s/mod.rs`): the client's own
/// retries off; the per-call deadline is a timeout around each call (`FloorSink`).
fn floor_client(config: &kube::Config) -> anyhow::Result<kube::Client> {
    let mut c = config.clone();
    c.default_retry = false;
    Ok(kube::Client::try_from(c)?)
}

async fn start_gateways(
    args: &Args,
    env: &mut Environment,
    http: &HttpClient,
) -> anyhow::Result<()> {
    let Some(kubeconfig) = env.kubeconfig_path.clone() else {
        return Ok(());
    };
    let options = GatewayOptions {
        bin: args
            .gateway_bin
            .clone()
            .unwrap_or_else(stack::default_gateway_bin),
        extra_args: args.gateway_args.clone(),
        namespace: args.namespace.clone(),
        kubeconfig,
        log_dir: log_dir(args),
        ready_timeout: args.ready_timeout,
    };
    ensure!(
        options.bin.is_file(),
        "no gateway binary at {} (cargo build --release, or --gateway-bin)",
        options.bin.display()
    );
    for i in 0..args.replicas as usize {
        let g = GatewayProcess::start(i, &options, http).await?;
        eprintln!(
            "gateway {i} ready: api {} metrics {} (pid {}, log {})",
            g.api,
            g.metrics,
            g.pid,
            g.log.display()
        );
        env.targets.push(g.api.clone());
        env.metrics.push(g.metrics.clone());
        env.gateways.push(g);
    }
    Ok(())
}

/// Scrapes every metrics target; `None` if any fails (a partial sum would mislead).
async fn scrape(http: &HttpClient, metrics: &[String]) -> Result<Vec<Vec<Sample>>, String> {
    let mut out = Vec::new();
    for m in metrics {
        let url = format!("{m}/metrics");
        match get(http, &url, Duration::from_secs(5)).await {
            Ok((200, body)) => out.push(promtext::parse(&String::from_utf8_lossy(&body))),
            Ok((code, _)) => return Err(format!("GET {url}: {code}")),
            Err(e) => return Err(format!("{e:#}")),
        }
    }
    Ok(out)
}

/// Writes per signal from the gateway's counters before and after.
fn gateway_writes(before: &[Vec<Sample>], after: &[Vec<Sample>], signals: u64) -> WritesReport {
    let is_write = |l: &std::collections::BTreeMap<String, String>| {
        let verb = l.get("verb").map_or("", String::as_str);
        let outcome = l.get("outcome").map_or("", String::as_str);
        WRITE_VERBS.iter().any(|w| verb.starts_with(w)) && !NOT_SENT.contains(&outcome)
    };
    let total = |snap: &[Vec<Sample>]| {
        snap.iter()
            .map(|s| promtext::sum(s, K8S_REQUESTS, is_write))
            .sum::<f64>()
    };
    let writes = total(after) - total(before);
    let mut by_verb_outcome = std::collections::BTreeMap::new();
    for (sign, snap) in [(1.0, after), (-1.0, before)] {
        for s in snap {
            for (k, v) in promtext::by_labels(s, K8S_REQUESTS, &["verb", "outcome"]) {
                *by_verb_outcome.entry(k).or_insert(0.0) += sign * v;
            }
        }
    }
    by_verb_outcome.retain(|_, v| *v != 0.0);
    let counters = COUNTERS
        .iter()
        .map(|name| {
            let sum = |snap: &[Vec<Sample>]| {
                snap.iter()
                    .map(|s| promtext::sum(s, name, |_| true))
                    .sum::<f64>()
            };
            ((*name).to_owned(), sum(after) - sum(before))
        })
        .collect();
    let delta = |name: &str| {
        let mut out = std::collections::BTreeMap::new();
        for (sign, snap) in [(1.0, after), (-1.0, before)] {
            for s in snap {
                for (k, v) in promtext::by_labels(s, name, &["verb"]) {
                    *out.entry(k).or_insert(0.0) += sign * v;
                }
            }
        }
        out
    };
    let sums = delta(&format!("{K8S_DURATION}_sum"));
    let counts = delta(&format!("{K8S_DURATION}_count"));
    let k8s_call_mean_ms = counts
        .iter()
        .filter(|(_, n)| **n > 0.0)
        .map(|(verb, n)| {
            (
                verb.clone(),
                sums.get(verb).copied().unwrap_or(0.0) / n * 1000.0,
            )
        })
        .collect();
    WritesReport {
        source: "gateway /metrics".into(),
        writes,
        signals,
        per_signal: if signals > 0 {
            writes / signals as f64
        } else {
            0.0
        },
        by_verb_outcome,
        counters,
        k8s_call_mean_ms,
    }
}

const MIB: f64 = 1048576.0;

/// Memory and CPU of given gateways from their `process_*` metrics (what the Prometheus
/// client exports on Linux), when they have them.
fn metrics_process(before: &[Vec<Sample>], after: &[Vec<Sample>]) -> Option<ProcessReport> {
    let value = |s: &[Sample], name: &str| s.iter().find(|x| x.name == name).map(|x| x.value);
    let rss_mib: Vec<f64> = after
        .iter()
        .filter_map(|s| value(s, "process_resident_memory_bytes"))
        .map(|v| v / MIB)
        .collect();
    let cpu_seconds: Vec<f64> = before
        .iter()
        .zip(after)
        .filter_map(|(b, a)| {
            Some(value(a, "process_cpu_seconds_total")? - value(b, "process_cpu_seconds_total")?)
        })
        .collect();
    (!rss_mib.is_empty() || !cpu_seconds.is_empty()).then(|| ProcessReport {
        source: "process_* metrics".into(),
        rss_mib,
        peak_mib: Vec::new(),
        cpu_seconds,
    })
}

/// Runs the exact-count check, or says why not.
async fn count_check(
    env: &Environment,
    namespace: &str,
    rec: &Recorder,
    naming: &Naming,
    timeout: Duration,
) -> (CheckReport, Option<String>) {
    let Some(config) = &env.kube_config else {
        return (
            CheckReport::Skipped {
                reason: "no Kubernetes access (give --kubeconfig)".into(),
            },
            None,
        );
    };
    let result = async {
        let client = check_client(config)?;
        check::converge(
            &client,
            namespace,
            &rec.accounts,
            |fp| naming.fingerprint(fp),
            timeout,
        )
        .await
    }
    .await;
    match result {
        Ok(c) => (CheckReport::Done(c), None),
        Err(e) => {
            let why = format!("count check could not list RRs: {e:#}");
            (
                CheckReport::Skipped {
                    reason: why.clone(),
                },
                Some(why),
            )
        }
    }
}

fn finish_phase(
    mode: &str,
    replicas: usize,
    scenario: &Scenario,
    result: &PhaseResult,
) -> RunReport {
    let mut report = RunReport::new(mode, replicas, result.stream_reports(), &result.recorder);
    let used = report.streams.iter().find_map(|s| s.fingerprints_used);
    if used.is_some_and(|u| u >= scenario.fingerprints) && scenario.duplicate_ratio < 1.0 {
        report.warnings.push(format!(
            "all {} steady fingerprints were used before the end: later signals were all duplicates (raise --fingerprints or leave it 0)",
            scenario.fingerprints
        ));
    }
    if result.abandoned > 0 {
        report.problems.push(format!(
            "{} requests still unanswered when the phase ended",
            result.abandoned
        ));
    }
    report
}

async fn gateway_phase(
    args: &Args,
    scenario: &Scenario,
    env: &mut Environment,
    http: &HttpClient,
) -> anyhow::Result<RunReport> {
    if env.self_started() && env.gateways.is_empty() {
        start_gateways(args, env, http).await?;
    }
    let naming = Arc::new(scenario.naming(""));
    let before = scrape(http, &env.metrics).await;
    let cpu_before: Vec<Option<f64>> = env
        .gateways
        .iter()
        .map(|g| stack::proc_cpu_seconds(g.pid))
        .collect();
    eprintln!(
        "gateway phase: {:.0}s of load on {} target(s)",
        scenario.length().as_secs_f64(),
        env.targets.len()
    );
    let sink = Sink::Gateway(GatewaySink::new(
        http.clone(),
        env.targets.clone(),
        naming.clone(),
        args.request_timeout,
    ));
    let result = run_phase(
        scenario,
        Arc::new(sink),
        args.max_in_flight,
        args.request_timeout + Duration::from_secs(5),
    )
    .await;
    let load_end = tokio::time::Instant::now();
    let staleness = match &env.kube_config {
        Some(config) => match check_client(config) {
            Ok(client) => {
                check::storm_staleness(&client, &args.namespace, load_end, args.check_timeout)
                    .await
                    .ok()
                    .flatten()
            }
            Err(_) => None,
        },
        None => None,
    };
    tokio::time::sleep(args.settle.saturating_sub(load_end.elapsed())).await;
    let after = scrape(http, &env.metrics).await;

    let mut report = finish_phase("gateway", env.targets.len(), scenario, &result);
    report.storm_staleness_ms = staleness.map(|d| d.as_secs_f64() * 1000.0);
    match (&before, &after) {
        (Ok(b), Ok(a)) if !env.metrics.is_empty() => {
            report.writes = Some(gateway_writes(b, a, result.recorder.signals.sent))
        }
        (Err(e), _) | (_, Err(e)) => report.warnings.push(format!("metrics unavailable: {e}")),
        _ => report
            .warnings
            .push("no metrics targets: writes per signal unknown (give --metrics-targets)".into()),
    }
    report.process = if env.gateways.is_empty() {
        match (&before, &after) {
            (Ok(b), Ok(a)) => metrics_process(b, a),
            _ => None,
        }
    } else {
        let mem: Vec<(u64, u64)> = env
            .gateways
            .iter()
            .filter_map(|g| stack::proc_memory(g.pid))
            .collect();
        let cpu_after: Vec<Option<f64>> = env
            .gateways
            .iter()
            .map(|g| stack::proc_cpu_seconds(g.pid))
            .collect();
        Some(ProcessReport {
            source: "/proc/<pid>/status and /proc/<pid>/stat".into(),
            rss_mib: mem.iter().map(|m| m.0 as f64 / MIB).collect(),
            peak_mib: mem.iter().map(|m| m.1 as f64 / MIB).collect(),
            cpu_seconds: cpu_before
                .iter()
                .zip(&cpu_after)
                .filter_map(|(b, a)| Some((*a)? - (*b)?))
                .collect(),
        })
    };
    for g in &mut env.gateways {
        if let Some(status) = g.exited() {
            report.problems.push(format!(
                "gateway {} exited during the run ({status}); see {}",
                g.api,
                g.log.display()
            ));
        }
    }
    let (check, problem) = count_check(
        env,
        &args.namespace,
        &result.recorder,
        &naming,
        args.check_timeout,
    )
    .await;
    report.set_check(check);
    report.problems.extend(problem);
    Ok(report)
}

async fn floor_phase(
    args: &Args,
    scenario: &Scenario,
    env: &mut Environment,
) -> anyhow::Result<RunReport> {
    // The floor measures the control plane alone: self-started gateways would compete for
    // the CPU (and watch the floor's writes).
    for g in std::mem::take(&mut env.gateways) {
        g.stop(STOP_GRACE).await;
    }
    let config = env
        .kube_config
        .clone()
        .context("the floor needs Kubernetes access")?;
    let namespace = args
        .floor_namespace
        .clone()
        .unwrap_or_else(|| args.namespace.clone());
    stack::ensure_namespace(&check_client(&config)?, &namespace).await?;
    let naming = Arc::new(scenario.naming("f"));
    let client = floor_client(&config)?;
    let sink = FloorSink::new(
        client,
        &namespace,
        naming.clone(),
        scenario.pool(),
        args.k8s_timeout,
    );
    eprintln!(
        "floor phase: {:.0}s of direct writes into namespace {namespace}",
        scenario.length().as_secs_f64()
    );
    let result = run_phase(
        scenario,
        Arc::new(Sink::Floor(sink)),
        args.max_in_flight,
        args.request_timeout + Duration::from_secs(5),
    )
    .await;
    tokio::time::sleep(args.settle).await;
    let mut report = finish_phase("floor", 0, scenario, &result);
    let signals = result.recorder.signals.sent;
    let writes = result.recorder.k8s_writes as f64;
    report.writes = Some(WritesReport {
        source: "floor client".into(),
        writes,
        signals,
        per_signal: if signals > 0 {
            writes / signals as f64
        } else {
            0.0
        },
        ..WritesReport::default()
    });
    let (check, problem) = count_check(
        env,
        &namespace,
        &result.recorder,
        &naming,
        args.check_timeout,
    )
    .await;
    report.set_check(check);
    report.problems.extend(problem);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_deltas_over_replicas() {
        let snap = |create: u32, patch: u32| {
            promtext::parse(&format!(
                "gateway_k8s_requests_total{{verb=\"create\",outcome=\"success\"}} {create}\n\
                 gateway_k8s_requests_total{{verb=\"patch\",outcome=\"success\"}} {patch}\n\
                 gateway_k8s_requests_total{{verb=\"list\",outcome=\"success\"}} 2\n\
                 gateway_k8s_requests_total{{verb=\"patch_storm\",outcome=\"success\"}} {create}\n\
                 gateway_k8s_requests_total{{verb=\"patch\",outcome=\"breaker_open\"}} {patch}\n\
                 gateway_k8s_request_duration_seconds_sum{{verb=\"patch\"}} {}\n\
                 gateway_k8s_request_duration_seconds_count{{verb=\"patch\"}} {patch}\n\
                 gateway_signals_received_total{{source=\"prometheus\"}} {}\n",
                f64::from(patch) * 0.005,
                create + patch
            ))
        };
        let before = vec![snap(1, 1), snap(0, 0)];
        let after = vec![snap(11, 61), snap(10, 40)];
        let w = gateway_writes(&before, &after, 200);
        // create 20 + patch 100 + patch_storm 20; breaker_open calls never reached the API.
        assert_eq!(w.writes, 140.0);
        assert!((w.per_signal - 0.7).abs() < 1e-9);
        assert_eq!(w.by_verb_outcome.get("patch/breaker_open"), Some(&100.0));
        assert_eq!(w.by_verb_outcome.get("create/success"), Some(&20.0));
        assert_eq!(w.by_verb_outcome.get("patch/success"), Some(&100.0));
        assert!(!w.by_verb_outcome.contains_key("list/success"));
        assert_eq!(w.counters["gateway_signals_received_total"], 120.0);
        let mean = w.k8s_call_mean_ms.get("patch").copied().unwrap_or_default();
        assert!((mean - 5.0).abs() < 1e-9, "{mean}");
    }
}
