//! The metadata cache: one watch of `PartialObjectMetadata` per [`Kind`] (cluster-wide, or one
//! per namespace of `owners.namespaces`), each feeding a shard that keeps, per object, only
//! its controller and its managed label ([`Meta`]). Lookups read the shards and never call the
//! API; a relist (first list, 410 Gone) is built aside and swapped in whole.
//!
//! A shard answers [`Fallback::NotSynced`] until its first list, and [`Fallback::Forbidden`]
//! when that list was refused (403): the signal then keeps its labelled resource, and the
//! watch keeps retrying with backoff, so granting the RBAC later heals it without a restart.
//! Readiness waits for every shard's first list to have been tried, so a replica does not
//! serve, and fingerprint pods as themselves, while it is still listing.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Fallback, Kind, Lookup, Meta};
use crate::health::Health;
use crate::telemetry::names;

/// Objects of one shard: namespace → name → what is kept. A Namespace is filed under its own
/// name.
type Objects = HashMap<Box<str>, HashMap<Box<str>, Meta>>;

const LISTING: u8 = 0;
const LISTED: u8 = 1;
const FORBIDDEN: u8 = 2;

/// The objects of one kind in one watch scope.
struct Shard {
    kind: Kind,
    /// `None`: cluster-wide.
    namespace: Option<String>,
    state: AtomicU8,
    /// Set once the first list has been tried (listed or refused).
    tried: AtomicBool,
    objects: RwLock<Objects>,
}

impl Shard {
    fn new(kind: Kind, namespace: Option<String>) -> Arc<Self> {
        Arc::new(Shard {
            kind,
            namespace,
            state: AtomicU8::new(LISTING),
            tried: AtomicBool::new(false),
            objects: RwLock::default(),
        })
    }

    fn get(&self, namespace: &str, name: &str) -> Result<Option<Meta>, Fallback> {
        match self.state.load(Ordering::Acquire) {
            LISTED => {}
            FORBIDDEN => return Err(Fallback::Forbidden),
            _ => return Err(Fallback::NotSynced),
        }
        let objects = self.objects.read().map_err(|_| Fallback::NotSynced)?;
        Ok(objects.get(namespace).and_then(|n| n.get(name)).cloned())
    }

    fn len(&self) -> usize {
        self.objects
            .read()
            .map_or(0, |objects| objects.values().map(HashMap::len).sum())
    }
}

/// Where one kind is watched.
enum Scope {
    /// Not watched at all (the scope rule is off: no Namespace watch).
    Off,
    /// One cluster-wide watch.
    All(Arc<Shard>),
    /// One watch per namespace.
    Namespaces(HashMap<String, Arc<Shard>>),
}

/// What is watched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Whether anything is watched (owner resolution or the scope rule is on).
    pub enabled: bool,
    /// Namespaces watched; empty: cluster-wide.
    pub namespaces: Vec<String>,
    /// Whether Namespaces are watched too (the scope rule needs their labels).
    pub namespaces_metadata: bool,
}

/// The metadata cache. Cheap to share behind an `Arc`; lookups take a read lock on one shard.
pub struct Cache {
    kinds: Vec<Scope>,
    /// Shards whose first list has not been tried yet.
    untried: AtomicUsize,
    health: Arc<Health>,
    /// Objects held over every shard, and `gateway_owner_cache_objects`.
    objects: AtomicI64,
    objects_gauge: metrics::Gauge,
}

impl Cache {
    /// An empty cache watching as `settings` say; nothing runs until [`Cache::spawn`]. Marks
    /// `health` not ready until every shard's first list has been tried.
    pub fn new(settings: &Settings, health: Arc<Health>) -> Arc<Self> {
        let mut shards = 0;
        let kinds = Kind::ALL
            .into_iter()
            .map(|kind| {
                if !settings.enabled || (kind == Kind::Namespace && !settings.namespaces_metadata) {
                    return Scope::Off;
                }
                if settings.namespaces.is_empty() {
                    shards += 1;
                    return Scope::All(Shard::new(kind, None));
                }
                let per = settings
                    .namespaces
                    .iter()
                    .map(|ns| (ns.clone(), Shard::new(kind, Some(ns.clone()))))
                    .collect::<HashMap<_, _>>();
                shards += per.len();
                Scope::Namespaces(per)
            })
            .collect();
        health.set_owners_listed(shards == 0);
        crate::telemetry::prometheus();
        let objects_gauge = metrics::gauge!(names::OWNER_CACHE_OBJECTS);
        objects_gauge.set(0.0);
        Arc::new(Cache {
            kinds,
            untried: AtomicUsize::new(shards),
            health,
            objects: AtomicI64::new(0),
            objects_gauge,
        })
    }

