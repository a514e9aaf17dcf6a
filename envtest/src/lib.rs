//! A real Kubernetes control plane for tests, benchmarks and the local run: etcd and
//! kube-apiserver, built from their own Go modules (`scripts/build-control-plane.sh`), started
//! as local processes with RBAC, token authentication and the CRDs you name — the role
//! controller-runtime's envtest plays in Go (DESIGN.md §9).
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use gateway_envtest::{ControlPlane, Options};
//!
//! let control_plane = ControlPlane::start(Options {
//!     crds: gateway_envtest::default_crds(),
//!     ..Options::default()
//! })
//! .await?;
//! let namespace = control_plane.create_namespace("my-test").await?;
//! let client = control_plane.client()?;
//! # Ok(()) }
//! ```
//!
//! Both processes stop when the [`ControlPlane`] is dropped, and die with the process that
//! started them however it ends (see `process`). A test binary usually shares one control
//! plane between its tests ([`shared`]) and gives each test its own namespace.
//!
//! # Layout
//! - [`ControlPlane`] (this file): start-up order, readiness, the handles tests use, and the
//!   stop/start hooks for fault tests.
//! - `binaries`: where the etcd and kube-apiserver binaries come from.
//! - `process`: supervised children that cannot outlive their owner.
//! - `workdir`: the private directory (tmpfs by default) and the sweep of abandoned ones.
//! - `credentials`: the token file (admin and unprivileged user) and the service-account key.
//! - `kubeconfig`: the kubeconfig file and the kube-rs configuration built from it.
//! - `crds`: installing CRDs and waiting until they are served.

mod binaries;
mod crds;
mod credentials;
mod kubeconfig;
mod process;
mod workdir;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

pub use binaries::BIN_DIR_ENV;
pub use credentials::{ADMIN_USER, UNPRIVILEGED_USER};
pub use workdir::Storage;

use credentials::Credentials;
use process::Supervised;
use workdir::WorkDir;

/// How long kube-apiserver gets to exit on SIGTERM before it is killed (it takes about a
/// second).
const APISERVER_STOP_GRACE: Duration = Duration::from_secs(15);

/// How long etcd gets to exit on SIGTERM before it is killed. Its graceful stop waits for open
/// watch streams (kube-apiserver's) for its whole request timeout, 7 s, which would make every
/// fault test slow. Killing it loses nothing: a killed process's writes are in the page cache,
/// and fsync (the only thing that would protect against more) is off anyway.
const ETCD_STOP_GRACE: Duration = Duration::from_secs(1);

/// How often readiness is polled during start-up.
const READY_POLL: Duration = Duration::from_millis(50);

/// Deadline of one readiness probe; a probe that hangs is a failed probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What to start.
#[derive(Clone, Debug)]
pub struct Options {
    /// CRD files to install (a file may hold several YAML documents). Default: none; the
    /// gateway's own are [`default_crds`].
    pub crds: Vec<PathBuf>,
    /// Where etcd keeps its data. Default: tmpfs.
    pub storage: Storage,
    /// Folder with `etcd` and `kube-apiserver`. Default: `$ENVTEST_BIN_DIR`, else the folder the
    /// build script prints (building the binaries if they are not cached yet).
    pub bin_dir: Option<PathBuf>,
    /// Also write the admin kubeconfig here once the control plane is ready, and remove it when
    /// the control plane is dropped. Default: only inside the control plane's directory.
    pub kubeconfig: Option<PathBuf>,
    /// Extra kube-apiserver flags, appended after the defaults (a repeated flag wins).
    pub apiserver_args: Vec<String>,
    /// Limit for start-up: etcd healthy, kube-apiserver ready, CRDs served. Also applies to
    /// each restart. Default: 120 s (generous: a loaded 2-core CI machine is slow, a warm
    /// start normally takes a few seconds).
    pub startup_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            crds: Vec::new(),
            storage: Storage::default(),
            bin_dir: None,
            kubeconfig: None,
            apiserver_args: Vec::new(),
            startup_timeout: Duration::from_secs(120),
        }
    }
}

/// The workspace this package belongs to (where `deploy/` and `target/` are).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The gateway's CRDs: `deploy/crds/remediationrequests.yaml`.
pub fn default_crds() -> Vec<PathBuf> {
    vec![workspace_root().join("deploy/crds/remediationrequests.yaml")]
}

