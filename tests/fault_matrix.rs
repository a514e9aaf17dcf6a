//! The fault matrix: three gateway processes under open-loop load (distinct deliveries over a
//! few dozen fingerprints, round robin over the replicas), one fault per case, on a control
//! plane of this binary's own with the fault-injecting proxy between the gateways and
//! kube-apiserver. For every case:
//!
//! - every answer is 201/202, or 503 with `Retry-After`; a connection error only from the
//!   replica the case kills or stops; never another 4xx/5xx, never silence past the sender's
//!   10 s timeout;
//! - per RR, the 2xx ordinals are distinct and at most its final `occurrenceCount`; per
//!   fingerprint, the counts add up to at most the deliveries sent; exactly one RR is active;
//! - every replica is ready again within [`RECOVERY`] of the fault's end;
//! - each RR's storm block is what the storm rule derives from its deduplication history.
//!
//! The cases run one after another on the one control plane, each in its own namespace with
//! its own gateways, and failures are collected so that one report lists every broken case.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway::fingerprint::Fingerprint;
use gateway::k8s::RemediationRequest;
use gateway::k8s::history::History;
use gateway_envtest::{ControlPlane, Fault};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use support::{Gateway, Http, alert, count_of, sender_token};

/// Fingerprints the load spreads over.
const FINGERPRINTS: usize = 24;
/// Deliveries per second, and for how long.
const RATE: u64 = 60;
const LOAD: Duration = Duration::from_secs(8);
/// When the fault starts, from the start of the load.
const FAULT_AT: Duration = Duration::from_millis(1500);
/// The load goes on at least this long after the fault ends (a fault can outlast [`LOAD`]).
const TAIL: Duration = Duration::from_secs(3);
/// Alertmanager's default webhook timeout.
const SENDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Every replica is ready again within this after the fault ends: the breaker's cooldown and
/// a watch relist, with room for a loaded 2-core machine.
const RECOVERY: Duration = Duration::from_secs(30);
const REPLICAS: usize = 3;
/// The replica the process faults hit.
const VICTIM: usize = 1;

#[derive(Clone, Copy, Debug)]
enum Case {
    ApiserverRestart,
    EtcdRestart,
    ApiserverPaused,
    LatencyThenBlackhole,
    RelistAfterCompletionAndDeletion,
    GatewayKilled,
    GatewayTerminated,
}

const CASES: [Case; 7] = [
    Case::ApiserverRestart,
    Case::EtcdRestart,
    Case::ApiserverPaused,
    Case::LatencyThenBlackhole,
    Case::RelistAfterCompletionAndDeletion,
    Case::GatewayKilled,
    Case::GatewayTerminated,
];

/// One delivery and what came back.
struct Answer {
    fingerprint: usize,
    gateway: usize,
    answered_at: Instant,
    result: Result<(u16, Option<String>, serde_json::Value), String>,
}

/// What a fault did that the checks must know.
#[derive(Default)]
struct Effects {
    /// A fingerprint whose RR was deleted, and when: answers before it belong to the deleted
    /// RR (possibly under the same name as its successor).
    deleted: Option<(usize, Instant)>,
    /// A replica that was killed or stopped: connection errors from it are expected.
    downed: Option<usize>,
}

struct Replicas {
    kubeconfig: std::path::PathBuf,
    ns: String,
    gateways: Vec<Gateway>,
    /// Signal API URLs, read by the load at each send (a restarted replica has new ports).
    urls: Arc<Mutex<Vec<String>>>,
}

impl Replicas {
    fn start(kubeconfig: &std::path::Path, ns: &str) -> Replicas {
        let gateways: Vec<Gateway> = (0..REPLICAS)
            .map(|_| Gateway::start(kubeconfig, ns, &[]))
            .collect();
        let urls = gateways.iter().map(signal_url).collect();
        Replicas {
            kubeconfig: kubeconfig.to_path_buf(),
            ns: ns.to_owned(),
            gateways,
            urls: Arc::new(Mutex::new(urls)),
        }
    }

    fn restart(&mut self, i: usize) {
        self.gateways[i] = Gateway::start(&self.kubeconfig, &self.ns, &[]);
        self.urls.lock().unwrap()[i] = signal_url(&self.gateways[i]);
    }
}

