//! Owner-chain resolution and the scope rule, read from a metadata-only cache.
//!
//! A signal names the object it was raised on (a Pod, usually); the problem to fix is the
//! workload that owns it. [`resolve`] follows controller `ownerReferences` upwards through the
//! [`Kind`]s the cache holds (Pod → ReplicaSet → Deployment, Pod → StatefulSet / DaemonSet,
//! Pod → Job → CronJob), at most [`MAX_DEPTH`] steps, and names the top one, so every pod of a
//! workload, before and after a rollout, fingerprints the same. A controller of another kind (a
//! Node for a static pod, a custom controller) ends the chain at the object it owns.
//!
//! Resolution never loses a signal: when the labelled object is not in the cache (a deleted
//! pod), when the cache may not read it (RBAC), has not listed it yet, or does not watch its
//! namespace, the signal keeps the labelled resource and the [`Fallback`] says why.
//!
//! [`scope`] decides whether a target is managed (`kubernaut.ai/managed`), from the same cache.
//! The cache itself, fed by watches, is [`cache::Cache`]; everything here reads it through the
//! [`Lookup`] trait so the logic is tested without a cluster.

pub mod cache;
pub mod scope;
pub mod stage;

pub use stage::{Stage, Verdict};

/// The longest chain followed above the labelled object (Pod → Job → CronJob is 2): a longer
/// one is a loop or not a workload, and falls back.
pub const MAX_DEPTH: usize = 4;

/// The label whose value `true` or `false` opts a target or a namespace in or out of scope.
pub const MANAGED_LABEL: &str = "kubernaut.ai/managed";

/// The kinds the metadata cache holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `v1` Pod.
    Pod = 0,
    /// `apps/v1` ReplicaSet.
    ReplicaSet = 1,
    /// `apps/v1` Deployment.
    Deployment = 2,
    /// `apps/v1` StatefulSet.
    StatefulSet = 3,
    /// `apps/v1` DaemonSet.
    DaemonSet = 4,
    /// `batch/v1` Job.
    Job = 5,
    /// `batch/v1` CronJob.
    CronJob = 6,
    /// `v1` Namespace (cluster-scoped; for the scope rule only).
    Namespace = 7,
}

impl Kind {
    /// Every kind, in discriminant order.
    pub const ALL: [Kind; 8] = [
        Kind::Pod,
        Kind::ReplicaSet,
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::Job,
        Kind::CronJob,
        Kind::Namespace,
    ];

    /// The kinds an owner chain walks through.
    pub const WORKLOADS: [Kind; 7] = [
        Kind::Pod,
        Kind::ReplicaSet,
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::Job,
        Kind::CronJob,
    ];

    /// The `kind` as Kubernetes spells it.
    pub fn name(self) -> &'static str {
        [
            "Pod",
            "ReplicaSet",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "CronJob",
            "Namespace",
        ][self as usize]
    }

    /// The `apiVersion`.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Pod | Kind::Namespace => "v1",
            Kind::ReplicaSet | Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet => "apps/v1",
            Kind::Job | Kind::CronJob => "batch/v1",
        }
    }

    /// The workload kind named `kind` in `api_version` (any version of its group; `None`: the
    /// source did not say, as alert labels never do).
    pub fn workload(kind: &str, api_version: Option<&str>) -> Option<Kind> {
        let found = Kind::WORKLOADS.into_iter().find(|k| k.name() == kind)?;
        let group = |v: &str| v.rsplit_once('/').map_or("", |(group, _)| group).to_owned();
        match api_version {
            Some(given) if group(given) != group(found.api_version()) => None,
            _ => Some(found),
        }
    }

    /// The `kind` label value of the fallback log and metrics.
    pub fn label(self) -> &'static str {
        self.name()
    }
}

/// What the cache keeps of one object: its controller, when that is a kind it holds, and its
/// [`MANAGED_LABEL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The `ownerReferences` entry with `controller: true`, when it names a [`Kind`] the cache
    /// holds.
    pub controller: Option<(Kind, Box<str>)>,
    /// `Some(true)` / `Some(false)` for [`MANAGED_LABEL`] `true` / `false`; `None` otherwise.
    pub managed: Option<bool>,
}

