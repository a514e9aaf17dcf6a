//! The owner stage of the request path: each valid signal's target is resolved to the top of
//! its controller chain (`owners.resolve`) and refingerprinted, then checked against the scope
//! rule (`scope.managed_only`). A fallback is counted by reason and logged once per reason; a
//! signal out of scope is counted and reported, never written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics::Counter;

use super::scope::{self, Decision, OutOfScope};
use super::{Fallback, Kind, Lookup, Resolution, resolve};
use crate::fingerprint::Fingerprint;
use crate::ingest::Signal;
use crate::k8s::types::ResourceRef;
use crate::telemetry::names;

/// What the stage does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Resolve targets to their top controller (`owners.resolve`).
    pub resolve: bool,
    /// Accept only managed targets (`scope.managed_only`).
    pub managed_only: bool,
}

/// What became of a signal in the stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on to deduplication (the signal may have been rewritten).
    Accept,
    /// Out of scope: answered 200 and not written.
    OutOfScope {
        /// Why.
        reason: OutOfScope,
        /// The sentence for the sender.
        message: String,
    },
}

/// The stage over a metadata cache `L`.
pub struct Stage<L> {
    lookup: Arc<L>,
    settings: Settings,
    /// `gateway_owner_resolutions_total{result}`: controller, unowned, other_kind.
    resolutions: [Counter; 3],
    /// `gateway_owner_fallbacks_total{reason}`, by [`Fallback`].
    fallbacks: [Counter; 5],
    /// `gateway_signals_out_of_scope_total{reason}`, by [`OutOfScope`].
    out_of_scope: [Counter; 2],
    /// Whether each fallback reason was logged already.
    fallback_logged: [AtomicBool; 5],
    /// Whether each reason the scope could not be decided for was logged already.
    undecided_logged: [AtomicBool; 5],
}

const RESOLUTIONS: [&str; 3] = ["controller", "unowned", "other_kind"];

impl<L: Lookup> Stage<L> {
    /// A stage reading `lookup`. Registers its series (at 0) so the first fallback shows.
    pub fn new(lookup: Arc<L>, settings: Settings) -> Self {
        crate::telemetry::prometheus();
        Stage {
            lookup,
            settings,
            resolutions: RESOLUTIONS
                .map(|result| metrics::counter!(names::OWNER_RESOLUTIONS, "result" => result)),
            fallbacks: Fallback::ALL.map(
                |reason| metrics::counter!(names::OWNER_FALLBACKS, "reason" => reason.label()),
            ),
            out_of_scope: OutOfScope::ALL.map(
                |reason| metrics::counter!(names::SIGNALS_OUT_OF_SCOPE, "reason" => reason.label()),
            ),
            fallback_logged: Default::default(),
            undecided_logged: Default::default(),
        }
    }

    /// Resolves and checks one signal, rewriting its target and fingerprint when its owner
    /// chain was resolved.
    pub fn apply(&self, signal: &mut Signal) -> Verdict {
        let namespace = signal.resource.namespace.clone();
        let managed = if self.settings.resolve {
            self.resolve(signal)
        } else if self.settings.managed_only {
            self.own_label(&signal.resource)
        } else {
            None
        };
        if !self.settings.managed_only {
            return Verdict::Accept;
        }
        match scope::decide(&*self.lookup, managed, namespace.as_deref()) {
            Decision::Accept => Verdict::Accept,
            Decision::Reject(reason) => {
                self.out_of_scope[reason as usize].increment(1);
                let target = describe(&signal.resource);
                tracing::debug!(
                    reason = reason.label(),
                    object = target,
                    "signal out of scope"
                );
                Verdict::OutOfScope {
                    reason,
                    message: reason.explain(&target, namespace.as_deref()),
                }
            }
            Decision::Undecided(fallback) => {
                if !self.undecided_logged[fallback as usize].swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        reason = fallback.label(),
                        namespace = namespace.as_deref().unwrap_or(""),
                        "scope cannot be decided without the namespace's metadata; accepting such signals (logged once per reason)"
                    );
                }
                Verdict::Accept
            }
        }
    }

    /// Resolves the signal's target; returns the managed label of the target it ends with,
    /// when known.
    fn resolve(&self, signal: &mut Signal) -> Option<bool> {
        let target = &signal.resource;
        let resolution = resolve(
            &*self.lookup,
            target.namespace.as_deref(),
            &target.kind,
            target.api_version.as_deref(),
            &target.name,
        );
        match resolution {
            Resolution::OtherKind => {
                self.resolutions[2].increment(1);
                None
            }
            Resolution::Resolved(top) if top.depth == 0 => {
                self.resolutions[1].increment(1);
                top.managed
            }
            Resolution::Resolved(top) => {
                self.resolutions[0].increment(1);
                let namespace = target.namespace.clone();
                let resolved = ResourceRef {
                    kind: top.kind.name().to_owned(),
                    name: top.name,
                    namespace,
                    api_version: Some(top.kind.api_version().to_owned()),
                };
                signal.fingerprint = Fingerprint::of(
                    signal.cluster.as_deref(),
                    resolved.namespace.as_deref().unwrap_or(""),
                    &resolved.kind,
                    &resolved.name,
                );
                signal.labelled = Some(std::mem::replace(&mut signal.resource, resolved));
                top.managed
            }
            Resolution::Fallback(reason) => {
                self.fallbacks[reason as usize].increment(1);
                if !self.fallback_logged[reason as usize].swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        reason = reason.label(),
                        object = describe(target),
                        "owner resolution fell back to the labelled resource (logged once per reason; counted in gateway_owner_fallbacks_total)"
                    );
                }
                None
            }
        }
    }

    /// The target's own managed label, read without resolving.
    fn own_label(&self, target: &ResourceRef) -> Option<bool> {
        let kind = Kind::workload(&target.kind, target.api_version.as_deref())?;
        let namespace = target.namespace.as_deref()?;
        self.lookup
            .get(kind, namespace, &target.name)
            .ok()
            .flatten()?
            .managed
    }
}