fn signal_url(gateway: &Gateway) -> String {
    format!("{}/api/v1/signals/prometheus", gateway.api)
}

fn pod(fingerprint: usize) -> String {
    format!("pod-{fingerprint}")
}

/// Sends the load, open loop: delivery `i` leaves at `i / RATE` whatever came back before,
/// for [`LOAD`] and until [`TAIL`] after the end of the fault (set in `fault_ended`).
/// Every delivery is distinct (its own `startsAt`), fingerprint `i % FINGERPRINTS`, to a
/// replica that changes from round to round so every fingerprint reaches every replica.
fn load(
    http: &Http,
    ns: &str,
    urls: &Arc<Mutex<Vec<String>>>,
    fault_ended: &Arc<Mutex<Option<tokio::time::Instant>>>,
) -> tokio::task::JoinHandle<Vec<Answer>> {
    let (http, ns, urls) = (http.clone(), ns.to_owned(), urls.clone());
    let fault_ended = fault_ended.clone();
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut sends = Vec::new();
        for i in 0.. {
            let at = started + Duration::from_millis(i * 1000 / RATE);
            let ended = *fault_ended.lock().unwrap();
            if at >= started + LOAD && ended.is_some_and(|ended| at >= ended + TAIL) {
                break;
            }
            tokio::time::sleep_until(at).await;
            let fingerprint = (i as usize) % FINGERPRINTS;
            let gateway = (i as usize / FINGERPRINTS + i as usize) % REPLICAS;
            let url = urls.lock().unwrap()[gateway].clone();
            let body = alert("FaultMatrix", &ns, &pod(fingerprint));
            let http = http.clone();
            sends.push(tokio::spawn(async move {
                let result = http.try_post(&url, &body, SENDER_TIMEOUT).await;
                Answer {
                    fingerprint,
                    gateway,
                    answered_at: Instant::now(),
                    result,
                }
            }));
        }
        let mut answers = Vec::new();
        for send in sends {
            answers.push(send.await.unwrap());
        }
        answers
    })
}

/// Injects the fault; returns once it is over.
async fn inject(
    case: Case,
    plane: &ControlPlane,
    replicas: &mut Replicas,
    admin: &Api<RemediationRequest>,
) -> Effects {
    let mut effects = Effects::default();
    match case {
        Case::ApiserverRestart => {
            plane.stop_apiserver().await.unwrap();
            plane.start_apiserver().await.unwrap();
        }
        Case::EtcdRestart => {
            plane.stop_etcd().await.unwrap();
            plane.start_etcd().await.unwrap();
        }
        Case::ApiserverPaused => {
            plane.pause_apiserver().await.unwrap();
            tokio::time::sleep(Duration::from_secs(3)).await;
            plane.resume_apiserver().unwrap();
        }
        Case::LatencyThenBlackhole => {
            plane
                .fault(Fault::Latency(Duration::from_millis(500)))
                .unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
            plane.fault(Fault::Blackhole).unwrap();
            tokio::time::sleep(Duration::from_secs(3)).await;
            plane.fault(Fault::None).unwrap();
        }
        Case::RelistAfterCompletionAndDeletion => {
            // The gateways' watches (through the proxy) stall while one RR is completed and
            // another deleted (straight to kube-apiserver); then the watch history expires,
            // so they must relist to learn either.
            plane.fault(Fault::Blackhole).unwrap();
            let rrs = admin.list(&ListParams::default()).await.unwrap().items;
            let of = |fingerprint: usize| {
                let wanted =
                    Fingerprint::of(None, &replicas.ns, "Pod", &pod(fingerprint)).to_string();
                rrs.iter()
                    .find(|rr| rr.spec.signal_fingerprint == wanted)
                    .and_then(|rr| rr.metadata.name.clone())
                    .expect("the load created an RR for the fingerprint before the fault")
            };
            admin
                .patch_status(
                    &of(0),
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"status": {"overallPhase": "Completed"}})),
                )
                .await
                .unwrap();
            admin.delete(&of(1), &Default::default()).await.unwrap();
            effects.deleted = Some((1, Instant::now()));
            plane.expire_watch_history().await.unwrap();
            plane.fault(Fault::None).unwrap();
        }
        Case::GatewayKilled => {
            replicas.gateways[VICTIM].kill();
            effects.downed = Some(VICTIM);
            tokio::time::sleep(Duration::from_secs(1)).await;
            replicas.restart(VICTIM);
        }
        Case::GatewayTerminated => {
            let pid = replicas.gateways[VICTIM].pid();
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap();
            effects.downed = Some(VICTIM);
            let mut draining = std::mem::replace(
                &mut replicas.gateways[VICTIM],
                Gateway::start(&replicas.kubeconfig, &replicas.ns, &[]),
            );
            let status = tokio::task::spawn_blocking(move || draining.wait())
                .await
                .unwrap();
            assert!(status.success(), "a drained gateway exits 0: {status}");
            let url = signal_url(&replicas.gateways[VICTIM]);
            replicas.urls.lock().unwrap()[VICTIM] = url;
        }
    }
    effects
}

