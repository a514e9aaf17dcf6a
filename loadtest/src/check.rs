//! The exact-count check (DESIGN.md §5, invariants 1 and 2), run after the load: for every
//! fingerprint this run sent, the RRs carrying it must add up to the signals accepted for it,
//! and the counts returned for each RR must be exactly `1..=occurrenceCount`, each once.
//!
//! The comparison is pure ([`compare`]); [`converge`] lists the RRs (the gateway's own typed
//! `RemediationRequest`) and repeats until they agree or a deadline passes, because a new RR's
//! `status.deduplication` is written just after its 201. [`storm_staleness`] measures how long
//! the storm blocks take to catch up with the deduplication history.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::time::Duration;
use tokio::time::Instant;

use gateway::k8s::types::{RemediationRequest as Rr, RemediationRequestStatus};
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::payload::Naming;
use crate::results::{Accounts, Phase};

/// The check's result, as the report carries it.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum CountCheck {
    /// Compared; see `mismatches`.
    Done(Counts),
    /// Not compared, and why (no Kubernetes access): does not fail the run.
    Skipped {
        /// Why.
        reason: String,
    },
    /// The RRs could not be listed: fails the run.
    Failed {
        /// Why.
        reason: String,
    },
}

impl Default for CountCheck {
    fn default() -> Self {
        let reason = "not run".into();
        CountCheck::Skipped { reason }
    }
}

/// What the comparison found.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
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

impl Counts {
    fn mismatch(&mut self, what: String) {
        self.mismatches += 1;
        if self.examples.len() < 10 {
            self.examples.push(what);
        }
    }
}

/// `status.deduplication.occurrenceCount`, when written. An RR whose status the gateway has not
/// initialised (the write after the create failed or is pending) has had exactly its first
/// occurrence: callers count it as 1.
fn count(rr: &Rr) -> Option<u64> {
    let dedup = rr.status.as_ref()?.deduplication.as_ref()?;
    u64::try_from(dedup.occurrence_count).ok()
}

fn in_storm(rr: &Rr) -> bool {
    let storm = rr
        .status
        .as_ref()
        .and_then(|s| s.storm_aggregation.as_ref());
    storm.is_some_and(|s| s.is_part_of_storm)
}

/// Whether an RR's storm block lags its deduplication history: once the history records the
/// crossing (`stormDetectedCount`), `aggregatedCount` must be `occurrenceCount -
/// stormDetectedCount + 1`.
fn storm_behind(status: Option<&RemediationRequestStatus>) -> bool {
    let Some(dedup) = status.and_then(|s| s.deduplication.as_ref()) else {
        return false;
    };
    let aggregated = status
        .and_then(|s| s.storm_aggregation.as_ref())
        .map(|s| s.aggregated_count);
    dedup
        .storm_detected_count
        .is_some_and(|detected| aggregated != Some(dedup.occurrence_count - detected + 1))
}

