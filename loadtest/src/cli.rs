//! The command-line options: the scenario's (`scenario::Scenario`, flattened in) and those of
//! the environment, the phases and the limits. Durations are read by the gateway's own parser
//! (`250ms`, `10s`, `2m`, `1h`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use gateway::config::duration::parse as duration;

use crate::scenario::Scenario;

/// Open-loop, constant-arrival-rate load for the gateway, with a latency report, a
/// Kubernetes-writes-per-signal figure, an exact-count check and a direct-write floor.
#[derive(Parser, Debug, Clone)]
#[command(name = "gateway-loadtest", version)]
pub struct Args {
    /// What to send.
    #[command(flatten)]
    pub scenario: Scenario,

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
    /// With --targets: a file holding the bearer token every request carries (the gateways'
    /// `auth.mode: kubernetes`). Self-start mints one itself: a ServiceAccount bound to the
    /// shipped ClusterRole `gateway-signal-source`, unless a --gateway-arg sets
    /// `--auth-mode=none`.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
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
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub ready_timeout: Duration,

    /// Instead of the gateway, issue the same Kubernetes writes directly (the floor).
    #[arg(long, conflicts_with = "compare")]
    pub floor: bool,
    /// Run the gateway, then the floor, on the same scenario, and compare.
    #[arg(long)]
    pub compare: bool,

    /// Cap on requests in flight; a due request over it is dropped and reported.
    #[arg(long, default_value_t = 1000, value_parser = positive)]
    pub max_in_flight: usize,
    /// Deadline of one gateway request, body included.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub request_timeout: Duration,
    /// Deadline of one Kubernetes call in floor mode (the gateway's default).
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub k8s_timeout: Duration,
    /// Wait after the last response before reading metrics (lets storm writes flush).
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub settle: Duration,
    /// How long the count check may wait for RR statuses to catch up.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub check_timeout: Duration,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 2, value_parser = positive)]
    pub threads: usize,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// A count of at least 1.
fn positive(s: &str) -> Result<usize, String> {
    match s.parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive integer")),
    }
}

/// Where self-started etcd keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EtcdStorage {
    /// Memory (`/dev/shm`).
    Tmpfs,
    /// The temp directory.
    Disk,
}