/// One control plane per test binary, with [`default_crds`] installed, started by the first
/// caller. It is never dropped: its processes die with the test process, and its directory
/// is swept by the next start. Give each test its own namespace
/// ([`ControlPlane::create_namespace`]) and its own client ([`ControlPlane::client`]; a client
/// belongs to the tokio runtime that created it, and every `#[tokio::test]` has its own).
pub async fn shared() -> Result<&'static ControlPlane> {
    static SHARED: tokio::sync::OnceCell<ControlPlane> = tokio::sync::OnceCell::const_new();
    SHARED
        .get_or_try_init(|| {
            ControlPlane::start(Options {
                crds: default_crds(),
                ..Options::default()
            })
        })
        .await
}

/// A running etcd + kube-apiserver. Dropping it kills both and removes its directory.
#[derive(Debug)]
pub struct ControlPlane {
    // Field order is drop order: the apiserver goes before etcd, the directory last.
    apiserver: Supervised,
    etcd: Supervised,
    admin_config: kube::Config,
    url: String,
    etcd_url: String,
    credentials: Credentials,
    /// The kubeconfig callers are given: `Options::kubeconfig` if set, else the one inside
    /// the directory.
    kubeconfig: PathBuf,
    /// Whether `kubeconfig` lies outside the directory (and must be removed on drop).
    kubeconfig_outside: bool,
    bin_dir: PathBuf,
    startup_timeout: Duration,
    workdir: WorkDir,
}

impl ControlPlane {
    /// Starts etcd, then kube-apiserver, waits until it is ready, writes the kubeconfig and
    /// installs the CRDs. On failure the error ends with the log of the program at fault.
    pub async fn start(options: Options) -> Result<Self> {
        let began = Instant::now();
        let deadline = began + options.startup_timeout;
        let bin_dir = binaries::locate(options.bin_dir.as_deref()).await?;
        let workdir = WorkDir::create(options.storage)?;
        let dir = workdir.path();
        let credentials = Credentials::generate(dir)?;
        let [etcd_port, etcd_peer_port, apiserver_port] = free_ports()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let url = format!("https://127.0.0.1:{apiserver_port}");

        let etcd_peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let etcd_args = vec![
            "--name=envtest".to_owned(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={etcd_peer_url}"),
            format!("--initial-advertise-peer-urls={etcd_peer_url}"),
            format!("--initial-cluster=envtest={etcd_peer_url}"),
            // Durability against power loss is worthless for a throw-away test cluster, and
            // fsync dominates etcd's write latency.
            "--unsafe-no-fsync=true".to_owned(),
        ];
        let etcd = Supervised::new(
            "etcd",
            bin_dir.join("etcd"),
            etcd_args,
            dir.join("etcd.log"),
        );

        let cert_dir = dir.join("certs");
        let mut apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--secure-port={apiserver_port}"),
            // kube-apiserver writes a self-signed CA and serving certificate here on first
            // start, and reuses them on restart.
            format!("--cert-dir={}", cert_dir.display()),
            format!("--token-auth-file={}", credentials.token_file.display()),
            "--authorization-mode=RBAC".to_owned(),
            format!("--service-account-issuer={url}/"),
            format!(
                "--service-account-signing-key-file={}",
                credentials.service_account_key.display()
            ),
            format!(
                "--service-account-key-file={}",
                credentials.service_account_public_key.display()
            ),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--allow-privileged=true".to_owned(),
            // No controller-manager runs, so nothing would create the default ServiceAccount
            // that this admission plugin insists on.
            "--disable-admission-plugins=ServiceAccount".to_owned(),
            // Since 1.37 the endpoint reconciler refuses a loopback advertise address; with no
            // reconciler the `kubernetes` Service simply has no endpoints, which nothing here
            // needs.
            "--endpoint-reconciler-type=none".to_owned(),
            // Open watches would otherwise hold a stop (the fault-test hooks) for 15 s.
            "--shutdown-watch-termination-grace-period=1s".to_owned(),
        ];
        apiserver_args.extend(options.apiserver_args.iter().cloned());
        let apiserver = Supervised::new(
            "kube-apiserver",
            bin_dir.join("kube-apiserver"),
            apiserver_args,
            dir.join("kube-apiserver.log"),
        );

        etcd.start().await?;
        wait_etcd(&etcd, etcd_port, deadline)
            .await
            .map_err(|error| etcd.explain(error))?;
        apiserver.start().await?;
        let ca = wait_serving_cert(&apiserver, &cert_dir, deadline).await?;
        let kubeconfig_text = kubeconfig::render(
            &url,
            &ca,
            &credentials.admin_token,
            &credentials.unprivileged_token,
        )?;
        let inside = dir.join("kubeconfig");
        kubeconfig::write(&inside, &kubeconfig_text)?;
        let admin_config = kubeconfig::admin_config(&kubeconfig_text).await?;

        let mut control_plane = Self {
            apiserver,
            etcd,
            admin_config,
            url,
            etcd_url,
            credentials,
            kubeconfig: inside,
            kubeconfig_outside: false,
            bin_dir,
            startup_timeout: options.startup_timeout,
            workdir,
        };
        control_plane.wait_apiserver(deadline).await?;
        crds::install(&control_plane.client()?, &options.crds, deadline)
            .await
            .map_err(|error| control_plane.apiserver.explain(error))?;
        if let Some(path) = options.kubeconfig {
            kubeconfig::write(&path, &kubeconfig_text)?;
            control_plane.kubeconfig = path;
            control_plane.kubeconfig_outside = true;
        }
        tracing::info!(
            url = %control_plane.url,
            dir = %control_plane.dir().display(),
            elapsed = ?began.elapsed(),
            "control plane ready"
        );
        Ok(control_plane)
    }