impl Meta {
    /// Reads what matters from an object's metadata.
    pub fn of(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Meta {
        let controller = metadata.owner_references.iter().flatten().find_map(|r| {
            if r.controller != Some(true) {
                return None;
            }
            let kind = Kind::workload(&r.kind, Some(&r.api_version))?;
            Some((kind, r.name.as_str().into()))
        });
        let managed = metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(MANAGED_LABEL))
            .and_then(|value| match value.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            });
        Meta {
            controller,
            managed,
        }
    }
}

/// Why the cache could not answer for an object, or a chain could not be resolved: the
/// signal keeps its labelled resource. Also the `reason` label of
/// `gateway_owner_fallbacks_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fallback {
    /// The labelled object, or an owner its chain names, is not in the listed cache (deleted,
    /// or not created yet).
    NotFound = 0,
    /// The cache has not finished listing this kind in this namespace.
    NotSynced = 1,
    /// The gateway's identity may not list or watch this kind there.
    Forbidden = 2,
    /// The namespace is not one of `owners.namespaces`.
    NotWatched = 3,
    /// The chain is longer than [`MAX_DEPTH`] (or loops).
    TooDeep = 4,
}

impl Fallback {
    /// Every reason, in discriminant order.
    pub const ALL: [Fallback; 5] = [
        Fallback::NotFound,
        Fallback::NotSynced,
        Fallback::Forbidden,
        Fallback::NotWatched,
        Fallback::TooDeep,
    ];

    /// The metric label value.
    pub fn label(self) -> &'static str {
        [
            "not_found",
            "not_synced",
            "forbidden",
            "not_watched",
            "too_deep",
        ][self as usize]
    }
}

/// Read access to the metadata cache.
pub trait Lookup: Send + Sync + 'static {
    /// The object `kind`/`name` in `namespace` (for [`Kind::Namespace`], `namespace` is the
    /// namespace's own name): `Ok(None)` when the listed cache does not hold it.
    fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Option<Meta>, Fallback>;
}

/// The object a chain ended at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Top {
    /// Its kind.
    pub kind: Kind,
    /// Its name (the namespace is the labelled object's: owners share it).
    pub name: String,
    /// Its [`MANAGED_LABEL`].
    pub managed: Option<bool>,
    /// How many controller steps above the labelled object it is (0: the object itself).
    pub depth: usize,
}

/// What [`resolve`] found for a labelled target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Not a workload kind, or cluster-scoped: the target is taken as labelled.
    OtherKind,
    /// The chain's top (the labelled object itself when it has no controller).
    Resolved(Top),
    /// Taken as labelled, for this reason.
    Fallback(Fallback),
}

/// Follows the labelled object's controller chain in `namespace`: `kind` and `api_version`
/// as the signal named them.
pub fn resolve(
    lookup: &impl Lookup,
    namespace: Option<&str>,
    kind: &str,
    api_version: Option<&str>,
    name: &str,
) -> Resolution {
    let (Some(namespace), Some(mut kind)) = (namespace, Kind::workload(kind, api_version)) else {
        return Resolution::OtherKind;
    };
    let mut name: Box<str> = name.into();
    for depth in 0..=MAX_DEPTH {
        let meta = match lookup.get(kind, namespace, &name) {
            Ok(Some(meta)) => meta,
            Ok(None) => return Resolution::Fallback(Fallback::NotFound),
            Err(fallback) => return Resolution::Fallback(fallback),
        };
        match meta.controller {
            Some((owner_kind, owner_name)) => {
                kind = owner_kind;
                name = owner_name;
            }
            None => {
                return Resolution::Resolved(Top {
                    kind,
                    name: name.into(),
                    managed: meta.managed,
                    depth,
                });
            }
        }
    }
    Resolution::Fallback(Fallback::TooDeep)
}

#[cfg(test)]
pub mod fake {
    //! An in-memory [`Lookup`] for unit tests.

    use std::collections::HashMap;

    use super::{Fallback, Kind, Lookup, Meta};

