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
//! # Faults
//! For tests of what a client does when the control plane misbehaves:
//! - **Network** ([`Options::proxy`]): a TCP proxy in front of kube-apiserver, which every
//!   client of the control plane ([`ControlPlane::client`], [`ControlPlane::kubeconfig_path`])
//!   goes through; [`ControlPlane::fault`] sets a [`Fault`]: latency, a blackhole, resets.
//!   The control plane's own readiness checks bypass it ([`ControlPlane::direct_client`]).
//! - **Processes**: [`ControlPlane::pause_apiserver`] / [`ControlPlane::pause_etcd`] (SIGSTOP;
//!   `resume_*` sends SIGCONT), and [`ControlPlane::stop_apiserver`] / `start_apiserver`,
//!   [`ControlPlane::stop_etcd`] / `start_etcd` (the data is kept).
//! - **History**: [`ControlPlane::compact_etcd`] compacts etcd;
//!   [`ControlPlane::expire_watch_history`] also restarts kube-apiserver, after which every
//!   watch resuming from an earlier resourceVersion gets 410 Gone.
//!
//! The CLI, `gateway-envtest up --proxy --control <path>`, takes the same faults as commands
//! (see [`control::HELP`]).
//!
//! A fresh kube-apiserver serves the first RemediationRequest write slowly (it builds the
//! CRD's serving stack); [`ControlPlane::warm_up_rr_writes`] does that before a test times
//! anything, and `up` does it before it prints `ready`.
//!
//! # Layout
//! - [`ControlPlane`] (this file): start-up order, readiness, the handles tests use, and the
//!   fault hooks.
//! - `binaries`: where the etcd and kube-apiserver binaries come from.
//! - `process`: supervised children that cannot outlive their owner; pausing them.
//! - [`proxy`]: the fault-injecting TCP proxy.
//! - `etcd`: etcd's health probe and the v3 JSON calls (revision, put, compaction).
//! - [`control`]: the command syntax of the CLI's control channel.
//! - `warm_up`: warming the RemediationRequest write path.
//! - `workdir`: the private directory (tmpfs by default) and the sweep of abandoned ones.
//! - `credentials`: the token file (admin and unprivileged user) and the service-account key.
//! - `kubeconfig`: the kubeconfig file and the kube-rs configuration built from it.
//! - `crds`: installing CRDs and waiting until they are served.

mod binaries;
pub mod control;
mod crds;
mod credentials;
mod etcd;
mod kubeconfig;
mod process;
pub mod proxy;
mod warm_up;
mod workdir;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::time::Instant;

pub use binaries::BIN_DIR_ENV;
pub use credentials::{ADMIN_USER, UNPRIVILEGED_USER};
pub use proxy::{Fault, Proxy};
pub use warm_up::RR_CRD;
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

/// The etcd key [`ControlPlane::expire_watch_history`] writes, outside kube-apiserver's
/// `/registry` prefix so that no Kubernetes object changes.
const EXPIRY_MARKER_KEY: &str = "/gateway-envtest/watch-history-expired";

/// What kube-apiserver's audit log records: the TokenReviews and SubjectAccessReviews made
/// against it (who made them, not their content), and with [`Options::audit_rr_writes`] the
/// writes of RRs (create, and patch or update of their status); nothing else, so that tests
/// can count the API calls a gateway's authentication (and deduplication) cost without
/// slowing every other request.
fn audit_policy_text(rr_writes: bool) -> String {
    let writes = if rr_writes {
        "  - level: Metadata
    verbs: [create, patch, update]
    resources:
      - group: kubernaut.ai
        resources: [remediationrequests, remediationrequests/status]
"
    } else {
        ""
    };
    format!(
        "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    resources:
      - group: authentication.k8s.io
        resources: [tokenreviews]
      - group: authorization.k8s.io
        resources: [subjectaccessreviews]
{writes}  - level: None
"
    )
}

