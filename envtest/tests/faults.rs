//! The fault hooks against a real control plane: each fault does to a client what it claims
//! (latency, blackhole, reset through the proxy; paused programs; an expired watch history),
//! clearing it lets the client recover, and the RR warm-up makes the first real RR write
//! fast.
//!
//! One control plane, with the proxy, serves the whole binary. A fault hits every client of
//! it, so the tests take turns ([`turn`]), and a turn clears every fault when it ends, passed
//! or failed.

// A failed unwrap is a failed test, with the error in the message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use gateway_envtest::{ControlPlane, Fault, Options};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    ApiResource, DynamicObject, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};

/// The client-side deadline of a call that a fault should make hang.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Limit for the control plane to recover after a fault is cleared.
const RECOVER: Duration = Duration::from_secs(30);

async fn plane() -> &'static ControlPlane {
    static PLANE: tokio::sync::OnceCell<ControlPlane> = tokio::sync::OnceCell::const_new();
    PLANE
        .get_or_init(|| async {
            ControlPlane::start(Options {
                crds: gateway_envtest::default_crds(),
                proxy: true,
                ..Options::default()
            })
            .await
            .unwrap()
        })
        .await
}

/// The control plane, exclusively for one test; clears every fault when dropped.
struct Turn {
    plane: &'static ControlPlane,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.plane.fault(Fault::None);
        let _ = self.plane.resume_apiserver();
        let _ = self.plane.resume_etcd();
    }
}

async fn turn() -> Turn {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let serial = SERIAL.lock().await;
    Turn {
        plane: plane().await,
        _serial: serial,
    }
}

/// GET of the `default` namespace under [`CALL_TIMEOUT`]; `Err(None)` for a timeout.
async fn get(client: &Client) -> Result<Namespace, Option<kube::Error>> {
    match tokio::time::timeout(
        CALL_TIMEOUT,
        Api::<Namespace>::all(client.clone()).get("default"),
    )
    .await
    {
        Ok(Ok(namespace)) => Ok(namespace),
        Ok(Err(error)) => Err(Some(error)),
        Err(_) => Err(None),
    }
}

