//! Who owns a fingerprint: rendezvous (highest-random-weight) hashing over the live members.
//!
//! Every replica that sees the same members picks the same owner for a fingerprint, with no
//! coordination; when a member joins or leaves, only the fingerprints it owns (or comes to own)
//! move. The hash is spelled out here (FNV-1a over the member's address, a SplitMix64 finaliser
//! over that and the fingerprint) rather than taken from `std`, whose hasher may change between
//! Rust releases: two builds of the gateway during a rolling upgrade still agree.

use std::sync::Arc;

use crate::fingerprint::Fingerprint;

/// One member of the ring: the address its peer listener is reached at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// `host:port` of the member's peer listener, as its Lease holds it; shared, so handing
    /// out the owner of a signal costs no allocation.
    pub addr: Arc<str>,
    /// FNV-1a of `addr`, computed once.
    key: u64,
}

impl Member {
    /// The member reached at `addr`.
    pub fn new(addr: impl Into<Arc<str>>) -> Self {
        let addr = addr.into();
        let key = fnv1a(addr.as_bytes());
        Member { addr, key }
    }
}

/// The live members, in a fixed order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    members: Vec<Member>,
}

impl Ring {
    /// A ring of `members` (duplicates removed).
    pub fn new(mut members: Vec<Member>) -> Self {
        members.sort_by(|a, b| a.addr.cmp(&b.addr));
        members.dedup_by(|a, b| a.addr == b.addr);
        Ring { members }
    }

    /// The members, sorted by address.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The member that owns `fingerprint`: the one with the highest weight; `None` for an empty
    /// ring.
    pub fn owner(&self, fingerprint: &Fingerprint) -> Option<&Member> {
        let bytes = fingerprint.to_bytes();
        let mut point = [0u8; 8];
        point.copy_from_slice(&bytes[..8]);
        let point = u64::from_le_bytes(point);
        // Ties (astronomically unlikely) go to the member first in address order.
        self.members
            .iter()
            .rev()
            .max_by_key(|member| splitmix64(member.key ^ point))
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn fingerprints(n: usize) -> Vec<Fingerprint> {
        (0..n)
            .map(|i| Fingerprint::of(None, "shop", "Pod", &format!("api-{i}")))
            .collect()
    }

    fn ring(addrs: &[&str]) -> Ring {
        Ring::new(addrs.iter().map(|a| Member::new(*a)).collect())
    }

    #[test]
    fn every_replica_picks_the_same_owner_whatever_order_it_learnt_the_members_in() {
        let a = ring(&["10.0.0.1:8082", "10.0.0.2:8082", "10.0.0.3:8082"]);
        let b = ring(&[
            "10.0.0.3:8082",
            "10.0.0.1:8082",
            "10.0.0.2:8082",
            "10.0.0.1:8082",
        ]);
        assert_eq!(b.len(), 3);
        for fp in fingerprints(200) {
            assert_eq!(a.owner(&fp), b.owner(&fp));
        }
    }

    #[test]
    fn ownership_spreads_and_only_the_leavers_share_moves() {
        let three = ring(&["10.0.0.1:8082", "10.0.0.2:8082", "10.0.0.3:8082"]);
        let two = ring(&["10.0.0.1:8082", "10.0.0.2:8082"]);
        let fps = fingerprints(3000);
        let mut per_member = std::collections::BTreeMap::<&str, usize>::new();
        for fp in &fps {
            let owner = three.owner(fp).map(|m| &*m.addr).unwrap_or_default();
            *per_member.entry(owner).or_default() += 1;
            if owner != "10.0.0.3:8082" {
                assert_eq!(
                    two.owner(fp).map(|m| &*m.addr),
                    Some(owner),
                    "a fingerprint of a member that stayed must not move"
                );
            }
        }
        assert_eq!(per_member.len(), 3);
        for (member, owned) in per_member {
            assert!(
                (800..1200).contains(&owned),
                "{member} owns {owned} of 3000"
            );
        }
    }

    #[test]
    fn an_empty_ring_has_no_owner_and_a_single_member_owns_everything() {
        assert_eq!(Ring::default().owner(&fingerprints(1)[0]), None);
        let one = ring(&["127.0.0.1:8082"]);
        assert!(fingerprints(50).iter().all(|fp| one.owner(fp).is_some()));
    }

    #[test]
    fn the_hash_is_stable_across_builds() {
        // Fixed values: a change here would split a rolling upgrade's replicas.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
    }
}
