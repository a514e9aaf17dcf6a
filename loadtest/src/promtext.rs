//! Just enough of the Prometheus text exposition format to read counters off a gateway's
//! `/metrics`: `name{label="value",...} value [timestamp]`, comments skipped, label values
//! unescaped. Histograms come out as their `_bucket`/`_sum`/`_count` samples.

use std::collections::BTreeMap;

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
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, tail) = parse_labels(after)?;
        labels = parsed;
        rest = tail;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
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

/// Sum of the samples named `name` whose labels satisfy `keep`.
pub fn sum(
    samples: &[Sample],
    name: &str,
    keep: impl Fn(&BTreeMap<String, String>) -> bool,
) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && keep(&s.labels))
        .map(|s| s.value)
        .sum()
}

/// Samples named `name`, keyed by the values of `keys` joined with `/`, summed.
pub fn by_labels(samples: &[Sample], name: &str, keys: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == name) {
        let key = keys
            .iter()
            .map(|k| s.labels.get(*k).map_or("", String::as_str))
            .collect::<Vec<_>>()
            .join("/");
        *out.entry(key).or_insert(0.0) += s.value;
    }
    out
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
    fn sums_writes() {
        let s = parse(TEXT);
        let writes = sum(&s, "gateway_k8s_requests_total", |l| {
            matches!(
                l.get("verb").map(String::as_str),
                Some("create" | "patch" | "update")
            )
        });
        assert_eq!(writes, 103.0);
        assert_eq!(sum(&s, "gateway_index_entries", |_| true), 100.0);
        assert_eq!(sum(&s, "absent", |_| true), 0.0);
        let by = by_labels(&s, "gateway_k8s_requests_total", &["verb", "outcome"]);
        assert_eq!(by.get("patch/conflict"), Some(&3.0));
        assert_eq!(by.len(), 4);
    }
}
