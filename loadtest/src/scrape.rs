//! What the gateways' `/metrics` say about a phase: the Prometheus text format read into
//! samples (just enough of it: `name{label="value",...} value [timestamp]`, comments skipped,
//! label values unescaped), and the increases between two scrapes — Kubernetes writes per
//! signal, the other gateway counters, mean call times, and process figures. Metric names are
//! the gateway's own (`gateway::telemetry::names`).

use std::collections::BTreeMap;
use std::time::Duration;

use gateway::telemetry::names;

use crate::gateway_api::{HttpClient, get};
use crate::results::{Processes, Writes};

/// Verbs that write; a verb counts when it starts with one (`patch_storm` is a patch).
const WRITE_VERBS: [&str; 3] = ["create", "patch", "update"];
/// The outcome of calls that never reached the API (the circuit breaker refused them).
const NOT_SENT: &str = "breaker_open";
/// Counters whose increase over the phase is reported alongside.
const COUNTERS: [&str; 11] = [
    names::SIGNALS_RECEIVED,
    names::FORWARDED_SIGNALS,
    names::LOCAL_FALLBACKS,
    names::REDELIVERIES,
    names::SIGNALS_DEDUPLICATED,
    names::CRDS_CREATED,
    names::CRD_CREATION_ERRORS,
    names::STORMS_DETECTED,
    names::STORM_PATCHES,
    names::STORM_COALESCED,
    names::WATCH_RESTARTS,
];
const MIB: f64 = 1048576.0;

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name (with any `_total`, `_bucket` suffix).
    pub name: String,
    /// Labels, sorted by name.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// All samples of an exposition; lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, rest) = line.split_at(line.find(|c: char| c == '{' || c.is_whitespace())?);
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(after) => parse_labels(after)?,
        None => (BTreeMap::new(), rest),
    };
    // `+Inf` and `-Inf` parse as Rust floats.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `k="v",k2="v2"}` and returns the labels and what follows the closing brace.
fn parse_labels(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(tail) = s.strip_prefix('}') {
            return Some((labels, tail));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.insert(key, value);
        s = &s[end + 1..];
    }
}

/// Samples named `name`, summed by the values of `keys` joined with `/` (all under `""` when
/// `keys` is empty).
pub fn by_labels(samples: &[Sample], name: &str, keys: &[&str]) -> Sums {
    let mut out = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == name) {
        let key: Vec<&str> = keys
            .iter()
            .map(|k| s.labels.get(*k).map_or("", String::as_str))
            .collect();
        *out.entry(key.join("/")).or_insert(0.0) += s.value;
    }
    out
}

/// Sums by label values.
pub type Sums = BTreeMap<String, f64>;

/// One scrape of every replica.
pub type Scrape = Vec<Vec<Sample>>;

/// Scrapes every metrics target; an error if any fails (a partial sum would mislead).
pub async fn scrape(http: &HttpClient, metrics: &[String]) -> Result<Scrape, String> {
    let mut out = Vec::new();
    for m in metrics {
        let url = format!("{m}/metrics");
        match get(http, &url, Duration::from_secs(5)).await {
            Ok((200, body)) => out.push(parse(&String::from_utf8_lossy(&body))),
            Ok((code, _)) => return Err(format!("GET {url}: {code}")),
            Err(e) => return Err(format!("{e:#}")),
        }
    }
    Ok(out)
}

/// The increase of `name` from `before` to `after`, summed over the replicas, by `keys`.
fn delta(before: &[Vec<Sample>], after: &[Vec<Sample>], name: &str, keys: &[&str]) -> Sums {
    let mut out = BTreeMap::new();
    for (sign, snap) in [(1.0, after), (-1.0, before)] {
        for (k, v) in snap.iter().flat_map(|s| by_labels(s, name, keys)) {
            *out.entry(k).or_insert(0.0) += sign * v;
        }
    }
    out
}