    /// Starts one watch per shard; they end when `stop` is cancelled.
    pub fn spawn(
        self: &Arc<Self>,
        client: &kube::Client,
        stop: &CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        for scope in &self.kinds {
            let shards: Vec<Arc<Shard>> = match scope {
                Scope::Off => Vec::new(),
                Scope::All(shard) => vec![shard.clone()],
                Scope::Namespaces(per) => per.values().cloned().collect(),
            };
            for shard in shards {
                tasks.push(match shard.kind {
                    Kind::Pod => tokio::spawn(self.feed::<Pod>(client, shard, stop)),
                    Kind::ReplicaSet => tokio::spawn(self.feed::<ReplicaSet>(client, shard, stop)),
                    Kind::Deployment => tokio::spawn(self.feed::<Deployment>(client, shard, stop)),
                    Kind::StatefulSet => {
                        tokio::spawn(self.feed::<StatefulSet>(client, shard, stop))
                    }
                    Kind::DaemonSet => tokio::spawn(self.feed::<DaemonSet>(client, shard, stop)),
                    Kind::Job => tokio::spawn(self.feed::<Job>(client, shard, stop)),
                    Kind::CronJob => tokio::spawn(self.feed::<CronJob>(client, shard, stop)),
                    Kind::Namespace => tokio::spawn(self.feed_namespaces(client, shard, stop)),
                });
            }
        }
        tasks
    }

    /// Objects held, over every shard.
    pub fn len(&self) -> usize {
        self.shards().map(|s| s.len()).sum()
    }

    /// Fills `kind`'s cluster-wide shard with `objects` as a relist would, and marks it listed:
    /// the structure the watches build, without a cluster, for the benches (`cargo bench
    /// --bench hot_path -- owners/`). Does nothing in per-namespace mode.
    pub fn preload(&self, kind: Kind, objects: &[ObjectMeta]) {
        let Scope::All(shard) = &self.kinds[kind as usize] else {
            return;
        };
        let mut fresh = Objects::new();
        for metadata in objects {
            insert(&mut fresh, metadata);
        }
        self.replace(shard, fresh);
        self.tried(shard);
    }

    /// Swaps a relist in and marks the shard listed.
    fn replace(&self, shard: &Shard, fresh: Objects) {
        let count: usize = fresh.values().map(HashMap::len).sum();
        let before = shard.len();
        if let Ok(mut objects) = shard.objects.write() {
            *objects = fresh;
        }
        shard.state.store(LISTED, Ordering::Release);
        self.count(count as i64 - before as i64);
    }

    fn count(&self, delta: i64) {
        if delta != 0 {
            let now = self.objects.fetch_add(delta, Ordering::Relaxed) + delta;
            self.objects_gauge.set(now as f64);
        }
    }

