//! What a target resource reference must look like before it is fingerprinted: the Kubernetes
//! name rules for its namespace, name and kind, and which built-in kinds have no namespace.
//!
//! A value that breaks these rules cannot name anything in a cluster, so a signal carrying one
//! is rejected (400) rather than turned into an RR no remediation could act on. The rules also
//! keep the fingerprint's input, `[<cluster>:]<namespace>:<Kind>:<name>`, unambiguous: none of
//! the three validated parts can contain a `:`, so whatever the cluster label holds, two
//! different targets never hash the same string.
//!
//! Each check names the field the value came from (`labels.namespace`,
//! `involvedObject.name`...), so the 400's detail says which one to fix.

use crate::ingest::{RESOURCE_KIND_MAX_CHARS, RESOURCE_NAME_MAX_CHARS, Rejection};

/// Longest namespace: an RFC 1123 DNS label.
pub const NAMESPACE_MAX_CHARS: usize = 63;

/// Kinds that are not namespaced: their target resource has no namespace and their fingerprint
/// hashes an empty one (DESIGN.md §3), whatever namespace label or Event namespace comes with
/// them (Node events live in `default`). Built-in kinds only; a cluster-scoped custom resource
/// is taken with the namespace the signal gives, as neither wire format says which kinds are
/// namespaced.
pub const CLUSTER_SCOPED_KINDS: [&str; 17] = [
    "APIService",
    "CertificateSigningRequest",
    "ClusterRole",
    "ClusterRoleBinding",
    "CSIDriver",
    "CSINode",
    "CustomResourceDefinition",
    "IngressClass",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PriorityClass",
    "RuntimeClass",
    "StorageClass",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
];

/// Whether `kind` is one of the [`CLUSTER_SCOPED_KINDS`].
pub fn is_cluster_scoped(kind: &str) -> bool {
    CLUSTER_SCOPED_KINDS.contains(&kind)
}

/// A namespace must be an RFC 1123 DNS label: 1..=63 lowercase letters, digits and `-`,
/// starting and ending with a letter or digit.
pub fn check_namespace(value: &str, field: &'static str) -> Result<(), Rejection> {
    if !is_dns_label(value) {
        return Err(invalid(
            field,
            "not an RFC 1123 label (lowercase letters, digits and '-', starting and ending \
             with a letter or digit)",
        ));
    }
    if value.len() > NAMESPACE_MAX_CHARS {
        return Err(invalid(field, "longer than 63 characters"));
    }
    Ok(())
}

/// An object name must be an RFC 1123 DNS subdomain: 1..=253 characters, dot-separated parts
/// that are each lowercase letters, digits and `-`, starting and ending with a letter or digit.
pub fn check_name(value: &str, field: &'static str) -> Result<(), Rejection> {
    if !value.split('.').all(is_dns_label) {
        return Err(invalid(
            field,
            "not an RFC 1123 subdomain (lowercase letters, digits, '-' and '.', each \
             dot-separated part starting and ending with a letter or digit)",
        ));
    }
    if value.len() > RESOURCE_NAME_MAX_CHARS {
        return Err(invalid(field, "longer than 253 characters"));
    }
    Ok(())
}

/// A kind must look like a Kubernetes Kind: 1..=63 ASCII letters and digits, starting with a
/// letter. Its case is kept as given: `Deployment` and `deployment` are different kinds to the
/// fingerprint, as they are to the API server.
pub fn check_kind(value: &str, field: &'static str) -> Result<(), Rejection> {
    let mut bytes = value.bytes();
    let well_formed = bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric());
    if !well_formed {
        return Err(invalid(
            field,
            "not a Kubernetes kind (ASCII letters and digits, starting with a letter)",
        ));
    }
    if value.len() > RESOURCE_KIND_MAX_CHARS {
        return Err(invalid(field, "longer than 63 characters"));
    }
    Ok(())
}

/// A cluster identity (the `cluster` label, `spec.clusterID`) must be a Kubernetes label value:
/// 1..=63 ASCII letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.
/// That admits the usual names (`prod-eu-1`, a kubeconfig context like `gke_proj_zone_name`)
/// and keeps `:` out, so no cluster can make two fingerprints' texts equal.
pub fn check_cluster(value: &str, field: &'static str) -> Result<(), Rejection> {
    let bytes = value.as_bytes();
    let alnum = |b: &u8| b.is_ascii_alphanumeric();
    let well_formed = match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            alnum(first)
                && alnum(last)
                && bytes
                    .iter()
                    .all(|b| alnum(b) || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    };
    if !well_formed {
        return Err(invalid(
            field,
            "not a Kubernetes label value (letters, digits, '-', '_' and '.', starting and \
             ending with a letter or digit)",
        ));
    }
    if value.len() > CLUSTER_MAX_CHARS {
        return Err(invalid(field, "longer than 63 characters"));
    }
    Ok(())
}

/// Longest cluster identity (a label value).
pub const CLUSTER_MAX_CHARS: usize = 63;

/// The shape of an RFC 1123 label, without its length limit (a subdomain's parts have none of
/// their own in Kubernetes' rule; only the whole name is bounded).
fn is_dns_label(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-')
        }
        _ => false,
    }
}