/// Writes per signal (and the other counters) from the gateways' scrapes before and after.
pub fn gateway_writes(before: &[Vec<Sample>], after: &[Vec<Sample>], signals: u64) -> Writes {
    let mut calls = delta(before, after, names::K8S_REQUESTS, &["verb", "outcome"]);
    calls.retain(|_, v| *v != 0.0);
    let writes = calls
        .iter()
        .filter(|(k, _)| {
            let (verb, outcome) = k.split_once('/').unwrap_or_default();
            WRITE_VERBS.iter().any(|w| verb.starts_with(w)) && outcome != NOT_SENT
        })
        .map(|(_, v)| v)
        .sum();
    let duration = |part: &str| {
        let name = format!("{}_{part}", names::K8S_REQUEST_DURATION);
        delta(before, after, &name, &["verb"])
    };
    let (sums, counts) = (duration("sum"), duration("count"));
    let k8s_call_mean_ms = counts
        .iter()
        .filter(|(_, n)| **n > 0.0)
        .map(|(verb, n)| (verb.clone(), sums.get(verb).unwrap_or(&0.0) / n * 1000.0));
    let counters = COUNTERS.iter().map(|name| {
        let increase = delta(before, after, name, &[]).values().sum();
        ((*name).to_owned(), increase)
    });
    let buckets = delta(
        before,
        after,
        &format!("{}_bucket", names::FORWARD_DURATION),
        &["le"],
    );
    let forward_ms = [("p50", 0.5), ("p95", 0.95)]
        .into_iter()
        .filter_map(|(name, q)| Some((name.to_owned(), quantile(&buckets, q)? * 1000.0)))
        .collect();
    Writes {
        by_verb_outcome: calls,
        counters: counters.collect(),
        k8s_call_mean_ms: k8s_call_mean_ms.collect(),
        forward_ms,
        ..Writes::new("gateway /metrics", writes, signals)
    }
}

/// The `q` quantile of a histogram's cumulative bucket counts (by `le`), interpolated within
/// the bucket it falls in as Prometheus' `histogram_quantile` does; `None` without
/// observations.
pub fn quantile(buckets: &Sums, q: f64) -> Option<f64> {
    let mut bounds: Vec<(f64, f64)> = buckets
        .iter()
        .filter_map(|(le, n)| Some((le.parse::<f64>().ok()?, *n)))
        .collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = bounds.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, cumulative) in bounds {
        if cumulative >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let within = (cumulative - below).max(f64::MIN_POSITIVE);
            return Some(lower + (le - lower) * (rank - below) / within);
        }
        (lower, below) = (le, cumulative);
    }
    None
}

