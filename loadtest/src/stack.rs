//! Self-start mode: a control plane from `gateway_envtest` and N gateway processes against it,
//! each on its own loopback ports, all stopped when the run ends (or when this process dies:
//! the children are killed on drop, the control plane stops on drop); and the meter of their
//! memory and CPU.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use gateway::k8s::types::RemediationRequest;
use gateway::telemetry::process::Usage;
use gateway_envtest::{ControlPlane, Options, Storage};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{PostParams, WatchParams};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::cli::{Args, EtcdStorage};
use crate::gateway_api::{HttpClient, get};
use crate::results::Processes;

/// A gateway process started by this tool.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    /// Its process id, for `/proc/<pid>/...`.
    pub pid: u32,
    /// API base URL.
    pub api: String,
    /// Metrics base URL.
    pub metrics: String,
    /// Its combined stdout/stderr.
    pub log: PathBuf,
}

/// `N` distinct free loopback ports (bound together, then released).
fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let mut ports = [0u16; N];
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    for (p, l) in ports.iter_mut().zip(&listeners) {
        *p = l.local_addr()?.port();
    }
    Ok(ports)
}

/// The last 30 lines of a log, for error messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The folder for the gateways' logs and the kubeconfig: `--log-dir`, else
/// `<workspace>/target/loadtest`.
pub fn log_dir(args: &Args) -> PathBuf {
    let default = || gateway_envtest::workspace_root().join("target/loadtest");
    args.log_dir.clone().unwrap_or_else(default)
}

