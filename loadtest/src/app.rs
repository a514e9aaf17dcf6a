//! The run from set-up to report: the environment (self-started or given targets), the gateway
//! phase and/or the floor phase with what is measured after each load, then tear-down.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use gateway::k8s::types::RemediationRequest as Rr;
use gateway_envtest::ControlPlane;
use kube::Api;
use tokio::time::Instant;

use crate::check::{self, CountCheck};
use crate::cli::Args;
use crate::floor::FloorSink;
use crate::gateway_api::{GatewaySink, HttpClient, http_client, loopback_base};
use crate::load::{Sink, run_phase};
use crate::payload::Naming;
use crate::report::Report;
use crate::results::{Phase, Writes};
use crate::scenario::Scenario;
use crate::scrape::{gateway_writes, metrics_process, scrape};
use crate::stack::{self, GatewayProcess, Meter};

/// How long a stopping gateway gets to drain before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The processes and clients a run works with.
struct Env {
    /// Set in self-start mode; stops on drop.
    control_plane: Option<ControlPlane>,
    /// Self-started gateways; killed on drop.
    gateways: Vec<GatewayProcess>,
    /// Gateway API base URLs (from --targets, or the self-started gateways).
    targets: Vec<String>,
    /// Gateway metrics base URLs.
    metrics: Vec<String>,
    /// A client built as the gateway builds its own (`gateway::k8s::connect`: the client's
    /// own retries off), for the count check and the floor.
    kube: Option<kube::Client>,
    /// How long the count check may wait for RR statuses to catch up.
    check_timeout: Duration,
    /// The `Authorization` header the load carries (`--token-file`, or a token minted in
    /// self-start mode).
    authorization: Option<hyper::header::HeaderValue>,
}

impl Env {
    fn label(&self) -> &'static str {
        match self.control_plane {
            Some(_) => "self-start",
            None => "targets",
        }
    }

    /// Meters the self-started control plane's processes.
    fn control_plane_meter(&self) -> Meter {
        let pids = self
            .control_plane
            .as_ref()
            .map(|_| stack::control_plane_pids());
        Meter::start(
            "kube-apiserver, etcd; /proc, during the load",
            pids.unwrap_or_default(),
        )
    }

    /// The RRs in `ns`, when there is Kubernetes access.
    fn rrs(&self, ns: &str) -> Option<Api<Rr>> {
        self.kube
            .as_ref()
            .map(|client| Api::namespaced(client.clone(), ns))
    }

    /// Stops the self-started gateways, giving each `STOP_GRACE` to drain.
    async fn stop_gateways(&mut self) {
        for g in std::mem::take(&mut self.gateways) {
            g.stop(STOP_GRACE).await;
        }
    }
}

/// Runs everything the options ask for and returns the report.
pub async fn run(args: Args) -> anyhow::Result<Report> {
    let scenario = args.scenario.clone().resolve()?;
    let http = http_client(args.max_in_flight);
    let mut env = prepare(&args, &http).await?;
    let (run_id, seed) = (scenario.run_id(), scenario.seed.unwrap_or_default());
    eprintln!(
        "environment: {} (run id {run_id}, seed {seed})",
        env.label()
    );
    let mut phases = Vec::new();
    if !args.floor {
        phases.push(gateway_phase(&args, &scenario, &mut env, &http).await);
    }
    if args.floor || args.compare {
        phases.push(floor_phase(&args, &scenario, &mut env).await?);
    }
    let label = env.label();
    env.stop_gateways().await;
    if let Some(cp) = env.control_plane.take() {
        cp.shutdown().await.context("stopping the control plane")?;
    }
    Ok(Report::new(scenario, label, phases))
}

/// `Bearer <token>` as a header value.
fn bearer(token: &str) -> anyhow::Result<hyper::header::HeaderValue> {
    hyper::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
        .context("the token is not a valid header value")
}

/// Given targets, or a self-started control plane with its gateways (unless only the floor
/// runs); the Kubernetes client when there is a kubeconfig; the token the load carries.
async fn prepare(args: &Args, http: &HttpClient) -> anyhow::Result<Env> {
    let bases = |urls: &[String]| {
        urls.iter()
            .map(|t| loopback_base(t))
            .collect::<anyhow::Result<_>>()
    };
    let mut env = Env {
        control_plane: None,
        gateways: Vec::new(),
        targets: bases(&args.targets)?,
        metrics: bases(&args.metrics_targets)?,
        kube: None,
        check_timeout: args.check_timeout,
        authorization: None,
    };
    if let Some(path) = &args.token_file {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("reading --token-file {}", path.display()))?;
        env.authorization = Some(bearer(&token)?);
    }
    let mut kubeconfig = args.kubeconfig.clone();
    if !args.targets.is_empty() {
        let need = !(args.floor || args.compare) || kubeconfig.is_some();
        ensure!(
            need,
            "--floor and --compare need --kubeconfig with --targets"
        );
    } else {
        ensure!(
            (1..=16).contains(&args.replicas),
            "--replicas must be within 1..=16"
        );
        let dir = stack::log_dir(args);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("kubeconfig");
        eprintln!(
            "starting the control plane (etcd on {:?})",
            args.etcd_storage
        );
        let cp = stack::start_control_plane(args, path.clone()).await?;
        let open = args
            .gateway_args
            .windows(2)
            .any(|w| w[0] == "--auth-mode" && w[1] == "none")
            || args.gateway_args.iter().any(|a| a == "--auth-mode=none");
        if !open && env.authorization.is_none() {
            env.authorization = Some(bearer(
                &cp.signal_sender_token(&args.namespace, "loadtest").await?,
            )?);
        }
        env.control_plane = Some(cp);
        for i in (0..args.replicas as usize).filter(|_| !args.floor) {
            let g = GatewayProcess::start(i, args, &path, http).await?;
            let (api, metrics, pid, log) = (&g.api, &g.metrics, g.pid, g.log.display());
            eprintln!("gateway {i} ready: api {api} metrics {metrics} (pid {pid}, log {log})");
            env.targets.push(g.api.clone());
            env.metrics.push(g.metrics.clone());
            env.gateways.push(g);
        }
        kubeconfig = Some(path);
    }
    if let Some(path) = kubeconfig {
        let connected = gateway::k8s::connect(Some(&path), None).await;
        env.kube = Some(
            connected
                .with_context(|| format!("connecting with {}", path.display()))?
                .0,
        );
    }
    Ok(env)
}

