//! Membership through Kubernetes itself: each replica keeps a `coordination.k8s.io/v1` Lease in
//! the controller namespace (holder = its peer address, renewed every `renew_interval`,
//! labelled [`MEMBER_LABEL`]), and watches every such Lease. A Lease not renewed within its
//! `leaseDurationSeconds`, or deleted, leaves the ring; a replica deletes its own on shutdown.
//!
//! Liveness is judged by when this replica *saw* a Lease's `renewTime` change, not by comparing
//! the `renewTime` with its own clock, so skew between nodes does not matter. Only a Lease seen
//! for the first time (at start or after a relist) is aged by its `renewTime`, so a Lease left
//! behind by a crashed replica is not taken for a live one.
//!
//! Nothing here decides a count: members that disagree about the ring cost extra writes, the
//! resourceVersion preconditions keep every count exact.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::StreamExt as _;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tokio_util::sync::CancellationToken;

use super::Telemetry;
use super::ring::{Member, Ring};

/// Label every member Lease carries, and the selector the watch uses.
pub const MEMBER_LABEL: (&str, &str) = ("app.kubernetes.io/component", "gateway-member");
/// Prefix of a member Lease's name; the rest is the pod name (`POD_NAME`) or a random id.
pub const LEASE_PREFIX: &str = "gateway-member-";

/// How one replica takes part.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace of the Leases (the controller namespace).
    pub namespace: String,
    /// This replica's Lease name.
    pub lease_name: String,
    /// This replica's peer address (the Lease's `holderIdentity`).
    pub advertise: String,
    /// `leaseDurationSeconds`, and how long an unrenewed Lease stays in the ring.
    pub lease_duration: Duration,
    /// Renewal period.
    pub renew_interval: Duration,
    /// Deadline of each Lease call.
    pub call_timeout: Duration,
}

/// The current ring, swapped whole whenever membership changes; read without a lock on the
/// request path.
pub type View = Arc<ArcSwap<Ring>>;

/// A Lease name for this replica: `POD_NAME` when the Deployment sets it (stable for the pod's
/// life, so a restarted container takes its Lease back), else a random id.
pub fn lease_name(pod_name: Option<&str>) -> String {
    let suffix: String = match pod_name {
        Some(name) if !name.is_empty() => name
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
            .collect(),
        _ => uuid::Uuid::new_v4().simple().to_string(),
    };
    let mut name = format!("{LEASE_PREFIX}{suffix}");
    name.truncate(253);
    name.trim_end_matches(['-', '.']).to_owned()
}

/// Keeps this replica's Lease renewed until `intake` is cancelled, then deletes it (so peers
/// stop forwarding before this replica stops serving).
pub async fn keep_lease(api: Api<Lease>, settings: Settings, intake: CancellationToken) {
    let mut held: Option<Lease> = None;
    let mut tick = tokio::time::interval(settings.renew_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refused_logged = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = intake.cancelled() => break,
        }
        match renew(&api, &settings, held.take()).await {
            Ok(lease) => {
                held = Some(lease);
                refused_logged = false;
            }
            Err(error) => {
                if !refused_logged {
                    tracing::warn!(
                        %error,
                        lease = settings.lease_name,
                        "cannot keep the member Lease; peers will not forward to this replica until it can"
                    );
                    refused_logged = true;
                }
            }
        }
    }
    let params = DeleteParams::default();
    let delete = api.delete(&settings.lease_name, &params);
    match tokio::time::timeout(settings.call_timeout, delete).await {
        Ok(Ok(_)) => tracing::info!(lease = settings.lease_name, "member Lease released"),
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => {}
        Ok(Err(error)) => tracing::warn!(%error, "releasing the member Lease failed"),
        Err(_) => tracing::warn!("releasing the member Lease timed out"),
    }
}