    /// A new admin client (user [`ADMIN_USER`], group `system:masters`). Call it in the
    /// runtime that will use the client.
    pub fn client(&self) -> Result<kube::Client> {
        Ok(kube::Client::try_from(self.admin_config.clone())?)
    }

    /// A new client authenticating with `token` (e.g. [`Self::unprivileged_token`]).
    pub fn client_for_token(&self, token: &str) -> Result<kube::Client> {
        Ok(kube::Client::try_from(kubeconfig::with_token(
            &self.admin_config,
            token,
        )?)?)
    }

    /// A new client for the unprivileged user ([`UNPRIVILEGED_USER`]).
    pub fn unprivileged_client(&self) -> Result<kube::Client> {
        self.client_for_token(&self.credentials.unprivileged_token)
    }

    /// The admin client configuration, for code that builds its own client (e.g. with its
    /// own timeouts).
    pub fn config(&self) -> kube::Config {
        self.admin_config.clone()
    }

    /// Path of the admin kubeconfig (it also has an `envtest-unprivileged` context).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The apiserver's URL, `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The admin's bearer token.
    pub fn admin_token(&self) -> &str {
        &self.credentials.admin_token
    }

    /// The unprivileged user's bearer token.
    pub fn unprivileged_token(&self) -> &str {
        &self.credentials.unprivileged_token
    }

    /// etcd's client URL, `http://127.0.0.1:<port>`.
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// The folder the binaries came from (it also holds `kubectl`).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The control plane's private directory (data, certificates, logs).
    pub fn dir(&self) -> &Path {
        self.workdir.path()
    }

    /// kube-apiserver's log file (all runs, appended).
    pub fn apiserver_log(&self) -> &Path {
        self.apiserver.log_path()
    }

    /// etcd's log file (all runs, appended).
    pub fn etcd_log(&self) -> &Path {
        self.etcd.log_path()
    }

