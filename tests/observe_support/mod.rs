//! Support for the deploy, observe and Alertmanager tests: the Debian-packaged Prometheus
//! tools (required, never skipped), the kustomize render of `deploy/`, a Prometheus or
//! Alertmanager process on a loopback port, and Prometheus's HTTP query API.
//!
//! Used with `mod observe_support;` next to `mod support;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Http, eventually};

/// `deploy/` of this workspace.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// A program from a Debian package the tests need. Missing is a failure, not a skip: CI
/// installs them (`.ci/run`), and a test that silently proves nothing is worse than a red one.
pub fn debian_tool(path: &str, package: &str) -> PathBuf {
    let tool = PathBuf::from(path);
    assert!(
        tool.is_file(),
        "{path} is missing: install the Debian package `{package}` (run `.ci/run`, which does \
         `apt-get install prometheus prometheus-alertmanager`)"
    );
    tool
}

/// `/usr/bin/prometheus`.
pub fn prometheus_bin() -> PathBuf {
    debian_tool("/usr/bin/prometheus", "prometheus")
}

/// `/usr/bin/promtool`.
pub fn promtool_bin() -> PathBuf {
    debian_tool("/usr/bin/promtool", "prometheus")
}

/// `/usr/bin/prometheus-alertmanager`.
pub fn alertmanager_bin() -> PathBuf {
    debian_tool(
        "/usr/bin/prometheus-alertmanager",
        "prometheus-alertmanager",
    )
}

/// `/usr/bin/amtool`.
pub fn amtool_bin() -> PathBuf {
    debian_tool("/usr/bin/amtool", "prometheus-alertmanager")
}

/// Runs `program` to completion within `timeout`; returns (success, stdout, stderr).
pub fn run(mut command: Command, stdin: Option<&str>, timeout: Duration) -> (bool, String, String) {
    use std::io::{Read as _, Write as _};
    let what = format!("{command:?}");
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_owned();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.success(),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// `kubectl kustomize <dir>` with the kubectl built from the control plane's Kubernetes module.
pub fn kustomize(kubectl: &Path, dir: &Path) -> String {
    let mut command = Command::new(kubectl);
    command.arg("kustomize").arg(dir);
    let (ok, out, err) = run(command, None, Duration::from_secs(60));
    assert!(ok, "kubectl kustomize {} failed: {err}", dir.display());
    out
}

/// The documents of a multi-document YAML stream (empty documents dropped).
pub fn yaml_documents(text: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .filter(|value: &serde_yaml::Value| !value.is_null())
        .collect()
}

/// A kustomization in a fresh temporary directory whose `resources`/`components` entries
/// refer to `deploy/` (kustomize takes only relative paths), with `extra` appended.
pub struct Overlay {
    pub dir: tempfile::TempDir,
}

impl Overlay {
    /// `resources: [deploy]`, `components: [deploy/<c> for c in components]`, then `extra`.
    pub fn new(components: &[&str], extra: &str) -> Overlay {
        let dir = tempfile::tempdir().unwrap();
        let up = "../".repeat(dir.path().components().count() - 1);
        let deploy = format!(
            "{up}{}",
            deploy_dir().to_str().unwrap().trim_start_matches('/')
        );
        let mut text = format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources:\n  - {deploy}\n"
        );
        if !components.is_empty() {
            text.push_str("components:\n");
            for component in components {
                text.push_str(&format!("  - {deploy}/{component}\n"));
            }
        }
        text.push_str(extra);
        std::fs::write(dir.path().join("kustomization.yaml"), text).unwrap();
        Overlay { dir }
    }

    /// Renders it.
    pub fn render(&self, kubectl: &Path) -> Vec<serde_yaml::Value> {
        yaml_documents(&kustomize(kubectl, self.dir.path()))
    }
}

/// `kind/name` of a rendered object.
pub fn kind_name(object: &serde_yaml::Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The single object of `kind` in `objects`.
pub fn one<'a>(objects: &'a [serde_yaml::Value], kind: &str) -> &'a serde_yaml::Value {
    let found: Vec<_> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected exactly one {kind}");
    found[0]
}