    /// Objects by (kind, namespace, name); namespaces listed in `unavailable` answer with
    /// their fallback.
    #[derive(Default)]
    pub struct FakeLookup {
        /// The cached objects.
        pub objects: HashMap<(Kind, String, String), Meta>,
        /// Namespaces the cache cannot answer for, and why.
        pub unavailable: HashMap<String, Fallback>,
    }

    impl FakeLookup {
        /// Adds `kind`/`name` in `namespace`, controlled by `controller`.
        pub fn add(
            &mut self,
            kind: Kind,
            namespace: &str,
            name: &str,
            controller: Option<(Kind, &str)>,
        ) -> &mut Self {
            self.objects.insert(
                (kind, namespace.into(), name.into()),
                Meta {
                    controller: controller.map(|(k, n)| (k, n.into())),
                    managed: None,
                },
            );
            self
        }
    }

    impl Lookup for FakeLookup {
        fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Option<Meta>, Fallback> {
            if let Some(fallback) = self.unavailable.get(namespace) {
                return Err(*fallback);
            }
            Ok(self
                .objects
                .get(&(kind, namespace.to_owned(), name.to_owned()))
                .cloned())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::fake::FakeLookup;
    use super::*;
    use proptest::prelude::*;

    fn top(kind: Kind, name: &str, depth: usize) -> Resolution {
        Resolution::Resolved(Top {
            kind,
            name: name.into(),
            managed: None,
            depth,
        })
    }

    fn chains() -> FakeLookup {
        let mut cache = FakeLookup::default();
        cache
            .add(Kind::Deployment, "shop", "api", None)
            .add(
                Kind::ReplicaSet,
                "shop",
                "api-7d9f8",
                Some((Kind::Deployment, "api")),
            )
            .add(
                Kind::Pod,
                "shop",
                "api-7d9f8-abcde",
                Some((Kind::ReplicaSet, "api-7d9f8")),
            )
            .add(Kind::CronJob, "shop", "report", None)
            .add(
                Kind::Job,
                "shop",
                "report-290",
                Some((Kind::CronJob, "report")),
            )
            .add(
                Kind::Pod,
                "shop",
                "report-290-x",
                Some((Kind::Job, "report-290")),
            )
            .add(Kind::Pod, "shop", "lonely", None);
        cache
    }

    #[test]
    fn a_pod_resolves_to_its_top_controller() {
        let cache = chains();
        let r = |name| resolve(&cache, Some("shop"), "Pod", None, name);
        assert_eq!(r("api-7d9f8-abcde"), top(Kind::Deployment, "api", 2));
        assert_eq!(r("report-290-x"), top(Kind::CronJob, "report", 2));
        assert_eq!(r("lonely"), top(Kind::Pod, "lonely", 0));
        // A labelled owner resolves too; a top-level object is its own top.
        assert_eq!(
            resolve(
                &cache,
                Some("shop"),
                "ReplicaSet",
                Some("apps/v1"),
                "api-7d9f8"
            ),
            top(Kind::Deployment, "api", 1)
        );
        assert_eq!(
            resolve(&cache, Some("shop"), "Deployment", None, "api"),
            top(Kind::Deployment, "api", 0)
        );
    }

    #[test]
    fn what_the_cache_cannot_answer_falls_back() {
        let mut cache = chains();
        assert_eq!(
            resolve(&cache, Some("shop"), "Pod", None, "gone"),
            Resolution::Fallback(Fallback::NotFound)
        );
        // An owner named by a reference but not cached.
        cache.add(
            Kind::Pod,
            "shop",
            "orphaned",
            Some((Kind::ReplicaSet, "deleted")),
        );
        assert_eq!(
            resolve(&cache, Some("shop"), "Pod", None, "orphaned"),
            Resolution::Fallback(Fallback::NotFound)
        );
        cache
            .unavailable
            .insert("locked".into(), Fallback::Forbidden);
        assert_eq!(
            resolve(&cache, Some("locked"), "Pod", None, "p"),
            Resolution::Fallback(Fallback::Forbidden)
        );
    }

    #[test]
    fn a_loop_is_too_deep() {
        let mut cache = FakeLookup::default();
        cache
            .add(Kind::ReplicaSet, "ns", "a", Some((Kind::ReplicaSet, "b")))
            .add(Kind::ReplicaSet, "ns", "b", Some((Kind::ReplicaSet, "a")));
        assert_eq!(
            resolve(&cache, Some("ns"), "ReplicaSet", None, "a"),
            Resolution::Fallback(Fallback::TooDeep)
        );
    }

    #[test]
    fn other_kinds_and_groups_are_taken_as_labelled() {
        let cache = chains();
        assert_eq!(
            resolve(&cache, None, "Node", None, "worker-1"),
            Resolution::OtherKind
        );
        assert_eq!(
            resolve(&cache, Some("shop"), "Service", None, "api"),
            Resolution::OtherKind
        );
        // A `Deployment` of another API group is not the apps one.
        assert_eq!(
            resolve(
                &cache,
                Some("shop"),
                "Deployment",
                Some("example.com/v1"),
                "api"
            ),
            Resolution::OtherKind
        );
        assert_eq!(
            resolve(&cache, Some("shop"), "Pod", Some("v1"), "lonely"),
            top(Kind::Pod, "lonely", 0)
        );
    }

    #[test]
    fn meta_keeps_the_controller_of_a_cached_kind_and_the_managed_label() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
        let reference = |kind: &str, api_version: &str, name: &str, controller| OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: "u".into(),
            controller,
            ..OwnerReference::default()
        };
        let meta = ObjectMeta {
            owner_references: Some(vec![
                reference("ReplicaSet", "apps/v1", "not-the-controller", None),
                reference("ReplicaSet", "apps/v1", "api-7d9f8", Some(true)),
            ]),
            labels: Some([(MANAGED_LABEL.to_owned(), "true".to_owned())].into()),
            ..ObjectMeta::default()
        };
        assert_eq!(
            Meta::of(&meta),
            Meta {
                controller: Some((Kind::ReplicaSet, "api-7d9f8".into())),
                managed: Some(true),
            }
        );
        // A static pod's Node, or a custom controller, ends the chain.
        let mirror = ObjectMeta {
            owner_references: Some(vec![reference("Node", "v1", "worker-1", Some(true))]),
            labels: Some([(MANAGED_LABEL.to_owned(), "yes".to_owned())].into()),
            ..ObjectMeta::default()
        };
        assert_eq!(
            Meta::of(&mirror),
            Meta {
                controller: None,
                managed: None
            }
        );
    }

