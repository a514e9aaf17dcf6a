//! The signal fingerprint: lowercase hex SHA-256 of `"<namespace>:<Kind>:<name>"`, prefixed
//! with `"<cluster>:"` when the alert carries a `cluster` label (DESIGN.md §3).
//!
//! The signal name is deliberately not part of it: different alerts about the same workload
//! belong to one remediation.

use sha2::{Digest, Sha256};

/// A 64-character lowercase hex fingerprint. Stored inline so cloning it costs no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 64]);

impl Fingerprint {
    /// The fingerprint of a target resource. `namespace` is empty for cluster-scoped kinds;
    /// `cluster` is the `cluster` label, `None` (or empty) when there is none.
    pub fn of(cluster: Option<&str>, namespace: &str, kind: &str, name: &str) -> Self {
        // Feeding the parts one by one hashes exactly the joined string without building it.
        let mut hasher = Sha256::new();
        if let Some(cluster) = cluster.filter(|c| !c.is_empty()) {
            hasher.update(cluster.as_bytes());
            hasher.update(b":");
        }
        hasher.update(namespace.as_bytes());
        hasher.update(b":");
        hasher.update(kind.as_bytes());
        hasher.update(b":");
        hasher.update(name.as_bytes());
        let digest = hasher.finalize();

        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (pair, byte) in out.chunks_exact_mut(2).zip(digest.iter()) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0x0f)];
        }
        Fingerprint(out)
    }

    /// Parses a 64-character lowercase hex string.
    pub fn parse(s: &str) -> Option<Self> {
        let bytes: [u8; 64] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .then_some(Fingerprint(bytes))
    }

    /// The 32 bytes the hex text encodes (the compact form the index keys on).
    pub fn to_bytes(&self) -> [u8; 32] {
        let nibble = |c: u8| {
            if c.is_ascii_digit() {
                c - b'0'
            } else {
                c - b'a' + 10
            }
        };
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(self.0.chunks_exact(2)) {
            *byte = (nibble(pair[0]) << 4) | nibble(pair[1]);
        }
        out
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Fingerprint::parse(&text)
            .ok_or_else(|| serde::de::Error::custom("a fingerprint is 64 lowercase hex digits"))
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Known vectors, computed independently with `printf %s '<input>' | sha256sum`.
    const PROD_DEPLOYMENT_API: &str =
        "ef1b76d88f42344978562a9fa0edb7e5d356a16d2d11396312e91a137d393384";
    const NODE_WORKER_1: &str = "5811a14c33e6ea55be7f43355c2cffd48201fcbf3fc51c48a3f58e375e6f7ccc";
    const CLUSTER_PROD_DEPLOYMENT_API: &str =
        "9e7df01e5012ade1ba3d2719ad6fda487308af9f5621c3b26b0e569d5340f9f6";

    #[test]
    fn known_vector_namespaced() {
        assert_eq!(
            Fingerprint::of(None, "prod", "Deployment", "api").as_str(),
            PROD_DEPLOYMENT_API
        );
    }

    #[test]
    fn cluster_scoped_kind_hashes_an_empty_namespace() {
        assert_eq!(
            Fingerprint::of(None, "", "Node", "worker-1").as_str(),
            NODE_WORKER_1
        );
    }

    #[test]
    fn cluster_prefix_is_hashed_in_front() {
        assert_eq!(
            Fingerprint::of(Some("eu-1"), "prod", "Deployment", "api").as_str(),
            CLUSTER_PROD_DEPLOYMENT_API
        );
    }

    #[test]
    fn empty_cluster_is_no_cluster() {
        assert_eq!(
            Fingerprint::of(Some(""), "prod", "Deployment", "api"),
            Fingerprint::of(None, "prod", "Deployment", "api")
        );
    }

    #[test]
    fn bytes_are_the_digest() {
        let fp = Fingerprint::of(None, "ns", "Pod", "a");
        assert_eq!(hex::encode(fp.to_bytes()), fp.as_str());
    }

    #[test]
    fn output_round_trips_through_parse() {
        let fp = Fingerprint::of(None, "prod", "Deployment", "api");
        assert_eq!(Fingerprint::parse(fp.as_str()), Some(fp));
        assert_eq!(fp.to_string(), fp.as_str());
        assert_eq!(format!("{fp:?}"), fp.as_str());
    }

    #[test]
    fn parse_rejects_non_hex_and_wrong_length() {
        assert!(Fingerprint::parse(&"A".repeat(64)).is_none());
        assert!(Fingerprint::parse(&"a".repeat(63)).is_none());
        assert!(Fingerprint::parse(&"a".repeat(65)).is_none());
        assert!(Fingerprint::parse(&"g".repeat(64)).is_none());
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9.-]{0,40}"
    }

    proptest! {
        #[test]
        fn matches_hash_of_the_joined_string(
            cluster in proptest::option::of(name()),
            ns in name(),
            kind in "[A-Z][A-Za-z]{0,20}",
            n in name(),
        ) {
            let joined = match &cluster {
                Some(c) => format!("{c}:{ns}:{kind}:{n}"),
                None => format!("{ns}:{kind}:{n}"),
            };
            let expected = hex::encode(Sha256::digest(joined.as_bytes()));
            let fp = Fingerprint::of(cluster.as_deref(), &ns, &kind, &n);
            prop_assert_eq!(fp.as_str(), expected.as_str());
        }

        #[test]
        fn cluster_prefix_changes_it(c in name(), ns in name(), n in name()) {
            prop_assert_ne!(
                Fingerprint::of(Some(&c), &ns, "Pod", &n),
                Fingerprint::of(None, &ns, "Pod", &n)
            );
        }

        #[test]
        fn always_lowercase_hex(ns in ".*", kind in ".*", n in ".*") {
            let fp = Fingerprint::of(None, &ns, &kind, &n);
            prop_assert!(Fingerprint::parse(fp.as_str()).is_some());
        }
    }
}