/// Runs one case; returns what it broke (empty when it held), and a line of figures.
async fn run_case(case: Case, plane: &ControlPlane) -> (Vec<String>, String) {
    let prefix = format!("{case:?}").to_lowercase();
    let ns = plane.create_namespace(&prefix).await.unwrap();
    plane.warm_up_rr_writes(&ns).await.unwrap();
    let http = &Http::authorized(&sender_token(plane, &ns).await);
    let admin: Api<RemediationRequest> = Api::namespaced(plane.direct_client().unwrap(), &ns);
    let mut replicas = Replicas::start(plane.kubeconfig_path(), &ns);
    for gateway in &replicas.gateways {
        gateway.ready(http).await;
    }

    let fault_over = Arc::new(Mutex::new(None));
    let sending = load(http, &ns, &replicas.urls, &fault_over);
    tokio::time::sleep(FAULT_AT).await;
    let fault_started = Instant::now();
    let effects = inject(case, plane, &mut replicas, &admin).await;
    let fault_ended = Instant::now();
    *fault_over.lock().unwrap() = Some(fault_ended.into());
    let mut broken = Vec::new();

    // Readiness of every replica after the fault.
    let mut slowest = Duration::ZERO;
    for (i, gateway) in replicas.gateways.iter().enumerate() {
        // `ready` polls every 50 ms (and gives up after 60 s, past RECOVERY).
        if tokio::time::timeout_at((fault_ended + RECOVERY).into(), gateway.ready(http))
            .await
            .is_err()
        {
            broken.push(format!(
                "replica {i} not ready within {RECOVERY:?} of the fault's end"
            ));
        }
        slowest = slowest.max(fault_ended.elapsed());
    }
    let answers = sending.await.unwrap();
    broken.extend(check_answers(&answers, &effects));

    // The final state: one active RR per fingerprint, counts within bounds, storm blocks as
    // the rule derives them. Deferred status initialisation may still be due: poll.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (state_broken, rrs) = loop {
        let rrs = admin.list(&ListParams::default()).await.unwrap().items;
        let found = check_state(&ns, &rrs, &answers, &effects);
        if found.is_empty() || Instant::now() > deadline {
            break (found, rrs);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    broken.extend(state_broken);
    // Counted beyond the 2xx answers: deliveries answered 503 (or lost with a killed
    // replica) whose write had landed. The deleted RR's count is gone, so not comparable.
    let counted_total: i64 = rrs.iter().map(count_of).sum();
    let answered_2xx = answers.iter().filter(|a| counted(a).is_some()).count() as i64;
    let mut ambiguous = BTreeMap::new();
    for gateway in &replicas.gateways {
        for resolution in ["applied", "resent", "not_applied", "unknown"] {
            let n = gateway
                .metric(
                    http,
                    "gateway_ambiguous_writes_total",
                    &[("resolution", resolution)],
                )
                .await;
            if n > 0.0 {
                *ambiguous.entry(resolution).or_insert(0.0) += n;
            }
        }
    }

    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for answer in &answers {
        let key = match &answer.result {
            Ok((status, ..)) => status.to_string(),
            Err(_) => "no answer".into(),
        };
        *statuses.entry(key).or_default() += 1;
    }
    let figures = format!(
        "{case:?}: fault {:.1} s; {} deliveries {statuses:?}; counted {} beyond the 2xx; \
         ambiguous writes (surviving replicas) {ambiguous:?}; all ready {:.1} s after the fault",
        (fault_ended - fault_started).as_secs_f64(),
        answers.len(),
        counted_total - answered_2xx,
        slowest.as_secs_f64()
    );
    drop(replicas);
    (
        broken
            .into_iter()
            .map(|b| format!("{case:?}: {b}"))
            .collect(),
        figures,
    )
}

/// What every single answer must be.
fn check_answers(answers: &[Answer], effects: &Effects) -> Vec<String> {
    let mut broken = Vec::new();
    for answer in answers {
        match &answer.result {
            Ok((201 | 202, ..)) => {}
            Ok((503, Some(_), _)) => {}
            Ok((status, retry_after, body)) => broken.push(format!(
                "answer {status} (Retry-After {retry_after:?}) from replica {}: {body}",
                answer.gateway
            )),
            Err(error)
                if effects.downed == Some(answer.gateway) && !error.starts_with("no answer") => {}
            Err(error) => broken.push(format!("replica {}: {error}", answer.gateway)),
        }
    }
    broken
}

/// The RR an answer names, and its ordinal, for 2xx answers.
fn counted(answer: &Answer) -> Option<(String, i64)> {
    let (status, _, body) = answer.result.as_ref().ok()?;
    let name = body["remediationRequestName"].as_str()?.to_owned();
    match status {
        201 => Some((name, 1)),
        202 => Some((name, body["metadata"]["count"].as_i64()?)),
        _ => None,
    }
}

fn check_state(
    ns: &str,
    rrs: &[RemediationRequest],
    answers: &[Answer],
    effects: &Effects,
) -> Vec<String> {
    let rule = {
        let storm = gateway::config::Config::default().storm;
        gateway::storm::Rule {
            threshold: storm.threshold,
            window: storm.window,
            history_size: storm.history_size(),
        }
    };
    let mut broken = Vec::new();
    for fingerprint in 0..FINGERPRINTS {
        let wanted = Fingerprint::of(None, ns, "Pod", &pod(fingerprint));
        let mine: Vec<&RemediationRequest> = rrs
            .iter()
            .filter(|rr| rr.spec.signal_fingerprint == wanted.to_string())
            .collect();
        let active = mine
            .iter()
            .filter(|rr| {
                let phase = rr.status.as_ref().and_then(|s| s.overall_phase.as_deref());
                !gateway::index::TERMINAL_PHASES.contains(&phase.unwrap_or_default())
            })
            .count();
        if active != 1 {
            broken.push(format!("fingerprint {fingerprint}: {active} active RRs"));
        }
        // Answers that belong to the RRs that still exist.
        let after_deletion = |answer: &&Answer| match effects.deleted {
            Some((deleted, at)) if deleted == fingerprint => answer.answered_at > at,
            _ => true,
        };
        let relevant: Vec<&Answer> = answers
            .iter()
            .filter(|a| a.fingerprint == fingerprint)
            .filter(after_deletion)
            .collect();
        let total: i64 = mine.iter().map(|rr| count_of(rr)).sum();
        if total > relevant.len() as i64 {
            broken.push(format!(
                "fingerprint {fingerprint}: counted {total}, more than the {} deliveries",
                relevant.len()
            ));
        }
        let mut ordinals: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (name, ordinal) in relevant.iter().filter_map(|a| counted(a)) {
            ordinals.entry(name).or_default().push(ordinal);
        }
        for (name, mut got) in ordinals {
            got.sort_unstable();
            let distinct = got.windows(2).all(|w| w[0] < w[1]);
            let Some(rr) = mine
                .iter()
                .find(|rr| rr.metadata.name.as_deref() == Some(&name))
            else {
                broken.push(format!(
                    "fingerprint {fingerprint}: answers name {name}, which does not exist"
                ));
                continue;
            };
            let count = count_of(rr);
            if !distinct || got.len() as i64 > count || got.last().is_some_and(|&o| o > count) {
                broken.push(format!(
                    "RR {name}: count {count}, 2xx ordinals {got:?} (must be distinct, at most the count)"
                ));
            }
        }
        for rr in &mine {
            let status = rr.status.as_ref();
            let dedup = status.and_then(|s| s.deduplication.as_ref());
            let history = History::from_status(dedup, rr.spec.received_time.0);
            let name = rr.metadata.name.as_deref().unwrap_or_default();
            let expected = rule.status(&wanted, name, &history);
            let stored = status.and_then(|s| s.storm_aggregation.clone());
            if dedup.is_some() && stored != expected {
                broken.push(format!(
                    "RR {name}: storm block {stored:?}, the rule gives {expected:?}"
                ));
            }
        }
    }
    broken
}

/// This binary's control plane, with the proxy; the tests take turns ([`SERIAL`]), as each
/// disturbs it.
async fn plane() -> &'static ControlPlane {
    static PLANE: tokio::sync::OnceCell<ControlPlane> = tokio::sync::OnceCell::const_new();
    PLANE
        .get_or_init(|| async {
            ControlPlane::start(gateway_envtest::Options {
                crds: gateway_envtest::default_crds(),
                proxy: true,
                ..gateway_envtest::Options::default()
            })
            .await
            .unwrap()
        })
        .await
}

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_keeps_counts_exact_and_rrs_unique() {
    let _turn = SERIAL.lock().await;
    let plane = plane().await;
    let mut broken = Vec::new();
    let mut report = String::new();
    let only = std::env::var("FAULT_MATRIX_CASE").ok();
    for case in CASES {
        if only
            .as_deref()
            .is_some_and(|only| !format!("{case:?}").eq_ignore_ascii_case(only))
        {
            continue;
        }
        let started = Instant::now();
        let (found, figures) = run_case(case, plane).await;
        let _ = writeln!(
            report,
            "{figures}; case took {:.0} s",
            started.elapsed().as_secs_f64()
        );
        broken.extend(found);
    }
    eprintln!("{report}");
    assert!(broken.is_empty(), "{}\n{report}", broken.join("\n"));
}