impl GatewayProcess {
    /// Starts replica `index` of `args.gateway_bin` against `kubeconfig` and waits until its
    /// `/readyz` answers 200.
    pub async fn start(
        index: usize,
        args: &Args,
        kubeconfig: &Path,
        http: &HttpClient,
    ) -> anyhow::Result<Self> {
        let default_bin = || gateway_envtest::workspace_root().join("target/release/gateway");
        let bin = args.gateway_bin.clone().unwrap_or_else(default_bin);
        let hint = "cargo build --release, or --gateway-bin";
        anyhow::ensure!(
            bin.is_file(),
            "no gateway binary at {} ({hint})",
            bin.display()
        );
        let [api, health, metrics, peer] = free_ports::<4>()?.map(|p| format!("127.0.0.1:{p}"));
        let log = log_dir(args).join(format!("gateway-{index}.log"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let ours = [
            ("--listen", &api),
            ("--health-listen", &health),
            ("--metrics-listen", &metrics),
            // Replicas on one host form their ring over loopback (the advertised address is
            // the bound one).
            ("--peer-listen", &peer),
        ];
        let child = Command::new(&bin)
            .args(ours.iter().flat_map(|(flag, addr)| [*flag, addr.as_str()]))
            .args(["--namespace", &args.namespace, "--kubeconfig"])
            .arg(kubeconfig)
            .args(&args.gateway_args)
            .stdin(Stdio::null())
            .stderr(out.try_clone()?)
            .stdout(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} ({hint})", bin.display()))?;
        let pid = child.id().context("the gateway exited at once")?;
        let (api, metrics) = (format!("http://{api}"), format!("http://{metrics}"));
        let mut p = GatewayProcess {
            child,
            pid,
            api,
            metrics,
            log,
        };
        let (url, deadline) = (
            format!("http://{health}/readyz"),
            Instant::now() + args.ready_timeout,
        );
        // Bounded by the deadline.
        loop {
            if let Some(status) = p.child.try_wait()? {
                bail!(
                    "gateway {} exited ({status}) before it was ready; log tail:\n{}",
                    p.api,
                    log_tail(&p.log)
                );
            }
            let last = match get(http, &url, Duration::from_secs(2)).await {
                Ok((200, _)) => return Ok(p),
                Ok((code, body)) => format!("{code} {}", String::from_utf8_lossy(&body)),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                let waited = args.ready_timeout;
                bail!(
                    "gateway {} not ready after {waited:?} (last /readyz: {last}); log tail:\n{}",
                    p.api,
                    log_tail(&p.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `Some(status)` if the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(status) => status.map(|s| s.to_string()),
            Err(e) => Some(e.to_string()),
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        // `kill(1)`: the crate forbids `unsafe`, so no libc::kill.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Process figures of a group of processes, measured across a phase: CPU seconds at the
/// start, then resident memory and the CPU spent at the end (`gateway::telemetry::process`).
pub struct Meter {
    source: &'static str,
    pids: Vec<u32>,
    cpu_before: Vec<Option<f64>>,
}

impl Meter {
    /// Starts measuring `pids`, described as `source`.
    pub fn start(source: &'static str, pids: Vec<u32>) -> Self {
        let cpu_before = pids.iter().map(|p| Usage::cpu_seconds(*p)).collect();
        Meter {
            source,
            pids,
            cpu_before,
        }
    }

    /// The figures since [`Meter::start`]; `None` without processes.
    pub fn finish(&self) -> Option<Processes> {
        let usage: Vec<Option<Usage>> = self.pids.iter().map(|p| Usage::read(Some(*p))).collect();
        let mib = |f: fn(&Usage) -> u64| -> Vec<f64> {
            usage.iter().flatten().map(|u| f(u) as f64 / MIB).collect()
        };
        let cpu = self.cpu_before.iter().zip(&usage);
        (!self.pids.is_empty()).then(|| Processes {
            source: self.source.into(),
            rss_mib: mib(|u| u.resident_bytes),
            peak_mib: mib(|u| u.peak_resident_bytes),
            cpu_seconds: cpu
                .filter_map(|(b, a)| Some(a.as_ref()?.cpu_seconds - (*b)?))
                .collect(),
        })
    }
}

const MIB: f64 = 1048576.0;

/// The control plane's processes — this process's `kube-apiserver` and `etcd` children (the
/// ones `gateway_envtest` started), in that order.
pub fn control_plane_pids() -> Vec<u32> {
    let me = std::process::id();
    let mut found: Vec<(usize, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces: split at the last ')'.
            let (head, rest) = stat.rsplit_once(") ")?;
            let comm = head.split_once(" (")?.1;
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            let rank = ["kube-apiserver", "etcd"].iter().position(|n| *n == comm)?;
            (ppid == me).then_some((rank, pid))
        })
        .collect();
    found.sort_unstable();
    found.into_iter().map(|(_, pid)| pid).collect()
}

/// A control plane with the RR CRD, the RR namespace created, and the RR write path warm.
pub async fn start_control_plane(args: &Args, kubeconfig: PathBuf) -> anyhow::Result<ControlPlane> {
    let (namespace, storage) = (args.namespace.as_str(), args.etcd_storage);
    let storage = match storage {
        EtcdStorage::Tmpfs => Storage::Tmpfs,
        EtcdStorage::Disk => Storage::Disk,
    };
    let (crds, kubeconfig) = (gateway_envtest::default_crds(), Some(kubeconfig));
    let options = Options {
        crds,
        storage,
        kubeconfig,
        ..Options::default()
    };
    let cp = ControlPlane::start(options)
        .await
        .context("starting the control plane")?;
    let client = cp.client()?;
    ensure_namespace(&client, namespace).await?;
    wait_rr_watch(&client, namespace, Duration::from_secs(60)).await?;
    let began = Instant::now();
    crate::floor::prime(&client, namespace, Duration::from_secs(60)).await?;
    eprintln!(
        "control plane ready; first RR writes took {:?}",
        began.elapsed()
    );
    Ok(cp)
}

/// Waits until a watch on RRs can start. Right after the CRD is installed the apiserver
/// answers watches with 429 "storage is (re)initializing" for a moment; gateways started then
/// would begin with a failed watch, which is not what a benchmark should measure.
async fn wait_rr_watch(client: &kube::Client, ns: &str, timeout: Duration) -> anyhow::Result<()> {
    let api: Api<RemediationRequest> = Api::namespaced(client.clone(), ns);
    let (deadline, params) = (Instant::now() + timeout, WatchParams::default().timeout(1));
    // Bounded by the deadline.
    loop {
        let watch = api.watch(&params, "0");
        let error = match tokio::time::timeout(Duration::from_secs(5), watch).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        if Instant::now() >= deadline {
            bail!("a watch on RRs could not start within {timeout:?}: {error}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates `namespace` unless it exists.
pub async fn ensure_namespace(client: &kube::Client, namespace: &str) -> anyhow::Result<()> {
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))?;
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating namespace {namespace}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meters_this_process() {
        let m = Meter::start("self", vec![std::process::id()]);
        let p = m.finish().unwrap_or_else(|| panic!("no figures"));
        assert_eq!(
            (p.rss_mib.len(), p.peak_mib.len(), p.cpu_seconds.len()),
            (1, 1, 1)
        );
        assert!(p.rss_mib[0] > 0.0 && p.peak_mib[0] >= p.rss_mib[0], "{p:?}");
        assert!(p.cpu_seconds[0] >= 0.0);
        assert!(Meter::start("none", Vec::new()).finish().is_none());
        // Without a self-started control plane, this process has no such children.
        assert!(control_plane_pids().is_empty());
    }

    #[test]
    fn reads_proc_through_the_gateways_reader() {
        use gateway::telemetry::process::{parse_stat, parse_status};
        let status =
            "Name:\tgateway\nVmPeak:\t  300000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(parse_status(status), Some((40960 * 1024, 51200 * 1024)));
        assert_eq!(parse_status("Name: x\n"), None);
        let stat =
            "1234 (gate way) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 4 0 100 0 0";
        assert_eq!(parse_stat(stat), Some(3.25));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn ports_are_distinct() {
        let ports = free_ports::<3>().unwrap_or_else(|e| panic!("{e}"));
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
    }
}