    /// Whether no object is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shards(&self) -> impl Iterator<Item = &Arc<Shard>> {
        self.kinds.iter().flat_map(|scope| match scope {
            Scope::Off => Vec::new(),
            Scope::All(shard) => vec![shard],
            Scope::Namespaces(per) => per.values().collect(),
        })
    }

    fn feed<K>(
        self: &Arc<Self>,
        client: &kube::Client,
        shard: Arc<Shard>,
        stop: &CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
    {
        let api: Api<PartialObjectMeta<K>> = match &shard.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        self.clone()
            .run(api, watcher::Config::default(), shard, stop.clone())
    }

    fn feed_namespaces(
        self: &Arc<Self>,
        client: &kube::Client,
        shard: Arc<Shard>,
        stop: &CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
        // Per-namespace mode watches each listed namespace alone, so the gateway needs no
        // right on the others.
        let config = match &shard.namespace {
            Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
            None => watcher::Config::default(),
        };
        self.clone().run(api, config, shard, stop.clone())
    }

    async fn run<K>(
        self: Arc<Self>,
        api: Api<PartialObjectMeta<K>>,
        config: watcher::Config,
        shard: Arc<Shard>,
        stop: CancellationToken,
    ) where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        // Served from the apiserver's watch cache: no quorum read of every pod on a relist.
        let stream = watcher::watcher(api, config.any_semantic()).default_backoff();
        futures::pin_mut!(stream);
        let mut relist: Option<Objects> = None;
        let mut failing = false;
        loop {
            let event = tokio::select! {
                event = stream.next() => event,
                _ = stop.cancelled() => return,
            };
            match event {
                None => return,
                Some(Ok(Event::Init)) => relist = Some(Objects::new()),
                Some(Ok(Event::InitApply(object))) => {
                    if let Some(objects) = relist.as_mut() {
                        insert(objects, &object.metadata);
                    }
                }
                Some(Ok(Event::InitDone)) => {
                    let fresh = relist.take().unwrap_or_default();
                    let count: usize = fresh.values().map(HashMap::len).sum();
                    self.replace(&shard, fresh);
                    if failing {
                        failing = false;
                        tracing::info!(
                            kind = shard.kind.label(),
                            namespace = shard.namespace.as_deref().unwrap_or("*"),
                            "owner cache watch recovered"
                        );
                    }
                    tracing::info!(
                        kind = shard.kind.label(),
                        namespace = shard.namespace.as_deref().unwrap_or("*"),
                        objects = count,
                        "owner cache listed"
                    );
                    self.tried(&shard);
                }
                Some(Ok(Event::Apply(object))) => {
                    let added = match shard.objects.write() {
                        Ok(mut objects) => insert(&mut objects, &object.metadata),
                        Err(_) => false,
                    };
                    self.count(i64::from(added));
                }
                Some(Ok(Event::Delete(object))) => {
                    let removed = match shard.objects.write() {
                        Ok(mut objects) => remove(&mut objects, &object.metadata),
                        Err(_) => false,
                    };
                    self.count(-i64::from(removed));
                }
                Some(Err(error)) => {
                    let forbidden = is_forbidden(&error);
                    if forbidden && shard.state.load(Ordering::Acquire) == LISTING {
                        shard.state.store(FORBIDDEN, Ordering::Release);
                    }
                    // Once per failure streak: the watcher retries with backoff meanwhile.
                    if !failing {
                        failing = true;
                        tracing::warn!(
                            kind = shard.kind.label(),
                            namespace = shard.namespace.as_deref().unwrap_or("*"),
                            forbidden,
                            %error,
                            "owner cache watch failed; signals it cannot answer for keep their labelled resource"
                        );
                    }
                    self.tried(&shard);
                }
            }
        }
    }

    fn tried(&self, shard: &Shard) {
        if !shard.tried.swap(true, Ordering::AcqRel)
            && self.untried.fetch_sub(1, Ordering::AcqRel) == 1
        {
            self.health.set_owners_listed(true);
        }
    }
}

fn is_forbidden(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 403,
        watcher::Error::WatchError(status) => status.code == 403,
        _ => false,
    }
}

fn key(metadata: &ObjectMeta) -> Option<(&str, &str)> {
    let name = metadata.name.as_deref()?;
    Some((metadata.namespace.as_deref().unwrap_or(name), name))
}

/// Files an object; true when it was not held before.
fn insert(objects: &mut Objects, metadata: &ObjectMeta) -> bool {
    let Some((namespace, name)) = key(metadata) else {
        return false;
    };
    let meta = Meta::of(metadata);
    match objects.get_mut(namespace) {
        Some(names) => names.insert(name.into(), meta).is_none(),
        None => {
            objects.insert(namespace.into(), HashMap::from([(name.into(), meta)]));
            true
        }
    }
}

/// Forgets an object; true when it was held.
fn remove(objects: &mut Objects, metadata: &ObjectMeta) -> bool {
    let Some((namespace, name)) = key(metadata) else {
        return false;
    };
    let Some(names) = objects.get_mut(namespace) else {
        return false;
    };
    let removed = names.remove(name).is_some();
    if names.is_empty() {
        objects.remove(namespace);
    }
    removed
}

impl Lookup for Cache {
    fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Option<Meta>, Fallback> {
        match &self.kinds[kind as usize] {
            Scope::Off => Err(Fallback::NotWatched),
            Scope::All(shard) => shard.get(namespace, name),
            Scope::Namespaces(per) => per
                .get(namespace)
                .ok_or(Fallback::NotWatched)?
                .get(namespace, name),
        }
    }
}
