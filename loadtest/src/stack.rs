//! Self-start mode: a control plane from `gateway_envtest` and N gateway processes against it,
//! each on its own loopback ports, all stopped when the run ends (or when this process dies:
//! the children are killed on drop, the control plane stops on drop).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use gateway_envtest::{ControlPlane, Options, Storage};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DynamicObject, ObjectMeta, PostParams, WatchParams};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::cli::EtcdStorage;
use crate::http_sink::{HttpClient, get};

/// A gateway process started by this tool.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    /// Its process id, for `/proc/<pid>/status`.
    pub pid: u32,
    /// API base URL.
    pub api: String,
    /// Health base URL.
    pub health: String,
    /// Metrics base URL.
    pub metrics: String,
    /// Its combined stdout/stderr.
    pub log: PathBuf,
}

/// `n` distinct free loopback ports (bound together, then released).
fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let mut ports = [0u16; N];
    for (p, l) in ports.iter_mut().zip(&listeners) {
        *p = l.local_addr()?.port();
    }
    Ok(ports)
}

/// The last `n` lines of a file, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Options for starting gateways.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// The binary.
    pub bin: PathBuf,
    /// Extra arguments, after the ones this tool sets.
    pub extra_args: Vec<String>,
    /// Controller namespace.
    pub namespace: String,
    /// Kubeconfig to pass.
    pub kubeconfig: PathBuf,
    /// Folder for logs.
    pub log_dir: PathBuf,
    /// How long to wait for `/readyz`.
    pub ready_timeout: Duration,
}

impl GatewayProcess {
    /// Starts replica `index` and waits until its `/readyz` answers 200.
    pub async fn start(
        index: usize,
        o: &GatewayOptions,
        http: &HttpClient,
    ) -> anyhow::Result<Self> {
        let [api, health, metrics] = free_ports::<3>()?;
        std::fs::create_dir_all(&o.log_dir)
            .with_context(|| format!("creating {}", o.log_dir.display()))?;
        let log = o.log_dir.join(format!("gateway-{index}.log"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(&o.bin)
            .arg("--listen")
            .arg(format!("127.0.0.1:{api}"))
            .arg("--health-listen")
            .arg(format!("127.0.0.1:{health}"))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics}"))
            .arg("--namespace")
            .arg(&o.namespace)
            .arg("--kubeconfig")
            .arg(&o.kubeconfig)
            .args(&o.extra_args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it with `cargo build --release`)",
                    o.bin.display()
                )
            })?;
        let pid = child.id().context("the gateway exited at once")?;
        let mut p = GatewayProcess {
            child,
            pid,
            api: format!("http://127.0.0.1:{api}"),
            health: format!("http://127.0.0.1:{health}"),
            metrics: format!("http://127.0.0.1:{metrics}"),
            log,
        };
        p.wait_ready(http, o.ready_timeout).await?;
        Ok(p)
    }

    async fn wait_ready(&mut self, http: &HttpClient, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let url = format!("{}/readyz", self.health);
        // Bounded by the deadline.
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "gateway {} exited ({status}) before it was ready; log tail:\n{}",
                    self.api,
                    log_tail(&self.log, 30)
                );
            }
            let last = match get(http, &url, Duration::from_secs(2)).await {
                Ok((200, _)) => return Ok(()),
                Ok((code, body)) => format!("{code} {}", String::from_utf8_lossy(&body)),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "gateway {} not ready after {timeout:?} (last /readyz: {last}); log tail:\n{}",
                    self.api,
                    log_tail(&self.log, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `Some(status)` if the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(s)) => Some(s.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // `kill(1)`: the crate forbids `unsafe`, so no libc::kill.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
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

/// Resident set and its peak from `/proc/<pid>/status`, in bytes.
pub fn proc_memory(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_proc_status(&text)
}

/// User + system CPU seconds of `pid` from `/proc/<pid>/stat`, assuming the usual 100 clock
/// ticks per second (`getconf CLK_TCK`; reading it needs libc, which this crate avoids).
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    parse_proc_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU seconds from the text of `/proc/<pid>/stat`.
pub fn parse_proc_stat(text: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// `(VmRSS, VmHWM)` in bytes from the text of `/proc/<pid>/status`.
pub fn parse_proc_status(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kb * 1024)
        })
    };
    Some((field("VmRSS")?, field("VmHWM")?))
}

/// A control plane with the RR CRD, and the RR namespace created.
pub async fn start_control_plane(
    storage: EtcdStorage,
    namespace: &str,
    kubeconfig: PathBuf,
) -> anyhow::Result<ControlPlane> {
    let options = Options {
        crds: gateway_envtest::default_crds(),
        storage: match storage {
            EtcdStorage::Tmpfs => Storage::Tmpfs,
            EtcdStorage::Disk => Storage::Disk,
        },
        kubeconfig: Some(kubeconfig),
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
async fn wait_rr_watch(
    client: &kube::Client,
    namespace: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &crate::check::rr_resource());
    let deadline = Instant::now() + timeout;
    // Bounded by the deadline.
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(5),
            api.watch(&WatchParams::default().timeout(1), "0"),
        )
        .await;
        let error = match attempt {
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
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating namespace {namespace}")),
    }
}

/// The default gateway binary: `<workspace>/target/release/gateway`.
pub fn default_gateway_bin() -> PathBuf {
    gateway_envtest::workspace_root().join("target/release/gateway")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_status() {
        let text = "Name:\tgateway\nVmPeak:\t  300000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nThreads:\t4\n";
        assert_eq!(parse_proc_status(text), Some((40960 * 1024, 51200 * 1024)));
        assert_eq!(parse_proc_status("Name: x\n"), None);
        // Our own process has both fields.
        assert!(proc_memory(std::process::id()).is_some_and(|(rss, hwm)| rss > 0 && hwm >= rss));
    }

    #[test]
    fn reads_proc_stat() {
        let text =
            "1234 (gate way) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 4 0 100 0 0";
        assert_eq!(parse_proc_stat(text), Some(3.25));
        assert_eq!(parse_proc_stat("garbage"), None);
        assert!(proc_cpu_seconds(std::process::id()).is_some());
    }

    #[test]
    fn ports_are_distinct() {
        let ports = free_ports::<3>().unwrap_or_else(|e| panic!("{e}"));
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
    }
}