/// A free loopback port. The listener is closed before the caller's program binds it, so
/// another process could take it in between; [`Server::start`] retries on that.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus or Alertmanager process on a loopback port, its output in a log file.
/// Killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Combined stdout and stderr.
    pub log: PathBuf,
}

impl Server {
    /// Starts `program` with `args(port)` and waits until `GET <url>/-/ready` answers 200
    /// (both programs serve it); tries three ports in case one was taken meanwhile.
    pub async fn start(
        program: &Path,
        dir: &Path,
        name: &str,
        args: impl Fn(u16) -> Vec<String>,
    ) -> Server {
        let http = Http::new();
        let log = dir.join(format!("{name}.log"));
        for _ in 0..3 {
            let port = free_port();
            let file = std::fs::File::create(&log).unwrap();
            let child = Command::new(program)
                .args(args(port))
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
            let mut server = Server {
                child,
                url: format!("http://127.0.0.1:{port}"),
                log: log.clone(),
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok((200, _)) = http.get(&format!("{}/-/ready", server.url)).await {
                    return server;
                }
                if server.child.try_wait().unwrap().is_some() {
                    break; // exited: maybe the port was taken; try another
                }
                assert!(
                    Instant::now() < deadline,
                    "{name} not ready within 60 s: {}",
                    server.log_tail()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            eprintln!("{name} exited at start; retrying: {}", server.log_tail());
        }
        panic!(
            "{name} did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Prometheus with `config` (YAML text) in `dir`, evaluating and scraping as the
/// config says, on a loopback port.
pub async fn start_prometheus(dir: &Path, config: &str) -> Server {
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let (ok, out, err) = run(
        {
            let mut c = Command::new(promtool_bin());
            c.arg("check").arg("config").arg(&config_path);
            c
        },
        None,
        Duration::from_secs(60),
    );
    assert!(ok, "promtool check config: {out}{err}");
    let data = dir.join("prometheus-data");
    Server::start(&prometheus_bin(), dir, "prometheus", |port| {
        vec![
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            // Send active alerts to Alertmanager every evaluation, not every minute.
            "--rules.alert.resend-delay=1s".to_owned(),
            "--log.level=info".to_owned(),
        ]
    })
    .await
}

/// Percent-encodes a query-string value.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query; panics unless Prometheus answers `success`. Returns `data.result`.
pub async fn query(http: &Http, prometheus: &str, expr: &str) -> Vec<serde_json::Value> {
    let url = format!("{prometheus}/api/v1/query?query={}", url_encode(expr));
    let (status, body) = http.get(&url).await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|_| panic!("query {expr}: HTTP {status}: {body}"));
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("success")),
        "query {expr}: {body}"
    );
    match &body["data"]["result"] {
        serde_json::Value::Array(result) => result.clone(),
        // Scalars and strings: one value.
        other => vec![other.clone()],
    }
}

/// Waits until every target of the Prometheus at `url` has been scraped successfully.
pub async fn wait_targets_up(http: &Http, prometheus: &str, expected: usize) {
    eventually(Duration::from_secs(60), "scrape targets up", || async {
        let (_, body) = http
            .get(&format!("{prometheus}/api/v1/targets?state=active"))
            .await
            .ok()?;
        let body: serde_json::Value = serde_json::from_str(&body).ok()?;
        let targets = body["data"]["activeTargets"].as_array()?;
        (targets.len() == expected && targets.iter().all(|t| t["health"] == "up")).then_some(())
    })
    .await;
}

/// The metric names the gateway exports, read from `src/telemetry/names.rs` (the
/// one place they are defined), so a new metric cannot be forgotten by the dashboard or the
/// README (the standard `process_*` names defined there included).
pub fn exported_metric_names() -> Vec<String> {
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/telemetry/names.rs"),
    )
    .unwrap();
    let names: Vec<String> = source
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(": &str = \"")?;
            Some(rest.split('"').next()?.to_owned())
        })
        .collect();
    assert!(names.len() >= 10, "found only {names:?} in names.rs");
    names
}