    proptest! {
        /// Whichever pod of a workload alerted, and whichever ReplicaSet of its rollouts the
        /// pod belongs to, the fingerprint of the resolved target is the Deployment's.
        #[test]
        fn the_resolved_fingerprint_does_not_depend_on_the_pod(
            pods in prop::collection::vec(("[a-z0-9]{5}", 0usize..3), 1..12),
            cluster in proptest::option::of("[a-z]{1,8}"),
        ) {
            let mut cache = FakeLookup::default();
            cache.add(Kind::Deployment, "shop", "api", None);
            let mut expected = None;
            for (suffix, rollout) in &pods {
                let rs = format!("api-{rollout}");
                cache.add(Kind::ReplicaSet, "shop", &rs, Some((Kind::Deployment, "api")));
                let pod = format!("{rs}-{suffix}");
                cache.add(Kind::Pod, "shop", &pod, Some((Kind::ReplicaSet, &rs)));
            }
            for (suffix, rollout) in &pods {
                let pod = format!("api-{rollout}-{suffix}");
                let Resolution::Resolved(top) = resolve(&cache, Some("shop"), "Pod", None, &pod)
                else {
                    panic!("{pod} not resolved");
                };
                let fp = crate::fingerprint::Fingerprint::of(
                    cluster.as_deref(), "shop", top.kind.name(), &top.name,
                );
                prop_assert_eq!(*expected.get_or_insert(fp), fp);
                prop_assert_eq!(
                    fp,
                    crate::fingerprint::Fingerprint::of(cluster.as_deref(), "shop", "Deployment", "api")
                );
            }
        }
    }
}