/// Retries `get` until it succeeds, within [`RECOVER`].
async fn get_eventually(client: &Client) {
    let deadline = Instant::now() + RECOVER;
    loop {
        match get(client).await {
            Ok(_) => return,
            Err(error) => {
                assert!(Instant::now() < deadline, "no recovery: {error:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
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

#[tokio::test]
async fn latency_delays_calls_on_open_connections_too() {
    let turn = turn().await;
    let client = turn.plane.client().unwrap();
    // A pooled connection, opened before the fault.
    get(&client).await.unwrap();
    let latency = Duration::from_millis(300);
    turn.plane.fault(Fault::Latency(latency)).unwrap();
    let began = Instant::now();
    tokio::time::timeout(
        RECOVER,
        Api::<Namespace>::all(client.clone()).get("default"),
    )
    .await
    .unwrap()
    .unwrap();
    let took = began.elapsed();
    eprintln!("GET with {latency:?} latency took {took:?}");
    assert!(took >= latency, "{took:?}");
    turn.plane.fault(Fault::None).unwrap();
    get(&client).await.unwrap();
}

#[tokio::test]
async fn a_blackhole_hangs_calls_until_it_is_cleared() {
    let turn = turn().await;
    let client = turn.plane.client().unwrap();
    get(&client).await.unwrap();
    turn.plane.fault(Fault::Blackhole).unwrap();
    // On the open connection, and on a new one.
    assert!(matches!(get(&client).await, Err(None)), "not held");
    assert!(
        matches!(get(&turn.plane.client().unwrap()).await, Err(None)),
        "a new connection is not held"
    );
    // The apiserver itself is fine meanwhile.
    get(&turn.plane.direct_client().unwrap()).await.unwrap();
    turn.plane.fault(Fault::None).unwrap();
    let began = Instant::now();
    get(&client).await.unwrap();
    eprintln!("first GET after the blackhole took {:?}", began.elapsed());
}

#[tokio::test]
async fn a_reset_fails_calls_fast() {
    let turn = turn().await;
    let client = turn.plane.client().unwrap();
    get(&client).await.unwrap();
    turn.plane.fault(Fault::Reset).unwrap();
    for client in [client.clone(), turn.plane.client().unwrap()] {
        let began = Instant::now();
        let error = get(&client).await.unwrap_err();
        let took = began.elapsed();
        eprintln!("reset call failed in {took:?}: {error:?}");
        let error = error.expect("a reset call timed out instead of failing");
        assert!(
            !matches!(error, kube::Error::Api(_)),
            "the apiserver answered: {error:?}"
        );
    }
    turn.plane.fault(Fault::None).unwrap();
    get(&client).await.unwrap();
}

#[tokio::test]
async fn a_paused_apiserver_answers_nothing_until_resumed() {
    let turn = turn().await;
    let client = turn.plane.client().unwrap();
    get(&client).await.unwrap();
    turn.plane.pause_apiserver().await.unwrap();
    let paused = get(&client).await;
    assert!(
        matches!(paused, Err(None)),
        "answered while paused: {paused:?}"
    );
    turn.plane.resume_apiserver().unwrap();
    let began = Instant::now();
    get_eventually(&client).await;
    eprintln!(
        "first GET after resuming the apiserver took {:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn a_paused_etcd_stalls_writes_until_resumed() {
    let turn = turn().await;
    let namespace = turn.plane.create_namespace("paused-etcd").await.unwrap();
    let api = Api::<ConfigMap>::namespaced(turn.plane.client().unwrap(), &namespace);
    turn.plane.pause_etcd().await.unwrap();
    let stalled = tokio::time::timeout(
        CALL_TIMEOUT,
        api.create(&PostParams::default(), &config_map("stalled")),
    )
    .await;
    assert!(
        !matches!(stalled, Ok(Ok(_))),
        "a write succeeded while etcd was paused: {stalled:?}"
    );
    turn.plane.resume_etcd().unwrap();
    let began = Instant::now();
    let deadline = began + RECOVER;
    for attempt in 0.. {
        let name = format!("after-resume-{attempt}");
        match tokio::time::timeout(
            CALL_TIMEOUT * 5,
            api.create(&PostParams::default(), &config_map(&name)),
        )
        .await
        {
            Ok(Ok(_)) => break,
            outcome => {
                assert!(
                    Instant::now() < deadline,
                    "no write after resuming: {outcome:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    eprintln!("first write after resuming etcd took {:?}", began.elapsed());
}

/// The first item of a watch from `resource_version`, retried while the restarted apiserver
/// is not serving watches yet: `Some(status)` for an error (a 410 is what the test wants).
async fn watch_error(api: &Api<ConfigMap>, resource_version: &str) -> kube::core::Status {
    let deadline = Instant::now() + RECOVER;
    loop {
        let outcome = match api.watch(&WatchParams::default(), resource_version).await {
            Err(kube::Error::Api(status)) => Ok(*status),
            Err(error) => Err(format!("{error}")),
            Ok(stream) => match tokio::time::timeout(RECOVER, stream.boxed().next()).await {
                Ok(Some(Ok(WatchEvent::Error(status)))) => Ok(*status),
                Ok(Some(Err(kube::Error::Api(status)))) => Ok(*status),
                other => Err(format!("{other:?}")),
            },
        };
        match outcome {
            Ok(status) if status.code != 429 => return status,
            other => {
                assert!(Instant::now() < deadline, "no watch answer: {other:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test]
async fn an_expired_watch_history_gives_old_watches_410() {
    let turn = turn().await;
    let namespace = turn.plane.create_namespace("expired").await.unwrap();
    let api = Api::<ConfigMap>::namespaced(turn.plane.client().unwrap(), &namespace);
    api.create(&PostParams::default(), &config_map("before"))
        .await
        .unwrap();
    let old = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    // A kube-runtime watcher, as the gateway runs one, synced before the expiry.
    let (events, mut received) = tokio::sync::mpsc::channel(64);
    let watching = tokio::spawn({
        let stream = watcher(api.clone(), watcher::Config::default()).default_backoff();
        async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if events.send(event).await.is_err() {
                    return;
                }
            }
        }
    });
    loop {
        if let Ok(watcher::Event::InitDone) = received.recv().await.unwrap() {
            break;
        }
    }

    let began = Instant::now();
    let revision = turn.plane.expire_watch_history().await.unwrap();
    eprintln!(
        "watch history expired at revision {revision} in {:?}",
        began.elapsed()
    );
    assert!(
        old.parse::<i64>().unwrap() < revision,
        "{old} >= {revision}"
    );

    let status = watch_error(&api, &old).await;
    assert_eq!(status.code, 410, "{status:?}");
    assert!(
        status.message.contains("too old resource version"),
        "{status:?}"
    );

    // The watcher resumes from its last resourceVersion, is told 410, and re-lists.
    let deadline = tokio::time::Instant::now() + RECOVER * 2;
    let mut gone = None;
    loop {
        let event = tokio::time::timeout_at(deadline, received.recv())
            .await
            .expect("the watcher did not get a 410 and re-list in time")
            .unwrap();
        match event {
            Err(watcher::Error::WatchError(status)) if status.code == 410 => gone = Some(status),
            Ok(watcher::Event::InitDone) if gone.is_some() => break,
            other => eprintln!("watcher: {other:?}"),
        }
    }
    eprintln!(
        "watcher got {gone:?} and re-listed, {:?} after the expiry",
        began.elapsed()
    );
    watching.abort();
}

#[tokio::test]
async fn after_the_warm_up_a_real_rr_create_takes_under_2_s() {
    let turn = turn().await;
    let namespace = turn.plane.create_namespace("warm-up").await.unwrap();
    let began = Instant::now();
    turn.plane.warm_up_rr_writes(&namespace).await.unwrap();
    eprintln!("warm-up took {:?}", began.elapsed());

    let resource = ApiResource {
        group: "kubernaut.ai".to_owned(),
        version: "v1alpha1".to_owned(),
        api_version: "kubernaut.ai/v1alpha1".to_owned(),
        kind: "RemediationRequest".to_owned(),
        plural: "remediationrequests".to_owned(),
    };
    let api =
        Api::<DynamicObject>::namespaced_with(turn.plane.client().unwrap(), &namespace, &resource);
    let rr: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "kubernaut.ai/v1alpha1",
        "kind": "RemediationRequest",
        "metadata": { "name": "first", "namespace": namespace },
        "spec": {
            "signalFingerprint": "ab".repeat(32),
            "signalName": "KubePodCrashLooping",
            "severity": "critical",
            "signalType": "alert",
            "signalSource": "prometheus",
            "targetType": "kubernetes",
            "targetResource": { "kind": "Pod", "name": "api-0", "namespace": namespace },
            "firingTime": "2026-01-01T00:00:00Z",
            "receivedTime": "2026-01-01T00:00:01Z",
        },
    }))
    .unwrap();
    let began = Instant::now();
    api.create(&PostParams::default(), &rr).await.unwrap();
    let took = began.elapsed();
    eprintln!("first real RR create took {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}
