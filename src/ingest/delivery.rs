//! What makes one delivery of a signal distinct from another: the [`Delivery`] digest.
//!
//! Senders deliver the same notification more than once on purpose: Alertmanager in HA mode
//! sends it from every replica (it prefers a duplicate to a miss), and every sender resends a
//! body answered 5xx. Such a repeat is not a new occurrence (DESIGN.md §5, invariant 2), while
//! a genuinely new delivery of the same alert is: Alertmanager's next notification after
//! `repeat_interval` (a later `endsAt`), a resolved alert, an Event whose `count` moved on.
//! The digest covers what tells those apart, and leaves out what differs between the copies of
//! one notification that HA replicas send (`receiver`, `groupKey`, `externalURL`, the common
//! labels as such: only the merged labels count) or what Prometheus re-renders on every
//! evaluation (annotations).
//!
//! The adapters compute it; `crate::dedup::redelivery` keys its window on it. It is a
//! truncated SHA-256: 16 bytes, so a window of 100 000 deliveries holds 1.6 MB of keys, and a
//! collision between two distinct deliveries of one window (about 2^-100) is not a concern.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::fingerprint::Fingerprint;
use crate::k8s::types::SignalSource;

/// The digest of one delivery of a signal: equal for a verbatim resend, different for a new
/// occurrence (see the module docs for the fields).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Delivery([u8; 16]);

impl Delivery {
    /// Starts the digest of a delivery from `source` about `fingerprint` (the target as the
    /// source named it, before owner resolution: the same delivery always names the same).
    pub fn digest(source: SignalSource, fingerprint: &Fingerprint) -> Digest {
        let mut hasher = Sha256::new();
        // A source tag keeps an alert and an Event from ever sharing a digest.
        hasher.update(match source {
            SignalSource::Prometheus => b"prometheus\0",
            SignalSource::KubernetesEvents => b"k8s-event\0\0",
        });
        hasher.update(fingerprint.as_str().as_bytes());
        Digest(hasher)
    }

    /// The 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Delivery({})", hex::encode(self.0))
    }
}

/// A [`Delivery`] being computed. Every part is written with its name and its length, and an
/// absent value differs from an empty one, so no two different sets of fields feed the hash
/// the same bytes.
pub struct Digest(Sha256);

impl Digest {
    /// Adds a text field (`None`: absent).
    pub fn text(mut self, name: &str, value: Option<&str>) -> Self {
        self.name(name);
        self.value(value.map(str::as_bytes));
        self
    }

    /// Adds an integer field (`None`: absent).
    pub fn number(mut self, name: &str, value: Option<i64>) -> Self {
        self.name(name);
        self.value(value.map(i64::to_le_bytes).as_ref().map(|b| &b[..]));
        self
    }

    /// Adds a point in time, to the nanosecond, so that two spellings of one instant agree.
    pub fn time(mut self, name: &str, value: Option<Timestamp>) -> Self {
        self.name(name);
        let nanos = value.map(|t| t.as_nanosecond().to_le_bytes());
        self.value(nanos.as_ref().map(|b| &b[..]));
        self
    }

    /// Adds a label set. A `BTreeMap` iterates in key order, so the order the sender wrote
    /// the labels in cannot change the digest.
    pub fn labels(mut self, name: &str, labels: &BTreeMap<String, String>) -> Self {
        self.name(name);
        self.0.update((labels.len() as u64).to_le_bytes());
        for (key, value) in labels {
            self.value(Some(key.as_bytes()));
            self.value(Some(value.as_bytes()));
        }
        self
    }

    /// The digest.
    pub fn finish(self) -> Delivery {
        let full = self.0.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        Delivery(out)
    }

    fn name(&mut self, name: &str) {
        self.value(Some(name.as_bytes()));
    }

    fn value(&mut self, value: Option<&[u8]>) {
        match value {
            None => self.0.update([0u8]),
            Some(bytes) => {
                self.0.update([1u8]);
                self.0.update((bytes.len() as u64).to_le_bytes());
                self.0.update(bytes);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fp() -> Fingerprint {
        Fingerprint::of(None, "shop", "Pod", "api-1")
    }

    #[test]
    fn absent_and_empty_differ_and_fields_do_not_run_together() {
        let base = || Delivery::digest(SignalSource::Prometheus, &fp());
        assert_ne!(
            base().text("a", None).finish(),
            base().text("a", Some("")).finish()
        );
        assert_ne!(
            base().text("a", Some("bc")).text("d", None).finish(),
            base().text("a", Some("b")).text("cd", None).finish()
        );
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_ne!(
            base().labels("l", &labels(&[("ab", "c")])).finish(),
            base().labels("l", &labels(&[("a", "bc")])).finish()
        );
    }

    #[test]
    fn the_source_and_the_fingerprint_are_part_of_it() {
        let other = Fingerprint::of(None, "shop", "Pod", "api-2");
        let alert = Delivery::digest(SignalSource::Prometheus, &fp()).finish();
        assert_eq!(
            alert,
            Delivery::digest(SignalSource::Prometheus, &fp()).finish()
        );
        assert_ne!(
            alert,
            Delivery::digest(SignalSource::KubernetesEvents, &fp()).finish()
        );
        assert_ne!(
            alert,
            Delivery::digest(SignalSource::Prometheus, &other).finish()
        );
    }

    #[test]
    fn it_round_trips_through_serde() {
        let delivery = Delivery::digest(SignalSource::Prometheus, &fp()).finish();
        let text = serde_json::to_string(&delivery).unwrap();
        assert_eq!(serde_json::from_str::<Delivery>(&text).unwrap(), delivery);
    }
}