async fn renew(
    api: &Api<Lease>,
    settings: &Settings,
    held: Option<Lease>,
) -> Result<Lease, kube::Error> {
    let now = MicroTime(jiff::Timestamp::now());
    let deadline = settings.call_timeout;
    if let Some(mut lease) = held {
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.renew_time = Some(now.clone());
        spec.holder_identity = Some(settings.advertise.clone());
        let replaced = within(
            deadline,
            Box::pin(api.replace(&settings.lease_name, &PostParams::default(), &lease)),
        )
        .await;
        match replaced {
            Ok(lease) => return Ok(lease),
            // Deleted or changed behind our back: start over from what is there.
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(error) => return Err(error),
        }
    }
    let fresh = Lease {
        metadata: ObjectMeta {
            name: Some(settings.lease_name.clone()),
            labels: Some(BTreeMap::from([(
                MEMBER_LABEL.0.to_owned(),
                MEMBER_LABEL.1.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(settings.advertise.clone()),
            lease_duration_seconds: Some(
                i32::try_from(settings.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..LeaseSpec::default()
        }),
    };
    match within(
        deadline,
        Box::pin(api.create(&PostParams::default(), &fresh)),
    )
    .await
    {
        Err(kube::Error::Api(status)) if status.code == 409 => {
            // Ours from before a restart (same pod name): replace it whole. Deleting and
            // creating needs no GET, so the Role grants none.
            within(
                deadline,
                Box::pin(async {
                    api.delete(&settings.lease_name, &DeleteParams::default())
                        .await
                        .map(|_| ())
                }),
            )
            .await
            .or_else(|error| match error {
                kube::Error::Api(status) if status.code == 404 => Ok(()),
                other => Err(other),
            })?;
            within(
                deadline,
                Box::pin(api.create(&PostParams::default(), &fresh)),
            )
            .await
        }
        other => other,
    }
}

/// `call` under `deadline`, a timeout reported as a kube error like any other failure.
async fn within<T>(
    deadline: Duration,
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    tokio::time::timeout(deadline, call)
        .await
        .unwrap_or_else(|_| Err(kube::Error::Service("Lease call timed out".into())))
}

/// What this replica knows of one member Lease.
#[derive(Clone, Debug)]
struct Seen {
    holder: String,
    duration: Duration,
    renew_time: Option<jiff::Timestamp>,
    /// When the renewal was observed here (or, for a Lease first seen, its age subtracted).
    renewed_at: Instant,
}

/// Watches the member Leases and keeps `view` to the live ones, this replica always included
/// (it knows it is alive). Ends when `stop` is cancelled.
pub async fn watch(
    api: Api<Lease>,
    me: String,
    view: View,
    telemetry: Telemetry,
    stop: CancellationToken,
) {
    let selector = format!("{}={}", MEMBER_LABEL.0, MEMBER_LABEL.1);
    let stream =
        watcher::watcher(api, watcher::Config::default().labels(&selector)).default_backoff();
    futures::pin_mut!(stream);
    let mut known: BTreeMap<String, Seen> = BTreeMap::new();
    let mut relist: Option<BTreeMap<String, Seen>> = None;
    // Expiry needs no event: re-judge the Leases a few times per renewal period.
    let mut expire = tokio::time::interval(Duration::from_millis(250));
    expire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refused_logged = false;
    publish(&known, &me, &view, &telemetry);
    loop {
        tokio::select! {
            event = stream.next() => match event {
                None => return,
                Some(Ok(Event::Init)) => relist = Some(BTreeMap::new()),
                Some(Ok(Event::InitApply(lease))) => {
                    let previous = known.get(&lease_key(&lease)).cloned();
                    if let Some(relist) = relist.as_mut() {
                        observe(relist, previous, &lease);
                    }
                }
                Some(Ok(Event::InitDone)) => {
                    if let Some(listed) = relist.take() {
                        known = listed;
                    }
                    refused_logged = false;
                }
                Some(Ok(Event::Apply(lease))) => {
                    let previous = known.get(&lease_key(&lease)).cloned();
                    observe(&mut known, previous, &lease);
                }
                Some(Ok(Event::Delete(lease))) => {
                    known.remove(&lease_key(&lease));
                }
                Some(Err(error)) => {
                    if !refused_logged {
                        tracing::warn!(%error, "member Lease watch failed; this replica sees only itself until it recovers");
                        refused_logged = true;
                    }
                    continue;
                }
            },
            _ = expire.tick() => {}
            _ = stop.cancelled() => return,
        }
        publish(&known, &me, &view, &telemetry);
    }
}

fn lease_key(lease: &Lease) -> String {
    lease.metadata.name.clone().unwrap_or_default()
}

fn observe(into: &mut BTreeMap<String, Seen>, previous: Option<Seen>, lease: &Lease) {
    let Some(spec) = &lease.spec else { return };
    let Some(holder) = spec.holder_identity.clone().filter(|h| !h.is_empty()) else {
        return;
    };
    let duration = Duration::from_secs(
        u64::try_from(spec.lease_duration_seconds.unwrap_or(0).max(1)).unwrap_or(1),
    );
    let renew_time = spec.renew_time.as_ref().map(|t| t.0);
    let now = Instant::now();
    let renewed_at = match previous {
        Some(seen) if seen.renew_time == renew_time => seen.renewed_at,
        Some(_) => now,
        None => {
            // First sight: age it by its renewTime, so a Lease a crashed replica left behind
            // does not count as live for a whole duration.
            let age = renew_time
                .and_then(|t| jiff::Timestamp::now().duration_since(t).try_into().ok())
                .unwrap_or(Duration::ZERO);
            now.checked_sub(age.min(duration)).unwrap_or(now)
        }
    };
    into.insert(
        lease_key(lease),
        Seen {
            holder,
            duration,
            renew_time,
            renewed_at,
        },
    );
}

fn publish(known: &BTreeMap<String, Seen>, me: &str, view: &View, telemetry: &Telemetry) {
    let now = Instant::now();
    let mut members: Vec<Member> = known
        .values()
        .filter(|seen| now.duration_since(seen.renewed_at) < seen.duration)
        .map(|seen| Member::new(seen.holder.clone()))
        .collect();
    members.push(Member::new(me));
    let ring = Ring::new(members);
    if **view.load() != ring {
        tracing::info!(
            members = ?ring.members().iter().map(|m| &*m.addr).collect::<Vec<_>>(),
            "cluster membership changed"
        );
        telemetry.members.set(ring.len() as f64);
        view.store(Arc::new(ring));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_follow_the_pod_or_are_random() {
        assert_eq!(
            lease_name(Some("gateway-7d9f-abc")),
            "gateway-member-gateway-7d9f-abc"
        );
        assert_eq!(lease_name(Some("Odd_Name-")), "gateway-member-oddname");
        let random = lease_name(None);
        assert!(random.starts_with(LEASE_PREFIX) && random.len() == LEASE_PREFIX.len() + 32);
        assert_ne!(random, lease_name(Some("")));
    }

    fn lease(name: &str, holder: &str, renewed: jiff::Timestamp, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(seconds),
                renew_time: Some(MicroTime(renewed)),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_stale_lease_seen_first_is_not_live_and_a_renewed_one_is() {
        let mut known = BTreeMap::new();
        let long_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60);
        observe(&mut known, None, &lease("a", "10.0.0.1:8082", long_ago, 15));
        observe(
            &mut known,
            None,
            &lease("b", "10.0.0.2:8082", jiff::Timestamp::now(), 15),
        );
        let view: View = Arc::default();
        let telemetry = Telemetry::new();
        publish(&known, "10.0.0.9:8082", &view, &telemetry);
        let addrs: Vec<String> = view
            .load()
            .members()
            .iter()
            .map(|m| m.addr.to_string())
            .collect();
        assert_eq!(addrs, ["10.0.0.2:8082", "10.0.0.9:8082"]);

        // Renewed since: live again.
        let previous = known.get("a").cloned();
        observe(
            &mut known,
            previous,
            &lease("a", "10.0.0.1:8082", jiff::Timestamp::now(), 15),
        );
        publish(&known, "10.0.0.9:8082", &view, &telemetry);
        assert_eq!(view.load().len(), 3);
    }
}
