//! The control plane's life cycle: it is real and usable, it survives the runtime that started
//! it, its stop/start hooks keep the data, and nothing outlives its owner — neither on drop,
//! nor on a panic, nor when the owning process is killed with SIGKILL.

// A failed unwrap is a failed test, with the error in the message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gateway_envtest::{ControlPlane, Options};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

/// Limit for things the kernel or the control plane does by itself (a killed process
/// disappearing, the apiserver reconnecting to etcd).
const SETTLE: Duration = Duration::from_secs(30);

async fn start() -> ControlPlane {
    ControlPlane::start(Options::default()).await.unwrap()
}

/// Command lines of live (non-zombie) processes that mention `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        // A zombie's cmdline is empty; one that vanished meanwhile cannot be read.
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(cmdline);
        }
    }
    found
}

/// Waits until no live process mentions `dir` (etcd and kube-apiserver both have it in
/// their arguments).
fn assert_no_process_mentions(dir: &Path) {
    let needle = dir.to_str().unwrap();
    let deadline = Instant::now() + SETTLE;
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "still running: {left:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some([("key".to_owned(), "value".to_owned())].into()),
        ..ConfigMap::default()
    }
}

/// Retries `get` until the apiserver answers again (after a restart of one of the programs).
async fn get_eventually(control_plane: &ControlPlane, namespace: &str, name: &str) -> ConfigMap {
    let deadline = Instant::now() + SETTLE;
    loop {
        let api = Api::<ConfigMap>::namespaced(control_plane.client().unwrap(), namespace);
        match api.get(name).await {
            Ok(found) => return found,
            Err(error) if Instant::now() < deadline => {
                eprintln!("not yet: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("{name} is not readable after the restart: {error}"),
        }
    }
}

#[tokio::test]
async fn drop_stops_both_programs_and_removes_the_directory() {
    let control_plane = start().await;
    let dir = control_plane.dir().to_path_buf();
    assert_eq!(processes_mentioning(dir.to_str().unwrap()).len(), 2);
    let version = control_plane
        .client()
        .unwrap()
        .apiserver_version()
        .await
        .unwrap();
    assert_eq!(version.major, "1");
    drop(control_plane);
    assert_no_process_mentions(&dir);
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[test]
fn a_panicking_owner_leaves_nothing_behind() {
    let dir = std::thread::spawn(|| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let control_plane = runtime.block_on(start());
        let dir = control_plane.dir().to_path_buf();
        std::panic::panic_any(dir);
    })
    .join()
    .unwrap_err();
    let dir = dir.downcast::<PathBuf>().unwrap();
    assert_no_process_mentions(&dir);
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[test]
fn the_control_plane_outlives_the_runtime_and_thread_that_started_it() {
    // The parent-death signal is tied to the forking *thread*; this is the case `shared()`
    // relies on, where the first test's runtime and thread end long before the others.
    let control_plane =
        std::thread::spawn(|| tokio::runtime::Runtime::new().unwrap().block_on(start()))
            .join()
            .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(control_plane.unexpected_exit(), None);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let namespace = control_plane.create_namespace("outlives").await.unwrap();
        assert!(namespace.starts_with("outlives-"));
    });
}

#[tokio::test]
async fn stopped_and_restarted_programs_keep_the_data() {
    let control_plane = start().await;
    let namespace = control_plane.create_namespace("restart").await.unwrap();
    Api::<ConfigMap>::namespaced(control_plane.client().unwrap(), &namespace)
        .create(&PostParams::default(), &config_map("kept"))
        .await
        .unwrap();

    control_plane.stop_apiserver().await.unwrap();
    let refused = Api::<ConfigMap>::namespaced(control_plane.client().unwrap(), &namespace)
        .get("kept")
        .await;
    assert!(
        refused.is_err(),
        "the apiserver still answers after stop_apiserver"
    );
    control_plane.start_apiserver().await.unwrap();
    assert_eq!(
        get_eventually(&control_plane, &namespace, "kept")
            .await
            .data,
        config_map("kept").data
    );

    control_plane.stop_etcd().await.unwrap();
    control_plane.start_etcd().await.unwrap();
    assert_eq!(
        get_eventually(&control_plane, &namespace, "kept")
            .await
            .data,
        config_map("kept").data
    );
    assert_eq!(control_plane.unexpected_exit(), None);
    control_plane.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_unprivileged_token_authenticates_but_is_not_authorized() {
    let control_plane = start().await;
    let client = control_plane.unprivileged_client().unwrap();
    // Discovery is open to every authenticated user; reading objects is not.
    client.apiserver_version().await.unwrap();
    let error = Api::<ConfigMap>::namespaced(client, "default")
        .get("any")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, kube::Error::Api(status) if status.code == 403),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_start_up_failure_shows_the_programs_log() {
    let error = ControlPlane::start(Options {
        apiserver_args: vec!["--no-such-flag".to_owned()],
        ..Options::default()
    })
    .await
    .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("kube-apiserver exited"), "{message}");
    assert!(
        message.contains("unknown flag: --no-such-flag"),
        "{message}"
    );
}

/// `kill -9` of the owning process: no destructor runs, the kernel's parent-death signal
/// must take etcd and kube-apiserver down, and the next start sweeps the directory.
#[tokio::test]
async fn a_killed_owner_leaves_no_programs_and_its_directory_is_swept() {
    let kubeconfig = tempfile::tempdir().unwrap();
    let mut cli = Command::new(env!("CARGO_BIN_EXE_gateway-envtest"))
        .args(["up", "--kubeconfig"])
        .arg(kubeconfig.path().join("kubeconfig"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(cli.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert!(ready.starts_with("ready kubeconfig="), "{ready:?}");
    // The CLI reports its directory on stderr, after whatever the build script printed.
    let started = BufReader::new(cli.stderr.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .find(|line| line.contains("logs in "))
        .unwrap();
    let dir = PathBuf::from(started.rsplit("logs in ").next().unwrap().trim());
    assert_eq!(
        processes_mentioning(dir.to_str().unwrap()).len(),
        2,
        "{started}"
    );

    cli.kill().unwrap(); // SIGKILL
    cli.wait().unwrap();
    assert_no_process_mentions(&dir);
    // The directory is left behind (no destructor ran); any start sweeps it, ours or
    // another process's running at the same time.
    drop(start().await);
    assert!(
        !dir.exists(),
        "the next start did not sweep {}",
        dir.display()
    );
}