fn invalid(field: &'static str, reason: &'static str) -> Rejection {
    Rejection::InvalidField { field, reason }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reason(r: Result<(), Rejection>) -> &'static str {
        match r {
            Err(Rejection::InvalidField { field: "f", reason }) => reason,
            other => panic!("expected an invalid `f`, got {other:?}"),
        }
    }

    #[test]
    fn namespaces() {
        for ok in [
            "default",
            "a",
            "kube-system",
            "0",
            "team-42",
            &"n".repeat(63),
        ] {
            assert_eq!(check_namespace(ok, "f"), Ok(()), "{ok:?}");
        }
        for bad in [
            "",
            "Prod",
            "-prod",
            "prod-",
            "pr_od",
            "pr.od",
            "pr od",
            "a:b",
            "caf\u{e9}",
        ] {
            assert!(reason(check_namespace(bad, "f")).contains("RFC 1123 label"));
        }
        assert_eq!(
            reason(check_namespace(&"n".repeat(64), "f")),
            "longer than 63 characters"
        );
    }

    #[test]
    fn object_names() {
        for ok in [
            "api-7d9f8b6c5-x2x4z",
            "worker-3.example.internal",
            "0",
            "a.b.c",
            &"n".repeat(253),
            // A subdomain's parts are not bounded by 63 in Kubernetes' rule.
            &format!("{}.x", "p".repeat(100)),
        ] {
            assert_eq!(check_name(ok, "f"), Ok(()), "{ok:?}");
        }
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            "a.-b",
            "a-.b",
            "Api",
            "p\\1",
            "system:node",
            "a/b",
            "a_b",
            "\u{0}",
        ] {
            assert!(
                reason(check_name(bad, "f")).contains("RFC 1123 subdomain"),
                "{bad:?}"
            );
        }
        assert_eq!(
            reason(check_name(&"n".repeat(254), "f")),
            "longer than 253 characters"
        );
    }

    #[test]
    fn kinds() {
        for ok in [
            "Pod",
            "Deployment",
            "HorizontalPodAutoscaler",
            "V1",
            "x",
            &"K".repeat(63),
        ] {
            assert_eq!(check_kind(ok, "f"), Ok(()), "{ok:?}");
        }
        for bad in [
            "",
            "1Pod",
            "-Pod",
            "Pod-x",
            "apps/Deployment",
            "Po d",
            "P\u{f6}d",
        ] {
            assert!(
                reason(check_kind(bad, "f")).contains("Kubernetes kind"),
                "{bad:?}"
            );
        }
        assert_eq!(
            reason(check_kind(&"K".repeat(64), "f")),
            "longer than 63 characters"
        );
    }

    #[test]
    fn the_rejection_names_the_field() {
        assert_eq!(
            check_namespace("Prod", "labels.exported_namespace")
                .unwrap_err()
                .to_string(),
            "invalid labels.exported_namespace: not an RFC 1123 label (lowercase letters, \
             digits and '-', starting and ending with a letter or digit)"
        );
    }

    #[test]
    fn cluster_scoped_kinds() {
        assert!(is_cluster_scoped("Node"));
        assert!(is_cluster_scoped("PersistentVolume"));
        assert!(!is_cluster_scoped("Pod"));
        // Case matters, as it does to the API server.
        assert!(!is_cluster_scoped("node"));
    }

    proptest! {
        /// Whatever the string, the checks return, and what they accept keeps to the rule's
        /// alphabet and length (checked here by a second, independent reading of the rule).
        #[test]
        fn never_panic_and_accept_only_the_alphabet(value in any::<String>()) {
            let label_chars = |s: &str| s.bytes().all(|b| b.is_ascii_lowercase()
                || b.is_ascii_digit() || b == b'-');
            if check_namespace(&value, "f").is_ok() {
                prop_assert!((1..=63).contains(&value.len()) && label_chars(&value));
                prop_assert!(!value.starts_with('-') && !value.ends_with('-'));
            }
            if check_name(&value, "f").is_ok() {
                prop_assert!((1..=253).contains(&value.len()));
                prop_assert!(value.split('.').all(|p| !p.is_empty() && label_chars(p)));
            }
            if check_kind(&value, "f").is_ok() {
                prop_assert!((1..=63).contains(&value.len()));
                prop_assert!(value.bytes().all(|b| b.is_ascii_alphanumeric()));
            }
        }

        /// Near-misses of valid names (the right alphabet plus a few wrong characters) are
        /// where a hand-written check goes wrong; arbitrary strings rarely land there.
        #[test]
        fn near_misses_never_panic(value in "[a-zA-Z0-9.:_/ -]{0,300}") {
            let _ = check_namespace(&value, "f");
            let _ = check_name(&value, "f");
            let _ = check_kind(&value, "f");
        }

        /// Everything the rules allow is accepted.
        #[test]
        fn valid_values_are_accepted(
            namespace in "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?",
            name in "[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?){0,8}",
            kind in "[A-Za-z][A-Za-z0-9]{0,62}",
        ) {
            prop_assert_eq!(check_namespace(&namespace, "f"), Ok(()));
            prop_assert_eq!(check_name(&name, "f"), Ok(()));
            prop_assert_eq!(check_kind(&kind, "f"), Ok(()));
        }
    }
}
