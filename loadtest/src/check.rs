//! The exact-count check (DESIGN.md §5, invariants 1 and 2), run after the load: for every
//! fingerprint this run sent, the RRs carrying it must add up to the signals accepted for it,
//! and the counts returned for each RR must be exactly `1..=occurrenceCount`, each once.
//!
//! The comparison is pure (`compare`); `fetch_rrs` lists the RRs through the Kubernetes API
//! and `converge` repeats both until they agree or a deadline passes, because a new RR's
//! `status.deduplication` is written just after its 201 (the create answers first).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde::Serialize;
use serde_json::Value;

use crate::recorder::FingerprintAccount;

/// The RR API resource.
pub fn rr_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubernaut.ai", "v1alpha1", "RemediationRequest"),
        "remediationrequests",
    )
}

/// What the check needs of one RR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RrState {
    /// `metadata.name`.
    pub name: String,
    /// `spec.signalFingerprint`.
    pub fingerprint: String,
    /// `status.deduplication.occurrenceCount`, when written. An RR whose status the gateway
    /// has not initialised (the background write after the create failed or is pending) has
    /// had exactly its first occurrence: it counts as 1.
    pub count: Option<u64>,
    /// `status.stormAggregation.isPartOfStorm`.
    pub storm: bool,
    /// The deduplication history says the RR is in a storm, but `status.stormAggregation`
    /// does not (yet) show the values that history implies.
    pub storm_behind: bool,
}

impl RrState {
    /// Reads an RR as returned by the API; `None` when it has no fingerprint.
    pub fn from_object(o: &DynamicObject) -> Option<Self> {
        let fingerprint = o
            .data
            .pointer("/spec/signalFingerprint")
            .and_then(Value::as_str)?
            .to_owned();
        Some(RrState {
            name: o.metadata.name.clone().unwrap_or_default(),
            fingerprint,
            count: o
                .data
                .pointer("/status/deduplication/occurrenceCount")
                .and_then(Value::as_u64),
            storm: o
                .data
                .pointer("/status/stormAggregation/isPartOfStorm")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            storm_behind: storm_behind(&o.data),
        })
    }
}

/// Whether an RR's storm block lags its deduplication history: once the history records the
/// crossing (`stormDetectedCount`), `aggregatedCount` must be `occurrenceCount -
/// stormDetectedCount + 1`.
fn storm_behind(data: &Value) -> bool {
    let count = data
        .pointer("/status/deduplication/occurrenceCount")
        .and_then(Value::as_i64);
    let detected = data
        .pointer("/status/deduplication/stormDetectedCount")
        .and_then(Value::as_i64);
    let aggregated = data
        .pointer("/status/stormAggregation/aggregatedCount")
        .and_then(Value::as_i64);
    match (count, detected) {
        (Some(count), Some(detected)) => aggregated != Some(count - detected + 1),
        _ => false,
    }
}

