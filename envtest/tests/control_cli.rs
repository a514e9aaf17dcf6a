//! `gateway-envtest up --proxy --control <socket>` as a script uses it: `ready` means ready
//! for RR writes, the printed kubeconfig goes through the proxy, and every control command is
//! answered with one line, on the socket and on stdout.

// A failed unwrap is a failed test, with the error in the message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

/// Limit for start-up (a cold control plane on a loaded 2-core machine, and the warm-up).
const STARTUP: Duration = Duration::from_secs(180);

/// Limit for one control command's answer.
const ANSWER: Duration = Duration::from_secs(30);

async fn client(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Sends `command` on the socket and returns its answer there.
fn ask(socket: &mut BufReader<UnixStream>, command: &str) -> String {
    socket
        .get_mut()
        .write_all(format!("{command}\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    socket.read_line(&mut answer).unwrap();
    answer.trim_end().to_owned()
}

#[tokio::test]
async fn up_takes_fault_commands_on_its_control_socket() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let socket_path = dir.path().join("control.sock");
    let mut cli = Command::new(env!("CARGO_BIN_EXE_gateway-envtest"))
        .args(["up", "--proxy", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--control")
        .arg(&socket_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, stdout) = mpsc::channel();
    let out = cli.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if lines.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let ready = stdout.recv_timeout(STARTUP).unwrap();
    assert_eq!(ready, format!("ready kubeconfig={}", kubeconfig.display()));

    // Ready means ready for RR writes: the first real one is as fast as any.
    let client = client(&kubeconfig).await;
    let resource = ApiResource {
        group: "kubernaut.ai".to_owned(),
        version: "v1alpha1".to_owned(),
        api_version: "kubernaut.ai/v1alpha1".to_owned(),
        kind: "RemediationRequest".to_owned(),
        plural: "remediationrequests".to_owned(),
    };
    let rr: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "kubernaut.ai/v1alpha1",
        "kind": "RemediationRequest",
        "metadata": { "name": "first", "namespace": "default" },
        "spec": {
            "signalFingerprint": "cd".repeat(32),
            "signalName": "KubePodCrashLooping",
            "severity": "critical",
            "signalType": "alert",
            "signalSource": "prometheus",
            "targetType": "kubernetes",
            "targetResource": { "kind": "Pod", "name": "api-0", "namespace": "default" },
            "firingTime": "2026-01-01T00:00:00Z",
            "receivedTime": "2026-01-01T00:00:01Z",
        },
    }))
    .unwrap();
    let began = Instant::now();
    Api::<DynamicObject>::namespaced_with(client.clone(), "default", &resource)
        .create(&PostParams::default(), &rr)
        .await
        .unwrap();
    let took = began.elapsed();
    eprintln!("first RR create after `ready` took {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");

    let mut socket = BufReader::new(UnixStream::connect(&socket_path).unwrap());
    socket.get_ref().set_read_timeout(Some(ANSWER)).unwrap();
    let mut exchange = |command: &str| {
        let answer = ask(&mut socket, command);
        let echoed = stdout.recv_timeout(ANSWER).unwrap();
        assert_eq!(answer, echoed, "the socket and stdout disagree");
        answer
    };

    assert!(exchange("help").starts_with("ok help: latency <duration>"));
    assert!(exchange("bogus").starts_with("error bogus: unknown command"));
    assert!(exchange("latency").starts_with("error latency: unknown command"));

    // The printed kubeconfig goes through the proxy: its latency slows this client down.
    assert_eq!(exchange("latency 300ms"), "ok latency 300ms");
    let namespaces = Api::<Namespace>::all(client.clone());
    let began = Instant::now();
    namespaces.get("default").await.unwrap();
    let took = began.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert_eq!(exchange("clear"), "ok clear");

    let compacted = exchange("compact");
    let revision: i64 = compacted
        .strip_prefix("ok compact: revision ")
        .unwrap_or_else(|| panic!("{compacted}"))
        .parse()
        .unwrap();
    assert!(revision > 0);

    assert_eq!(exchange("pause apiserver"), "ok pause apiserver");
    let paused = tokio::time::timeout(Duration::from_secs(1), namespaces.get("default")).await;
    assert!(paused.is_err(), "answered while paused: {paused:?}");
    assert_eq!(exchange("resume apiserver"), "ok resume apiserver");
    namespaces.get("default").await.unwrap();

    // SIGTERM: a clean stop that removes the socket and the kubeconfig.
    let pid = rustix::process::Pid::from_raw(i32::try_from(cli.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = cli.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!socket_path.exists(), "the control socket is left behind");
    assert!(!kubeconfig.exists(), "the kubeconfig is left behind");
}