/// `<Kind> <namespace>/<name>`, or `<Kind> <name>` when cluster-scoped.
fn describe(target: &ResourceRef) -> String {
    match &target.namespace {
        Some(ns) => format!("{} {ns}/{}", target.kind, target.name),
        None => format!("{} {}", target.kind, target.name),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::Meta;
    use super::super::fake::FakeLookup;
    use super::*;
    use crate::ingest::adapters::alertmanager;
    use proptest::prelude::*;

    fn alert(labels: &str) -> Signal {
        let body = format!(
            r#"{{"version":"4","status":"firing","alerts":[{{"status":"firing","labels":{{"alertname":"A",{labels}}},"startsAt":"2026-03-01T11:59:00Z"}}]}}"#
        );
        let now = "2026-03-01T12:00:00Z".parse().unwrap();
        alertmanager::parse(&mut body.into_bytes(), None, now)
            .unwrap()
            .remove(0)
            .unwrap()
    }

    fn workload(pods: &[&str]) -> FakeLookup {
        let mut cache = FakeLookup::default();
        cache.add(Kind::Deployment, "shop", "api", None).add(
            Kind::ReplicaSet,
            "shop",
            "api-7d9f8",
            Some((Kind::Deployment, "api")),
        );
        for pod in pods {
            cache.add(
                Kind::Pod,
                "shop",
                pod,
                Some((Kind::ReplicaSet, "api-7d9f8")),
            );
        }
        cache
    }

    const RESOLVE: Settings = Settings {
        resolve: true,
        managed_only: false,
    };

    #[test]
    fn a_resolved_signal_names_the_controller_and_keeps_the_labelled_pod() {
        let stage = Stage::new(Arc::new(workload(&["api-7d9f8-a"])), RESOLVE);
        let mut signal = alert(r#""namespace":"shop","pod":"api-7d9f8-a""#);
        assert_eq!(stage.apply(&mut signal), Verdict::Accept);
        assert_eq!(
            signal.fingerprint,
            Fingerprint::of(None, "shop", "Deployment", "api")
        );
        assert_eq!(signal.resource.kind, "Deployment");
        assert_eq!(signal.resource.api_version.as_deref(), Some("apps/v1"));
        let labelled = signal.labelled.unwrap();
        assert_eq!(
            (labelled.kind.as_str(), labelled.name.as_str()),
            ("Pod", "api-7d9f8-a")
        );
    }

    #[test]
    fn a_fallback_keeps_the_signal_as_labelled() {
        let stage = Stage::new(Arc::new(workload(&[])), RESOLVE);
        let mut signal = alert(r#""namespace":"shop","pod":"gone""#);
        let before = signal.clone();
        assert_eq!(stage.apply(&mut signal), Verdict::Accept);
        assert_eq!(signal, before);
    }

    #[test]
    fn resolution_off_leaves_the_target_alone() {
        let settings = Settings {
            resolve: false,
            managed_only: false,
        };
        let stage = Stage::new(Arc::new(workload(&["api-7d9f8-a"])), settings);
        let mut signal = alert(r#""namespace":"shop","pod":"api-7d9f8-a""#);
        let before = signal.clone();
        assert_eq!(stage.apply(&mut signal), Verdict::Accept);
        assert_eq!(signal, before);
    }

    #[test]
    fn scope_reads_the_resolved_target_then_the_namespace() {
        let mut cache = workload(&["api-7d9f8-a"]);
        cache.objects.insert(
            (Kind::Namespace, "shop".into(), "shop".into()),
            Meta {
                controller: None,
                managed: None,
            },
        );
        let both = Settings {
            resolve: true,
            managed_only: true,
        };
        let pod = r#""namespace":"shop","pod":"api-7d9f8-a""#;
        let stage = Stage::new(Arc::new(cache), both);
        let verdict = stage.apply(&mut alert(pod));
        let Verdict::OutOfScope { reason, message } = verdict else {
            panic!("{verdict:?}");
        };
        assert_eq!(reason, OutOfScope::Unmanaged);
        assert!(message.contains("Deployment shop/api"), "{message}");

        // The Deployment opts in: its pods are in scope.
        let mut cache = workload(&["api-7d9f8-a"]);
        cache
            .objects
            .get_mut(&(Kind::Deployment, "shop".into(), "api".into()))
            .unwrap()
            .managed = Some(true);
        let stage = Stage::new(Arc::new(cache), both);
        assert_eq!(stage.apply(&mut alert(pod)), Verdict::Accept);
    }

    proptest! {
        /// Through the stage, whichever pod of the Deployment an alert names (and whatever
        /// else it carries), the signal's fingerprint is the Deployment's.
        #[test]
        fn the_fingerprint_does_not_depend_on_which_pod_alerted(
            pods in prop::collection::btree_set("api-7d9f8-[a-z0-9]{5}", 1..10),
            severity in "[a-z]{1,8}",
        ) {
            let pods: Vec<&str> = pods.iter().map(String::as_str).collect();
            let stage = Stage::new(Arc::new(workload(&pods)), RESOLVE);
            for pod in &pods {
                let mut signal = alert(&format!(
                    r#""namespace":"shop","pod":"{pod}","severity":"{severity}""#
                ));
                stage.apply(&mut signal);
                prop_assert_eq!(signal.fingerprint, Fingerprint::of(None, "shop", "Deployment", "api"));
                prop_assert_eq!(signal.labelled.map(|l| l.name), Some((*pod).to_owned()));
            }
        }
    }
}