/// Storm-status staleness: from `since` (the end of the load) until no RR's storm block lags
/// its deduplication history, polled every 20 ms; `None` if that did not happen within
/// `deadline`.
pub async fn storm_staleness(
    client: &kube::Client,
    namespace: &str,
    since: tokio::time::Instant,
    deadline: Duration,
) -> anyhow::Result<Option<Duration>> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let rrs = fetch_rrs(client, namespace).await?;
        if !rrs.iter().any(|r| r.storm_behind) {
            return Ok(Some(since.elapsed()));
        }
        if tokio::time::Instant::now() >= until {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Result of the check.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct CountCheck {
    /// Fingerprints compared.
    pub fingerprints: u64,
    /// Fingerprints not compared because some of their signals failed.
    pub fingerprints_skipped: u64,
    /// RRs found for them.
    pub rrs: u64,
    /// Fingerprints with more than one RR (expected 0: nothing completes RRs during a run).
    pub fingerprints_with_several_rrs: u64,
    /// RRs marked as part of a storm.
    pub rrs_in_storm: u64,
    /// Fingerprints or RRs whose counts disagree.
    pub mismatches: u64,
    /// The first few disagreements, described.
    pub examples: Vec<String>,
}

impl CountCheck {
    fn mismatch(&mut self, what: String) {
        self.mismatches += 1;
        if self.examples.len() < 10 {
            self.examples.push(what);
        }
    }

    /// True when everything agreed.
    pub fn passed(&self) -> bool {
        self.mismatches == 0
    }
}

/// Compares what the gateway reported per fingerprint with the RRs in the cluster.
/// `fingerprint_of` maps a fingerprint index to its hex fingerprint.
pub fn compare(
    accounts: &HashMap<u32, FingerprintAccount>,
    fingerprint_of: impl Fn(u32) -> String,
    rrs: &[RrState],
) -> CountCheck {
    let mut by_fp: HashMap<&str, Vec<&RrState>> = HashMap::new();
    for rr in rrs {
        by_fp.entry(rr.fingerprint.as_str()).or_default().push(rr);
    }
    let mut check = CountCheck::default();
    let mut fps: Vec<_> = accounts.iter().collect();
    fps.sort_by_key(|(fp, _)| **fp);
    for (&idx, account) in fps {
        if account.failed > 0 {
            // A failed request (5xx, timeout) may or may not have been counted: this
            // fingerprint's total is unknown. Other fingerprints are unaffected.
            check.fingerprints_skipped += 1;
            continue;
        }
        if account.accepted == 0 {
            continue;
        }
        check.fingerprints += 1;
        let fp = fingerprint_of(idx);
        let found = by_fp
            .get(fp.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        check.rrs += found.len() as u64;
        check.rrs_in_storm += found.iter().filter(|r| r.storm).count() as u64;
        if found.len() > 1 {
            check.fingerprints_with_several_rrs += 1;
        }
        let total: u64 = found.iter().map(|r| r.count.unwrap_or(1)).sum();
        if total != account.accepted {
            let names: Vec<String> = found
                .iter()
                .map(|r| {
                    format!(
                        "{}={}",
                        r.name,
                        r.count.map_or("unset".into(), |c| c.to_string())
                    )
                })
                .collect();
            check.mismatch(format!(
                "fingerprint #{idx} {}: {} accepted, RRs count {total} [{}]",
                &fp[..12],
                account.accepted,
                names.join(", ")
            ));
        }
        if account.unattributed > 0 {
            check.mismatch(format!(
                "fingerprint #{idx}: {} accepted signals came back without RR name or count",
                account.unattributed
            ));
        }
        let named: BTreeMap<&str, Option<u64>> =
            found.iter().map(|r| (r.name.as_str(), r.count)).collect();
        for (rr, counts) in &account.counts {
            let Some(&final_count) = named.get(rr.as_str()) else {
                check.mismatch(format!("RR {rr} was reported but is not in the cluster"));
                continue;
            };
            let final_count = final_count.unwrap_or(1);
            let mut sorted = counts.clone();
            sorted.sort_unstable();
            if !sorted.iter().copied().eq(1..=final_count) {
                check.mismatch(describe_counts(rr, &sorted, final_count));
            }
        }
    }
    check
}

/// Names what is wrong with the counts reported for one RR.
fn describe_counts(rr: &str, sorted: &[u64], final_count: u64) -> String {
    let repeated = sorted.windows(2).filter(|w| w[0] == w[1]).count();
    let present: std::collections::BTreeSet<u64> = sorted.iter().copied().collect();
    let missing = (1..=final_count).filter(|n| !present.contains(n)).count();
    let beyond = sorted
        .iter()
        .filter(|&&n| n == 0 || n > final_count)
        .count();
    format!(
        "RR {rr}: {} counts reported for occurrenceCount {final_count} ({repeated} repeated, {missing} missing, {beyond} out of range)",
        sorted.len()
    )
}

/// Lists every RR in `namespace`, 500 at a time.
pub async fn fetch_rrs(
    client: &kube::Client,
    namespace: &str,
) -> Result<Vec<RrState>, kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &rr_resource());
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    // Bounded: each page advances the continue token, and the API ends the list.
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await?;
        out.extend(page.items.iter().filter_map(RrState::from_object));
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

/// Lists and compares until the check passes or `deadline` elapses; returns the last result.
pub async fn converge(
    client: &kube::Client,
    namespace: &str,
    accounts: &HashMap<u32, FingerprintAccount>,
    fingerprint_of: impl Fn(u32) -> String,
    deadline: Duration,
) -> anyhow::Result<CountCheck> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let rrs = fetch_rrs(client, namespace).await?;
        let check = compare(accounts, &fingerprint_of, &rrs);
        if check.passed() || tokio::time::Instant::now() >= until {
            return Ok(check);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(i: u32) -> String {
        format!("{i:064x}")
    }

    fn rr(name: &str, i: u32, count: Option<u64>) -> RrState {
        RrState {
            name: name.into(),
            fingerprint: fp(i),
            count,
            storm: false,
            storm_behind: false,
        }
    }

    fn account(counts: &[(&str, &[u64])]) -> FingerprintAccount {
        let mut a = FingerprintAccount::default();
        for (name, cs) in counts {
            a.accepted += cs.len() as u64;
            a.counts.insert((*name).into(), cs.to_vec());
        }
        a
    }

    #[test]
    fn exact_counts_pass() {
        let accounts = HashMap::from([
            (1, account(&[("rr-1", &[2, 1, 3])])),
            (2, account(&[("rr-2", &[1])])),
        ]);
        let rrs = vec![
            rr("rr-1", 1, Some(3)),
            rr("rr-2", 2, Some(1)),
            rr("other", 9, Some(4)),
        ];
        let c = compare(&accounts, fp, &rrs);
        assert!(c.passed(), "{c:?}");
        assert_eq!(c.fingerprints, 2);
        assert_eq!(c.rrs, 2);
    }

    #[test]
    fn lost_increment_is_caught() {
        // Three accepted, but the RR only counted two and a count was handed out twice.
        let accounts = HashMap::from([(1, account(&[("rr-1", &[1, 2, 2])]))]);
        let c = compare(&accounts, fp, &[rr("rr-1", 1, Some(2))]);
        assert_eq!(c.mismatches, 2, "{c:?}");
        assert!(c.examples[1].contains("1 repeated"), "{:?}", c.examples);
    }

    #[test]
    fn unset_status_counts_one_and_a_missing_rr_is_a_mismatch() {
        let accounts = HashMap::from([
            (1, account(&[("rr-1", &[1])])),
            (2, account(&[("rr-2", &[1])])),
            (3, account(&[("rr-3", &[1, 2])])),
        ]);
        let c = compare(&accounts, fp, &[rr("rr-1", 1, None), rr("rr-3", 3, None)]);
        // fp 1: an uninitialised RR is its first occurrence, exact; fp 2: sum 0 ≠ 1 and RR
        // missing; fp 3: sum 1 ≠ 2, and counts [1, 2] ≠ 1..=1.
        assert_eq!(c.mismatches, 4, "{c:?}");
    }

    #[test]
    fn fingerprints_with_failures_are_skipped_not_compared() {
        let mut failed = account(&[("rr-1", &[1, 2])]);
        failed.failed = 1;
        let accounts = HashMap::from([(1, failed), (2, account(&[("rr-2", &[1])]))]);
        // RR 1 counted the failed signal too (3); RR 2 is exact.
        let c = compare(
            &accounts,
            fp,
            &[rr("rr-1", 1, Some(3)), rr("rr-2", 2, Some(1))],
        );
        assert!(c.passed(), "{c:?}");
        assert_eq!((c.fingerprints, c.fingerprints_skipped), (1, 1));
    }

    #[test]
    fn several_rrs_sum_up() {
        let accounts = HashMap::from([(1, account(&[("rr-a", &[1, 2]), ("rr-b", &[1])]))]);
        let c = compare(
            &accounts,
            fp,
            &[rr("rr-a", 1, Some(2)), rr("rr-b", 1, Some(1))],
        );
        assert!(c.passed(), "{c:?}");
        assert_eq!(c.fingerprints_with_several_rrs, 1);
    }

    #[test]
    fn reads_dynamic_objects() {
        let o: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubernaut.ai/v1alpha1", "kind": "RemediationRequest",
            "metadata": {"name": "rr-x", "namespace": "ns"},
            "spec": {"signalFingerprint": fp(5)},
            "status": {"deduplication": {"occurrenceCount": 7}, "stormAggregation": {"isPartOfStorm": true}}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            RrState::from_object(&o),
            Some(RrState {
                name: "rr-x".into(),
                fingerprint: fp(5),
                count: Some(7),
                storm: true,
                storm_behind: false,
            })
        );
    }

    #[test]
    fn storm_block_lagging_its_history_is_behind() {
        let status = |aggregated: i64| {
            serde_json::json!({"status": {
                "deduplication": {"occurrenceCount": 9, "stormDetectedCount": 5},
                "stormAggregation": {"aggregatedCount": aggregated}
            }})
        };
        assert!(!storm_behind(&status(5)));
        assert!(storm_behind(&status(4)));
        assert!(storm_behind(
            &serde_json::json!({"status": {"deduplication": {"occurrenceCount": 9, "stormDetectedCount": 5}}})
        ));
        assert!(!storm_behind(
            &serde_json::json!({"status": {"deduplication": {"occurrenceCount": 9}}})
        ));
    }
}