/// Compares what the sink reported per fingerprint index with the RRs in the cluster.
/// `fp_of` maps a fingerprint index to its hex fingerprint.
pub fn compare(accounts: &Accounts, fp_of: impl Fn(u32) -> String, rrs: &[Rr]) -> Counts {
    let mut by_fp: HashMap<&str, Vec<&Rr>> = HashMap::new();
    for rr in rrs {
        by_fp
            .entry(&rr.spec.signal_fingerprint)
            .or_default()
            .push(rr);
    }
    let mut check = Counts::default();
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
        let fp = fp_of(idx);
        let found = by_fp
            .get(fp.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        check.rrs += found.len() as u64;
        check.rrs_in_storm += found.iter().filter(|r| in_storm(r)).count() as u64;
        check.fingerprints_with_several_rrs += u64::from(found.len() > 1);
        let named: BTreeMap<&str, Option<u64>> = found
            .iter()
            .map(|r| (r.metadata.name.as_deref().unwrap_or_default(), count(r)))
            .collect();
        let total: u64 = named.values().map(|c| c.unwrap_or(1)).sum();
        if total != account.accepted {
            let names: Vec<String> = named
                .iter()
                .map(|(name, c)| format!("{name}={}", c.map_or("unset".into(), |c| c.to_string())))
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
    let present: BTreeSet<u64> = sorted.iter().copied().collect();
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

/// Lists every RR `api` sees, 500 at a time.
pub async fn fetch_rrs(api: &Api<Rr>) -> Result<Vec<Rr>, kube::Error> {
    let (mut out, mut lp) = (Vec::new(), ListParams::default().limit(500));
    // Bounded: each page advances the continue token, and the API ends the list.
    loop {
        let page = api.list(&lp).await?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => lp = lp.continue_token(&t),
            _ => return Ok(out),
        }
    }
}

/// Lists and compares the RRs of `phase` until they agree or `t` elapses; the last result.
pub async fn converge(api: &Api<Rr>, phase: &Phase, naming: &Naming, t: Duration) -> CountCheck {
    let until = Instant::now() + t;
    loop {
        let rrs = match fetch_rrs(api).await {
            Ok(rrs) => rrs,
            Err(e) => {
                return CountCheck::Failed {
                    reason: format!("listing RRs: {e}"),
                };
            }
        };
        let counts = compare(&phase.accounts, |fp| naming.fingerprint(fp), &rrs);
        if counts.mismatches == 0 || Instant::now() >= until {
            return CountCheck::Done(counts);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Storm-status staleness: from `since` (the end of the load) until no RR's storm block lags
/// its deduplication history, polled every 20 ms; `None` if that did not happen within
/// `within` (or the RRs could not be listed).
pub async fn storm_staleness(api: &Api<Rr>, since: Instant, within: Duration) -> Option<Duration> {
    let until = Instant::now() + within;
    loop {
        let rrs = fetch_rrs(api).await.ok()?;
        if !rrs.iter().any(|r| storm_behind(r.status.as_ref())) {
            return Some(since.elapsed());
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn fp(i: u32) -> String {
        format!("{i:064x}")
    }

    /// An RR as the API returns it, with `status` as given.
    fn rr_with(name: &str, fingerprint: &str, status: Value) -> Rr {
        let at = "2026-01-01T00:00:00Z";
        let rr = json!({
            "apiVersion": "kubernaut.ai/v1alpha1", "kind": "RemediationRequest",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {
                "signalFingerprint": fingerprint, "signalName": "A", "severity": "critical",
                "signalType": "alert", "signalSource": "prometheus", "targetType": "kubernetes",
                "targetResource": {"kind": "Pod", "name": "p"}, "firingTime": at, "receivedTime": at,
            },
            "status": status,
        });
        serde_json::from_value(rr).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `status` with `occurrenceCount` `count`.
    fn counted(count: u64) -> Value {
        let at = "2026-01-01T00:00:00Z";
        json!({"deduplication": {"occurrenceCount": count, "firstSeenAt": at, "lastSeenAt": at}})
    }

    /// RRs named `name` for fingerprint `i` with `count` (`None`: no status yet).
    fn rrs(list: &[(&str, u32, Option<u64>)]) -> Vec<Rr> {
        let rr =
            |&(name, i, c): &(&str, u32, Option<u64>)| rr_with(name, &fp(i), c.map(counted).into());
        list.iter().map(rr).collect()
    }

    /// Per fingerprint index: the counts reported for each RR name.
    fn accounts(list: &[(u32, &str, &[u64])]) -> Accounts {
        let mut out = Accounts::new();
        for &(i, name, counts) in list {
            let a = out.entry(i).or_default();
            a.accepted += counts.len() as u64;
            a.counts.insert(name.into(), counts.to_vec());
        }
        out
    }

    #[test]
    fn exact_counts_pass() {
        let accounts = accounts(&[(1, "rr-1", &[2, 1, 3]), (2, "rr-2", &[1])]);
        let rrs = rrs(&[
            ("rr-1", 1, Some(3)),
            ("rr-2", 2, Some(1)),
            ("other", 9, Some(4)),
        ]);
        let c = compare(&accounts, fp, &rrs);
        assert_eq!((c.mismatches, c.fingerprints, c.rrs), (0, 2, 2), "{c:?}");
    }

    #[test]
    fn lost_increment_is_caught() {
        // Three accepted, but the RR only counted two and a count was handed out twice.
        let c = compare(
            &accounts(&[(1, "rr-1", &[1, 2, 2])]),
            fp,
            &rrs(&[("rr-1", 1, Some(2))]),
        );
        assert_eq!(c.mismatches, 2, "{c:?}");
        assert!(c.examples[1].contains("1 repeated"), "{:?}", c.examples);
    }

    #[test]
    fn unset_status_counts_one_and_a_missing_rr_is_a_mismatch() {
        let accounts = accounts(&[(1, "rr-1", &[1]), (2, "rr-2", &[1]), (3, "rr-3", &[1, 2])]);
        let c = compare(&accounts, fp, &rrs(&[("rr-1", 1, None), ("rr-3", 3, None)]));
        // fp 1: an uninitialised RR is its first occurrence, exact; fp 2: sum 0 ≠ 1 and RR
        // missing; fp 3: sum 1 ≠ 2, and counts [1, 2] ≠ 1..=1.
        assert_eq!(c.mismatches, 4, "{c:?}");
    }

    #[test]
    fn fingerprints_with_failures_are_skipped_not_compared() {
        let mut accounts = accounts(&[(1, "rr-1", &[1, 2]), (2, "rr-2", &[1])]);
        accounts.entry(1).or_default().failed = 1;
        // RR 1 counted the failed signal too (3); RR 2 is exact.
        let c = compare(
            &accounts,
            fp,
            &rrs(&[("rr-1", 1, Some(3)), ("rr-2", 2, Some(1))]),
        );
        assert_eq!(c.mismatches, 0, "{c:?}");
        assert_eq!((c.fingerprints, c.fingerprints_skipped), (1, 1));
    }

    #[test]
    fn several_rrs_sum_up() {
        let accounts = accounts(&[(1, "rr-a", &[1, 2]), (1, "rr-b", &[1])]);
        let c = compare(
            &accounts,
            fp,
            &rrs(&[("rr-a", 1, Some(2)), ("rr-b", 1, Some(1))]),
        );
        assert_eq!(
            (c.mismatches, c.fingerprints_with_several_rrs),
            (0, 1),
            "{c:?}"
        );
    }

    /// A status with `occurrenceCount` 9, the storm crossing at `detected`, and a storm block
    /// with `aggregated`.
    fn storm(aggregated: Option<i64>, detected: Option<i64>) -> Value {
        let mut s = counted(9);
        if let Some(d) = detected {
            s["deduplication"]["stormDetectedCount"] = d.into();
        }
        if let Some(a) = aggregated {
            let block =
                json!({"isPartOfStorm": true, "aggregatedCount": a, "windowOccurrences": 1});
            s["stormAggregation"] = block;
        }
        s
    }

    #[test]
    fn reads_typed_rrs() {
        let r = rr_with("rr-x", &fp(5), storm(Some(1), None));
        assert_eq!(r.spec.signal_fingerprint, fp(5));
        assert_eq!((count(&r), in_storm(&r)), (Some(9), true));
        assert!(!storm_behind(r.status.as_ref()));
        let c = compare(
            &accounts(&[(5, "rr-x", &[1, 2, 3, 4, 5, 6, 7, 8, 9])]),
            fp,
            &[r],
        );
        assert_eq!((c.mismatches, c.rrs_in_storm), (0, 1), "{c:?}");
    }

    #[test]
    fn storm_block_lagging_its_history_is_behind() {
        let behind = |a, d| storm_behind(rr_with("rr", &fp(1), storm(a, d)).status.as_ref());
        assert!(!behind(Some(5), Some(5)));
        assert!(behind(Some(4), Some(5)));
        assert!(behind(None, Some(5)));
        assert!(!behind(None, None));
    }
}