/// The exact-count check of a phase whose RRs are in `ns`, unless there is no Kubernetes
/// access.
async fn count_check(env: &Env, ns: &str, phase: &Phase, naming: Naming) -> CountCheck {
    match env.rrs(ns) {
        Some(api) => check::converge(&api, phase, &naming, env.check_timeout).await,
        None => CountCheck::Skipped {
            reason: "no Kubernetes access (give --kubeconfig)".into(),
        },
    }
}

async fn gateway_phase(args: &Args, s: &Scenario, env: &mut Env, http: &HttpClient) -> Phase {
    let before = scrape(http, &env.metrics).await;
    let pids = env.gateways.iter().map(|g| g.pid).collect();
    let gateways = Meter::start("/proc/<pid>/status and /proc/<pid>/stat", pids);
    let control_plane = env.control_plane_meter();
    let (length, targets) = (s.length().as_secs_f64(), env.targets.len());
    eprintln!("gateway phase: {length:.0}s of load on {targets} target(s)");
    let naming = Arc::new(s.naming(""));
    let mut sink = GatewaySink::new(
        http.clone(),
        env.targets.clone(),
        naming,
        args.request_timeout,
    );
    if let Some(authorization) = &env.authorization {
        sink = sink.with_authorization(authorization.clone());
    }
    let mut phase = run_phase(s, Sink::Gateway(sink, targets), args).await;
    let load_end = Instant::now();
    phase.control_plane = control_plane.finish();
    if let Some(api) = env.rrs(&args.namespace) {
        let stale = check::storm_staleness(&api, load_end, args.check_timeout).await;
        phase.storm_staleness_ms = stale.map(|d| d.as_secs_f64() * 1000.0);
    }
    tokio::time::sleep(args.settle.saturating_sub(load_end.elapsed())).await;
    let after = scrape(http, &env.metrics).await;
    match (&before, &after) {
        (Ok(b), Ok(a)) if !env.metrics.is_empty() => {
            phase.writes = Some(gateway_writes(b, a, phase.signals.sent));
            phase.process = metrics_process(b, a);
        }
        (Err(e), _) | (_, Err(e)) => phase.writes_unknown = Some(format!("metrics: {e}")),
        _ => phase.writes_unknown = Some("no metrics targets (give --metrics-targets)".into()),
    }
    phase.process = gateways.finish().or(phase.process);
    for g in &mut env.gateways {
        if let Some(status) = g.exited() {
            let (api, log) = (&g.api, g.log.display());
            let exit = format!("gateway {api} exited during the run ({status}); see {log}");
            phase.exited.push(exit);
        }
    }
    phase.count_check = count_check(env, &args.namespace, &phase, s.naming("")).await;
    phase
}

async fn floor_phase(args: &Args, s: &Scenario, env: &mut Env) -> anyhow::Result<Phase> {
    // The floor measures the control plane alone: self-started gateways would compete for
    // the CPU (and watch the floor's writes).
    env.stop_gateways().await;
    let client = env
        .kube
        .clone()
        .context("the floor needs Kubernetes access")?;
    let ns = args.floor_namespace.as_ref().unwrap_or(&args.namespace);
    stack::ensure_namespace(&client, ns).await?;
    let naming = Arc::new(s.naming("f"));
    let sink = FloorSink::new(client, ns, naming, s.pool(), args.k8s_timeout);
    let length = s.length().as_secs_f64();
    eprintln!("floor phase: {length:.0}s of direct writes into namespace {ns}");
    let control_plane = env.control_plane_meter();
    let mut phase = run_phase(s, Sink::Floor(sink), args).await;
    phase.control_plane = control_plane.finish();
    tokio::time::sleep(args.settle).await;
    let (writes, signals) = (phase.k8s_writes as f64, phase.signals.sent);
    phase.writes = Some(Writes::new("floor client", writes, signals));
    phase.count_check = count_check(env, ns, &phase, s.naming("f")).await;
    Ok(phase)
}