/// One slow call (a status patch held 2.5 s on the wire, past the 2 s call deadline) must not
/// take the replica out of its Service: readiness follows the breaker, which one timeout does
/// not open. The signal itself is still answered with its exact ordinal: the engine finds
/// out whether the timed-out patch landed (or sends it again under the same precondition).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_isolated_timeout_keeps_the_replica_ready_and_the_count_exact() {
    let _turn = SERIAL.lock().await;
    let plane = plane().await;
    let ns = plane.create_namespace("isolated").await.unwrap();
    plane.warm_up_rr_writes(&ns).await.unwrap();
    let http = Http::authorized(&sender_token(plane, &ns).await);
    let gateway = Gateway::start(plane.kubeconfig_path(), &ns, &[]);
    gateway.ready(&http).await;
    let url = signal_url(&gateway);
    let (status, body) = http.post(&url, &alert("Isolated", &ns, "pod-0")).await;
    assert_eq!(status, 201, "{body}");

    let readyz = format!("{}/readyz", gateway.health);
    let watching = {
        let (http, readyz) = (http.clone(), readyz.clone());
        tokio::spawn(async move {
            let mut unready = 0;
            let until = Instant::now() + Duration::from_secs(6);
            while Instant::now() < until {
                if !matches!(http.get(&readyz).await, Ok((200, _))) {
                    unready += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            unready
        })
    };
    plane
        .fault(Fault::Latency(Duration::from_millis(2500)))
        .unwrap();
    let slow = {
        let (http, url, body) = (http.clone(), url.clone(), alert("Isolated", &ns, "pod-0"));
        tokio::spawn(async move { http.try_post(&url, &body, SENDER_TIMEOUT).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    plane.fault(Fault::None).unwrap();
    let (status, _, body) = slow.await.unwrap().unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["metadata"]["count"], 2, "{body}");
    let timeouts = gateway
        .metric(
            &http,
            "gateway_k8s_requests_total",
            &[("verb", "patch"), ("outcome", "timeout")],
        )
        .await;
    assert!(timeouts >= 1.0, "the patch did time out");
    let resolved = gateway
        .metric(
            &http,
            "gateway_ambiguous_writes_total",
            &[("verb", "patch")],
        )
        .await;
    assert!(resolved >= 1.0);
    assert_eq!(watching.await.unwrap(), 0, "readiness never dropped");

    let (status, body) = http.post(&url, &alert("Isolated", &ns, "pod-0")).await;
    assert_eq!((status, body["metadata"]["count"].as_i64()), (202, Some(3)));
    let admin: Api<RemediationRequest> = Api::namespaced(plane.direct_client().unwrap(), &ns);
    let rrs = admin.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rrs.iter().map(count_of).collect::<Vec<_>>(), vec![3]);
}