    /// Creates a namespace named `<prefix>-<random suffix>` and returns its name.
    pub async fn create_namespace(&self, prefix: &str) -> Result<String> {
        let namespace = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{prefix}-")),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let created = Api::<Namespace>::all(self.client()?)
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("creating a namespace {prefix}-*"))?;
        created
            .metadata
            .name
            .context("the created namespace has no name")
    }

    /// Stops kube-apiserver (SIGTERM, then SIGKILL after a grace period). etcd keeps running.
    pub async fn stop_apiserver(&self) -> Result<()> {
        self.apiserver.stop(APISERVER_STOP_GRACE).await
    }

    /// Starts kube-apiserver again, on the same port with the same certificates and tokens,
    /// and waits until it is ready (which needs etcd).
    pub async fn start_apiserver(&self) -> Result<()> {
        self.apiserver.start().await?;
        self.wait_apiserver(Instant::now() + self.startup_timeout)
            .await
    }

    /// Stops etcd (SIGTERM, then SIGKILL after a second), keeping its data.
    /// kube-apiserver keeps running and reports itself unready until etcd is back.
    pub async fn stop_etcd(&self) -> Result<()> {
        self.etcd.stop(ETCD_STOP_GRACE).await
    }

    /// Starts etcd again on the same ports with the same data, and waits until it is healthy.
    /// kube-apiserver reconnects by itself.
    pub async fn start_etcd(&self) -> Result<()> {
        self.etcd.start().await?;
        let port = self
            .etcd_url
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or(0);
        wait_etcd(&self.etcd, port, Instant::now() + self.startup_timeout)
            .await
            .map_err(|error| self.etcd.explain(error))
    }

    /// If a program that should be running has exited, which one and the end of its log.
    /// A program stopped through a hook is not reported.
    pub fn unexpected_exit(&self) -> Option<String> {
        [&self.apiserver, &self.etcd]
            .into_iter()
            .find_map(|program| {
                let status = program.exited()?;
                Some(format!(
                    "{} exited ({status}); {}",
                    program.name(),
                    program.log_tail()
                ))
            })
    }

    /// Stops kube-apiserver, then etcd, each gracefully, then removes everything the drop
    /// would. Prefer it to a plain drop where there is time to wait.
    pub async fn shutdown(self) -> Result<()> {
        let apiserver = self.apiserver.stop(APISERVER_STOP_GRACE).await;
        let etcd = self.etcd.stop(ETCD_STOP_GRACE).await;
        apiserver.and(etcd)
    }

    /// Waits until kube-apiserver answers `/readyz` with `ok`.
    async fn wait_apiserver(&self, deadline: Instant) -> Result<()> {
        let client = self.client()?;
        loop {
            if !self.apiserver.is_running() {
                return Err(self
                    .apiserver
                    .explain(anyhow::anyhow!("kube-apiserver did not become ready")));
            }
            let request = http::Request::get("/readyz").body(Vec::new())?;
            let last = match tokio::time::timeout(PROBE_TIMEOUT, client.request_text(request)).await
            {
                Ok(Ok(body)) if body.trim() == "ok" => return Ok(()),
                Ok(Ok(body)) => body,
                Ok(Err(error)) => error.to_string(),
                Err(_) => "/readyz timed out".to_owned(),
            };
            if Instant::now() >= deadline {
                return Err(self.apiserver.explain(anyhow::anyhow!(
                    "kube-apiserver was not ready in time; last /readyz: {last}"
                )));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // A kubeconfig that points at a dead server only confuses whoever finds it.
        if self.kubeconfig_outside {
            let _ = std::fs::remove_file(&self.kubeconfig);
        }
    }
}

/// Three distinct free loopback ports. The listeners are held until all three are chosen, so
/// the kernel does not hand out one port twice; a program could still take one before etcd or
/// kube-apiserver binds it, which start-up then reports.
fn free_ports() -> Result<[u16; 3]> {
    let listeners = [
        TcpListener::bind("127.0.0.1:0")?,
        TcpListener::bind("127.0.0.1:0")?,
        TcpListener::bind("127.0.0.1:0")?,
    ];
    let mut ports = [0; 3];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// Waits until etcd answers `/health` with `"health":"true"`.
async fn wait_etcd(etcd: &Supervised, port: u16, deadline: Instant) -> Result<()> {
    loop {
        if !etcd.is_running() {
            bail!("etcd did not become healthy");
        }
        if let Ok(true) = tokio::time::timeout(PROBE_TIMEOUT, etcd_healthy(port)).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("etcd was not healthy in time");
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// One `/health` probe, in plain HTTP/1.0 (the connection closes after the answer), so no
/// HTTP client is needed for etcd.
async fn etcd_healthy(port: u16) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    probe
        .await
        .is_ok_and(|answer| String::from_utf8_lossy(&answer).contains(r#""health":"true""#))
}

/// Waits until kube-apiserver has written its serving certificate and returns the
/// certificate file (leaf and self-signed CA, PEM), which clients are told to trust.
async fn wait_serving_cert(
    apiserver: &Supervised,
    cert_dir: &Path,
    deadline: Instant,
) -> Result<Vec<u8>> {
    // The key is written after the certificate, so once it exists the certificate is complete.
    let (cert, key) = (
        cert_dir.join("apiserver.crt"),
        cert_dir.join("apiserver.key"),
    );
    loop {
        if key.is_file() {
            return std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()));
        }
        if !apiserver.is_running() {
            return Err(apiserver.explain(anyhow::anyhow!(
                "kube-apiserver wrote no serving certificate"
            )));
        }
        if Instant::now() >= deadline {
            return Err(apiserver.explain(anyhow::anyhow!(
                "kube-apiserver wrote no serving certificate in time"
            )));
        }
        tokio::time::sleep(READY_POLL).await;
    }
}