/// The gateway's ClusterRole for senders (deploy/rbac.yaml), which
/// [`ControlPlane::signal_sender_token`] binds.
pub const SIGNAL_SOURCE_ROLE: &str = "gateway-signal-source";

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
    /// Put a fault-injecting TCP proxy ([`proxy`]) in front of kube-apiserver: the kubeconfig,
    /// [`ControlPlane::client`], [`ControlPlane::config`] and [`ControlPlane::url`] go through
    /// it, and [`ControlPlane::fault`] changes what it does. Default: off (clients connect
    /// directly).
    pub proxy: bool,
    /// Also audit every RR write (create, status patch or update), for tests that count them
    /// ([`ControlPlane::audit_events`]). Default: off (each audited request is written before
    /// its response, which a load test would measure).
    pub audit_rr_writes: bool,
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
            proxy: false,
            audit_rr_writes: false,
        }
    }
}

/// The workspace this package belongs to (where `deploy/` and `target/` are).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The gateway's CRD, `deploy/crds/remediationrequests.yaml`, and the admission policy that
/// keeps an RR's spec immutable, `deploy/policy/spec-immutable.yaml`.
pub fn default_crds() -> Vec<PathBuf> {
    vec![
        workspace_root().join("deploy/crds/remediationrequests.yaml"),
        workspace_root().join("deploy/policy/spec-immutable.yaml"),
    ]
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
    // Field order is drop order: the proxy goes first, the apiserver before etcd, the
    // directory last.
    proxy: Option<Proxy>,
    apiserver: Supervised,
    etcd: Supervised,
    /// What clients are given: through the proxy if there is one.
    admin_config: kube::Config,
    /// Straight to kube-apiserver, for readiness checks and set-up, which faults must not
    /// disturb.
    direct_config: kube::Config,
    /// What clients are given: the proxy's URL if there is one, else `apiserver_url`.
    url: String,
    apiserver_url: String,
    etcd_url: String,
    etcd_port: u16,
    credentials: Credentials,
    /// Names of the CRDs installed at start-up.
    crds: Vec<String>,
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
        // Bound (and held) before the other ports are chosen, so that none of them is its.
        let proxy_listener = options.proxy.then(proxy::listen).transpose()?;
        let [etcd_port, etcd_peer_port, apiserver_port] = free_ports()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let apiserver_url = format!("https://127.0.0.1:{apiserver_port}");
        let proxy = proxy_listener
            .map(|listener| {
                Proxy::start(
                    listener,
                    SocketAddr::from((Ipv4Addr::LOCALHOST, apiserver_port)),
                )
            })
            .transpose()?;
        let url = proxy.as_ref().map_or_else(
            || apiserver_url.clone(),
            |proxy| format!("https://{}", proxy.addr()),
        );

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
        let audit_policy = dir.join("audit-policy.yaml");
        std::fs::write(&audit_policy, audit_policy_text(options.audit_rr_writes))
            .with_context(|| format!("writing {}", audit_policy.display()))?;
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
            format!("--service-account-issuer={apiserver_url}/"),
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
            // Reviews the gateway makes, one JSON line each ([`ControlPlane::audit_events`]).
            format!("--audit-policy-file={}", audit_policy.display()),
            format!("--audit-log-path={}", dir.join("audit.log").display()),
            "--audit-log-format=json".to_owned(),
            "--audit-log-mode=blocking".to_owned(),
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
        let render = |server: &str| {
            kubeconfig::render(
                server,
                &ca,
                &credentials.admin_token,
                &credentials.unprivileged_token,
            )
        };
        let kubeconfig_text = render(&url)?;
        let inside = dir.join("kubeconfig");
        kubeconfig::write(&inside, &kubeconfig_text)?;
        let admin_config = kubeconfig::admin_config(&kubeconfig_text).await?;
        let direct_config = kubeconfig::admin_config(&render(&apiserver_url)?).await?;

        let mut control_plane = Self {
            proxy,
            apiserver,
            etcd,
            admin_config,
            direct_config,
            url,
            apiserver_url,
            etcd_url,
            etcd_port,
            credentials,
            crds: Vec::new(),
            kubeconfig: inside,
            kubeconfig_outside: false,
            bin_dir,
            startup_timeout: options.startup_timeout,
            workdir,
        };
        control_plane.wait_apiserver(deadline).await?;
        let installed = crds::install(&control_plane.direct_client()?, &options.crds, deadline)
            .await
            .map_err(|error| control_plane.apiserver.explain(error))?;
        if installed.crds.iter().any(|crd| crd == warm_up::RR_CRD)
            && installed.policed.iter().any(|r| r == "remediationrequests")
        {
            warm_up::spec_immutability(&control_plane.direct_client()?, deadline)
                .await
                .map_err(|error| control_plane.apiserver.explain(error))?;
        }
        control_plane.crds = installed.crds;
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

    /// A new admin client (user [`ADMIN_USER`], group `system:masters`), through the proxy if
    /// there is one. Call it in the runtime that will use the client.
    pub fn client(&self) -> Result<kube::Client> {
        Ok(kube::Client::try_from(self.admin_config.clone())?)
    }

    /// A new admin client that connects straight to kube-apiserver, bypassing the proxy (the
    /// same as [`Self::client`] without one): to set up or check a test while a fault is on.
    pub fn direct_client(&self) -> Result<kube::Client> {
        Ok(kube::Client::try_from(self.direct_config.clone())?)
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

    /// The admin client configuration (through the proxy if there is one), for code that
    /// builds its own client (e.g. with its own timeouts).
    pub fn config(&self) -> kube::Config {
        self.admin_config.clone()
    }

    /// Path of the admin kubeconfig (it also has an `envtest-unprivileged` context); its
    /// server is [`Self::url`].
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The URL clients are given, `https://127.0.0.1:<port>`: the proxy's if there is one,
    /// else kube-apiserver's.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// kube-apiserver's own URL, `https://127.0.0.1:<port>`, whether or not there is a proxy.
    pub fn apiserver_url(&self) -> &str {
        &self.apiserver_url
    }

    /// The proxy in front of kube-apiserver, if [`Options::proxy`] asked for one.
    pub fn proxy(&self) -> Option<&Proxy> {
        self.proxy.as_ref()
    }

    /// Sets the proxy's fault ([`Proxy::set`]); [`Fault::None`] clears it. Fails if the
    /// control plane was started without a proxy.
    pub fn fault(&self, fault: Fault) -> Result<()> {
        let Some(proxy) = &self.proxy else {
            bail!("this control plane has no proxy (start it with `proxy: true` / `--proxy`)");
        };
        proxy.set(fault);
        Ok(())
    }

    /// Names of the CRDs installed at start-up.
    pub fn crds(&self) -> &[String] {
        &self.crds
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

    /// The audit events recorded so far for `resource` (`tokenreviews`,
    /// `subjectaccessreviews`, or with [`Options::audit_rr_writes`] `remediationrequests`
    /// writes, status subresource included: the only ones the policy records), each the JSON object kube-apiserver wrote, at stage
    /// `ResponseComplete`.
    pub fn audit_events(&self, resource: &str) -> Result<Vec<serde_json::Value>> {
        let path = self.dir().join("audit.log");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|event| {
                event["stage"] == "ResponseComplete" && event["objectRef"]["resource"] == resource
            })
            .collect())
    }

    /// A bearer token of the ServiceAccount `namespace/name` (created if missing), minted with
    /// the TokenRequest API for the apiserver's own audience, valid for `expiry` (at least 10
    /// minutes, as kube-apiserver requires).
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        expiry: Duration,
    ) -> Result<String> {
        use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
        use k8s_openapi::api::core::v1::ServiceAccount;
        let accounts = Api::<ServiceAccount>::namespaced(self.direct_client()?, namespace);
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match accounts.create(&PostParams::default(), &account).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("creating ServiceAccount {namespace}/{name}"));
            }
        }
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(i64::try_from(expiry.as_secs()).unwrap_or(i64::MAX)),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let minted = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("minting a token for {namespace}/{name}"))?;
        minted
            .status
            .and_then(|status| status.token)
            .filter(|token| !token.is_empty())
            .context("the TokenRequest answered without a token")
    }

    /// A token of the ServiceAccount `namespace/account` that may send signals to gateways whose
    /// RRs live in `namespace`: the account (created if missing) bound by a RoleBinding
    /// `<account>-sends-signals` to the gateway's ClusterRole `gateway-signal-source`, as
    /// deploy/rbac.yaml ships it (created if missing). Returns once RBAC allows it (asked the
    /// way a gateway with the default `auth.authorize` asks), so a gateway's first review
    /// cannot race the binding.
    pub async fn signal_sender_token(&self, namespace: &str, account: &str) -> Result<String> {
        use k8s_openapi::api::authorization::v1::SubjectAccessReview;
        use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
        use serde::Deserialize as _;
        let client = self.direct_client()?;
        let rbac = workspace_root().join("deploy/rbac.yaml");
        let text = std::fs::read_to_string(&rbac)
            .with_context(|| format!("reading {}", rbac.display()))?;
        let role: ClusterRole = serde_yaml::Deserializer::from_str(&text)
            .filter_map(|document| serde_yaml::Value::deserialize(document).ok())
            .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == SIGNAL_SOURCE_ROLE)
            .map(serde_yaml::from_value)
            .transpose()?
            .with_context(|| {
                format!("{} has no ClusterRole {SIGNAL_SOURCE_ROLE}", rbac.display())
            })?;
        let created = |result: std::result::Result<(), kube::Error>| match result {
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            other => other,
        };
        created(
            Api::<ClusterRole>::all(client.clone())
                .create(&PostParams::default(), &role)
                .await
                .map(drop),
        )
        .with_context(|| format!("creating ClusterRole {SIGNAL_SOURCE_ROLE}"))?;
        let binding: RoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{account}-sends-signals")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": SIGNAL_SOURCE_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        }))?;
        created(
            Api::<RoleBinding>::namespaced(client.clone(), namespace)
                .create(&PostParams::default(), &binding)
                .await
                .map(drop),
        )
        .with_context(|| format!("creating the RoleBinding of {namespace}/{account}"))?;
        let token = self
            .service_account_token(namespace, account, Duration::from_secs(24 * 3600))
            .await?;
        let review: SubjectAccessReview = serde_json::from_value(serde_json::json!({"spec": {
            "user": format!("system:serviceaccount:{namespace}:{account}"),
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{namespace}"), "system:authenticated"],
            "resourceAttributes": {"verb": "create", "group": "kubernaut.ai", "resource": "signals", "namespace": namespace},
        }}))?;
        let deadline = Instant::now() + self.startup_timeout;
        // Bounded by the deadline.
        loop {
            let answer = Api::<SubjectAccessReview>::all(client.clone())
                .create(&PostParams::default(), &review)
                .await
                .context("asking whether the sender may send")?;
            if answer.status.is_some_and(|status| status.allowed) {
                return Ok(token);
            }
            if Instant::now() >= deadline {
                bail!("the RoleBinding of {namespace}/{account} was not in effect in time");
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Creates a namespace named `<prefix>-<random suffix>` and returns its name (directly,
    /// so a proxy fault does not get in the way of a test's set-up).
    pub async fn create_namespace(&self, prefix: &str) -> Result<String> {
        let namespace = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{prefix}-")),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let created = Api::<Namespace>::all(self.direct_client()?)
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("creating a namespace {prefix}-*"))?;
        created
            .metadata
            .name
            .context("the created namespace has no name")
    }

    /// Makes kube-apiserver's first RemediationRequest writes fast: dry-run creates an RR in
    /// `namespace` and lists RRs, retrying each until it succeeds (at most the start-up
    /// timeout). On a fresh apiserver the first RR request builds the CRD's serving stack
    /// (schema, CEL programs, watch cache), which takes longer than a gateway's 2 s deadline;
    /// afterwards a real create takes milliseconds. Needs the [`RR_CRD`] installed; goes
    /// straight to kube-apiserver, so a proxy fault does not stop it.
    pub async fn warm_up_rr_writes(&self, namespace: &str) -> Result<()> {
        warm_up::rr_writes(
            &self.direct_client()?,
            namespace,
            Instant::now() + self.startup_timeout,
        )
        .await
    }

    /// Pauses kube-apiserver (SIGSTOP), and returns once all its threads have stopped:
    /// connections to it open, as the kernel accepts them, but nothing is answered until
    /// [`Self::resume_apiserver`].
    pub async fn pause_apiserver(&self) -> Result<()> {
        self.apiserver.pause().await
    }

    /// Resumes a paused kube-apiserver (SIGCONT).
    pub fn resume_apiserver(&self) -> Result<()> {
        self.apiserver.resume()
    }

    /// Pauses etcd (SIGSTOP), and returns once all its threads have stopped:
    /// kube-apiserver's reads and writes hang (until its own
    /// timeouts) until [`Self::resume_etcd`]. Reads of resources served from its watch cache
    /// may still succeed.
    pub async fn pause_etcd(&self) -> Result<()> {
        self.etcd.pause().await
    }

    /// Resumes a paused etcd (SIGCONT).
    pub fn resume_etcd(&self) -> Result<()> {
        self.etcd.resume()
    }

    /// Compacts etcd's history up to its current revision, and returns that revision.
    ///
    /// Guarantees: when it returns, the compaction is physically done, so every etcd read or
    /// watch at an older revision fails (`required revision has been compacted`), and a
    /// kube-apiserver request that reaches etcd with an older resourceVersion gets 410 Gone.
    ///
    /// It does *not* make watches through kube-apiserver fail by itself: they are served
    /// from the apiserver's watch cache, whose window is in memory and unaffected, so a watch
    /// resuming from an old resourceVersion still succeeds while the cache holds it. To see
    /// a 410 on a watch, the cache must be rebuilt after the compaction, from a later
    /// revision: that is [`Self::expire_watch_history`].
    pub async fn compact_etcd(&self) -> Result<i64> {
        let revision = etcd::revision(self.etcd_port).await?;
        etcd::compact(self.etcd_port, revision).await?;
        tracing::info!(revision, "etcd compacted");
        Ok(revision)
    }

    /// Expires every watch position handed out so far: stops kube-apiserver, writes a marker
    /// key to etcd (outside `/registry`, so no object changes) and compacts etcd up to that
    /// write, then starts kube-apiserver again and waits until it is ready. Returns the
    /// compacted revision `R`.
    ///
    /// Guarantees: every resourceVersion a client saw before the call is below `R` (the
    /// apiserver was down from before the marker was written), and the restarted apiserver's
    /// watch caches begin at `R` or later. So every watch resuming from such a
    /// resourceVersion — a kube-runtime watcher after the restart broke its stream, or a
    /// raw watch with an old `resourceVersion` — gets 410 Gone (`too old resource version`),
    /// whether the cache or etcd serves it, and must re-list. (`resourceVersion=0`, "any",
    /// is not an old position and is served normally.)
    ///
    /// Costs an apiserver restart (a few seconds). Clients see their connections drop and,
    /// while it is down, connections refused (reset, through the proxy).
    pub async fn expire_watch_history(&self) -> Result<i64> {
        self.stop_apiserver().await?;
        let expired = async {
            let revision = etcd::put(self.etcd_port, EXPIRY_MARKER_KEY, "expired").await?;
            etcd::compact(self.etcd_port, revision).await?;
            Ok::<_, anyhow::Error>(revision)
        }
        .await;
        // Start it again even if etcd failed, so that the control plane is left usable.
        let started = self.start_apiserver().await;
        let revision = expired?;
        started?;
        tracing::info!(revision, "watch history expired");
        Ok(revision)
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
        wait_etcd(
            &self.etcd,
            self.etcd_port,
            Instant::now() + self.startup_timeout,
        )
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

    /// Waits until kube-apiserver answers `/readyz` with `ok` (directly, not through the
    /// proxy).
    async fn wait_apiserver(&self, deadline: Instant) -> Result<()> {
        let client = self.direct_client()?;
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
        if let Ok(true) = tokio::time::timeout(PROBE_TIMEOUT, etcd::healthy(port)).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("etcd was not healthy in time");
        }
        tokio::time::sleep(READY_POLL).await;
    }
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
