//! The scope rule (`scope.managed_only`): a signal is accepted only if its target carries
//! [`MANAGED_LABEL`](super::MANAGED_LABEL)`=true`, or, when the target carries neither `true`
//! nor `false`, its namespace does. `false` on the target opts it out whatever its namespace
//! says. The target is the resolved one (the workload), else the labelled object.

use super::{Fallback, Kind, Lookup, MANAGED_LABEL};

/// Why a signal is out of scope; the `reason` label of `gateway_signals_out_of_scope_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutOfScope {
    /// Neither the target nor its namespace carries `kubernaut.ai/managed=true` (or the
    /// namespace does not exist).
    Unmanaged = 0,
    /// The target or, with nothing on the target, its namespace carries
    /// `kubernaut.ai/managed=false`.
    OptedOut = 1,
}

impl OutOfScope {
    /// Every reason, in discriminant order.
    pub const ALL: [OutOfScope; 2] = [OutOfScope::Unmanaged, OutOfScope::OptedOut];

    /// The metric label value.
    pub fn label(self) -> &'static str {
        ["unmanaged", "opted_out"][self as usize]
    }

    /// The sentence of the 200 body.
    pub fn explain(self, target: &str, namespace: Option<&str>) -> String {
        let namespace = namespace.map_or(String::new(), |ns| format!(" or namespace {ns}"));
        match self {
            OutOfScope::Unmanaged => format!(
                "{target} is not managed: label {MANAGED_LABEL}=true is on neither it{namespace}"
            ),
            OutOfScope::OptedOut => format!("{target} is opted out by {MANAGED_LABEL}=false"),
        }
    }
}

/// What the rule says of one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// In scope.
    Accept,
    /// Out of scope.
    Reject(OutOfScope),
    /// The cache cannot tell (the namespace's metadata is not readable or not listed yet):
    /// accepted, since a signal is never dropped for the cache's sake.
    Undecided(Fallback),
}

/// Decides for a target whose own label is `target` (`None`: absent, or unknown because the
/// target is not in the cache) in `namespace` (`None`: cluster-scoped).
pub fn decide(lookup: &impl Lookup, target: Option<bool>, namespace: Option<&str>) -> Decision {
    match target {
        Some(true) => return Decision::Accept,
        Some(false) => return Decision::Reject(OutOfScope::OptedOut),
        None => {}
    }
    // Cluster-scoped targets (Nodes...) are not in the cache and have no namespace: the rule
    // cannot reach them, and they are accepted.
    let Some(namespace) = namespace else {
        return Decision::Accept;
    };
    match lookup.get(Kind::Namespace, namespace, namespace) {
        Ok(Some(meta)) => match meta.managed {
            Some(true) => Decision::Accept,
            Some(false) => Decision::Reject(OutOfScope::OptedOut),
            None => Decision::Reject(OutOfScope::Unmanaged),
        },
        Ok(None) => Decision::Reject(OutOfScope::Unmanaged),
        Err(fallback) => Decision::Undecided(fallback),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Meta;
    use super::super::fake::FakeLookup;
    use super::*;

    fn namespaces() -> FakeLookup {
        let mut cache = FakeLookup::default();
        for (name, managed) in [("on", Some(true)), ("off", Some(false)), ("plain", None)] {
            cache.objects.insert(
                (Kind::Namespace, name.into(), name.into()),
                Meta {
                    controller: None,
                    managed,
                },
            );
        }
        cache
            .unavailable
            .insert("locked".into(), Fallback::Forbidden);
        cache
    }

    #[test]
    fn the_target_decides_first_then_its_namespace() {
        let cache = namespaces();
        use Decision::*;
        use OutOfScope::*;
        let cases = [
            (Some(true), Some("off"), Accept),
            (Some(false), Some("on"), Reject(OptedOut)),
            (None, Some("on"), Accept),
            (None, Some("off"), Reject(OptedOut)),
            (None, Some("plain"), Reject(Unmanaged)),
            (None, Some("absent"), Reject(Unmanaged)),
            (None, Some("locked"), Undecided(Fallback::Forbidden)),
            (None, None, Accept),
            (Some(false), None, Reject(OptedOut)),
        ];
        for (target, namespace, expected) in cases {
            assert_eq!(
                decide(&cache, target, namespace),
                expected,
                "{target:?} {namespace:?}"
            );
        }
    }
}