/// Memory and CPU of given gateways from their `process_*` metrics, when they have them.
pub fn metrics_process(before: &[Vec<Sample>], after: &[Vec<Sample>]) -> Option<Processes> {
    let value = |s: &[Sample], name: &str| s.iter().find(|x| x.name == name).map(|x| x.value);
    let rss_mib: Vec<f64> = after
        .iter()
        .filter_map(|s| Some(value(s, names::PROCESS_RESIDENT_MEMORY)? / MIB))
        .collect();
    let cpu = |s: &[Sample]| value(s, names::PROCESS_CPU_SECONDS);
    let cpu_seconds: Vec<f64> = before
        .iter()
        .zip(after)
        .filter_map(|(b, a)| Some(cpu(a)? - cpu(b)?))
        .collect();
    (!rss_mib.is_empty() || !cpu_seconds.is_empty()).then(|| Processes {
        source: "process_* metrics".into(),
        rss_mib,
        peak_mib: Vec::new(),
        cpu_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
# HELP gateway_k8s_requests_total Kubernetes API calls.
# TYPE gateway_k8s_requests_total counter
gateway_k8s_requests_total{verb="create",outcome="success"} 10
gateway_k8s_requests_total{verb="patch",outcome="success"} 90
gateway_k8s_requests_total{outcome="conflict",verb="patch"} 3
gateway_k8s_requests_total{verb="list",outcome="success"} 1
gateway_index_entries 100
process_resident_memory_bytes 4.5e7 1700000000000
gateway_http_request_duration_seconds_bucket{route="prometheus",status="202",le="+Inf"} 5
weird{msg="a \"quoted\", {brace}\\ and\nnewline",x="1"} 2
broken{a="1" 3
"#;

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let buckets: Sums = [
            ("0.01", 50.0),
            ("0.02", 90.0),
            ("0.05", 100.0),
            ("+Inf", 100.0),
        ]
        .into_iter()
        .map(|(le, n)| (le.to_owned(), n))
        .collect();
        assert_eq!(quantile(&buckets, 0.5), Some(0.01));
        let p95 = quantile(&buckets, 0.95).unwrap_or_default();
        assert!((p95 - 0.035).abs() < 1e-9, "{p95}");
        assert_eq!(quantile(&Sums::new(), 0.5), None);
    }

    #[test]
    fn parses_samples() {
        let s = parse(TEXT);
        assert_eq!(s.len(), 8);
        assert_eq!(
            s[2].labels.get("outcome").map(String::as_str),
            Some("conflict")
        );
        assert_eq!(s[5].value, 4.5e7);
        assert_eq!(s[6].labels.get("le").map(String::as_str), Some("+Inf"));
        assert_eq!(
            s[7].labels.get("msg").map(String::as_str),
            Some("a \"quoted\", {brace}\\ and\nnewline")
        );
        assert_eq!(s[7].labels.get("x").map(String::as_str), Some("1"));
    }

    #[test]
    fn sums_by_labels() {
        let s = parse(TEXT);
        let by = by_labels(&s, "gateway_k8s_requests_total", &["verb", "outcome"]);
        assert_eq!(by.get("patch/conflict"), Some(&3.0));
        assert_eq!(by.len(), 4);
        let writes: f64 = by_labels(&s, "gateway_k8s_requests_total", &["verb"])
            .iter()
            .filter(|(verb, _)| WRITE_VERBS.contains(&verb.as_str()))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(writes, 103.0);
        assert_eq!(
            by_labels(&s, "gateway_index_entries", &[]).get(""),
            Some(&100.0)
        );
        assert!(by_labels(&s, "absent", &[]).is_empty());
    }

    #[test]
    fn process_figures_from_metrics() {
        let snap = |cpu: f64| {
            parse(&format!(
                "process_resident_memory_bytes 4.5e7\nprocess_cpu_seconds_total {cpu}\n"
            ))
        };
        let p = metrics_process(&[snap(1.0)], &[snap(3.5)]);
        let p = p.unwrap_or_else(|| panic!("no process figures"));
        assert_eq!(p.cpu_seconds, [2.5]);
        assert!((p.rss_mib[0] - 42.915).abs() < 0.01, "{:?}", p.rss_mib);
        assert!(metrics_process(&[vec![]], &[vec![]]).is_none());
    }

    #[test]
    fn writes_are_deltas_over_replicas() {
        let snap = |create: u32, patch: u32| {
            parse(&format!(
                "gateway_k8s_requests_total{{verb=\"create\",outcome=\"success\"}} {create}\n\
                 gateway_k8s_requests_total{{verb=\"patch\",outcome=\"success\"}} {patch}\n\
                 gateway_k8s_requests_total{{verb=\"list\",outcome=\"success\"}} 2\n\
                 gateway_k8s_requests_total{{verb=\"patch_storm\",outcome=\"success\"}} {create}\n\
                 gateway_k8s_requests_total{{verb=\"patch\",outcome=\"breaker_open\"}} {patch}\n\
                 gateway_k8s_request_duration_seconds_sum{{verb=\"patch\"}} {}\n\
                 gateway_k8s_request_duration_seconds_count{{verb=\"patch\"}} {patch}\n\
                 gateway_signals_received_total{{source=\"prometheus\"}} {}\n",
                f64::from(patch) * 0.005,
                create + patch
            ))
        };
        let before = vec![snap(1, 1), snap(0, 0)];
        let after = vec![snap(11, 61), snap(10, 40)];
        let w = gateway_writes(&before, &after, 200);
        // create 20 + patch 100 + patch_storm 20; breaker_open calls never reached the API.
        assert_eq!(w.writes, 140.0);
        assert!((w.per_signal - 0.7).abs() < 1e-9);
        assert_eq!(w.by_verb_outcome.get("patch/breaker_open"), Some(&100.0));
        assert_eq!(w.by_verb_outcome.get("create/success"), Some(&20.0));
        assert_eq!(w.by_verb_outcome.get("patch/success"), Some(&100.0));
        assert!(!w.by_verb_outcome.contains_key("list/success"));
        assert_eq!(w.counters["gateway_signals_received_total"], 120.0);
        let mean = w.k8s_call_mean_ms.get("patch").copied().unwrap_or_default();
        assert!((mean - 5.0).abs() < 1e-9, "{mean}");
    }
}
