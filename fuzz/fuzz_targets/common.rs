//! The fuzzers' oracles: what every input, whatever it is, must satisfy. The fuzz targets call
//! [`alertmanager`] and [`kubernetes_event`] on each generated input; `tests/ingest_corpus.rs`
//! calls them on every kept input of `fuzz/seeds/` under the stable toolchain, so a crash once
//! found and kept there stays fixed.
#![allow(dead_code)] // each fuzz target uses one of the two entry points

use gateway::fingerprint::Fingerprint;
use gateway::ingest::Signal;
use gateway::ingest::adapters;

/// Prefix of an `alertmanager` input that carries an `X-Timestamp` header value.
const X_TIMESTAMP: &[u8] = b"X-Timestamp: ";

/// The fixed "now" of every fuzz run: the seeds' timestamps sit just before it, so mutations
/// explore both sides of the freshness window and a crash reproduces on any day.
pub fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_772_366_400).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Splits an input that starts with `X-Timestamp: <value>\n` into the header value and the
/// body; any other input is all body.
pub fn split_x_timestamp(data: &[u8]) -> (Option<&[u8]>, &[u8]) {
    match data.strip_prefix(X_TIMESTAMP) {
        Some(rest) => match rest.iter().position(|b| *b == b'\n') {
            Some(end) => (Some(&rest[..end]), &rest[end + 1..]),
            None => (None, data),
        },
        None => (None, data),
    }
}

/// The Alertmanager adapter: no panic, every accepted alert a valid signal, and simd-json and
/// serde_json agree on every body both accept.
pub fn alertmanager(data: &[u8]) {
    let (x_timestamp, body) = split_x_timestamp(data);
    let now = now();
    let mut owned = body.to_vec();
    let by_simd = adapters::alertmanager::parse(&mut owned, x_timestamp, now);
    let by_serde = adapters::alertmanager::parse_with_serde_json(body, x_timestamp, now);
    if let Ok(alerts) = &by_simd {
        assert!(!alerts.is_empty());
        for signal in alerts.iter().flatten() {
            check_signal(signal);
        }
    }
    if let (Ok(a), Ok(b)) = (&by_simd, &by_serde) {
        assert_eq!(a, b, "simd-json and serde_json disagree");
    }
}

/// The core/v1 Event adapter: no panic, and an accepted Event is a valid signal of severity
/// `Warning` or `Error`.
pub fn kubernetes_event(data: &[u8]) {
    let mut owned = data.to_vec();
    if let Ok(signal) = adapters::kubernetes_event::parse(&mut owned, now()) {
        check_signal(&signal);
        assert!(signal.severity == "Warning" || signal.severity == "Error");
    }
}

/// Panics (so libFuzzer records the input) when `s` breaks a rule an RR depends on.
pub fn check_signal(s: &Signal) {
    let chars = |v: &str| v.chars().count();
    assert!((1..=253).contains(&chars(&s.name)), "name {:?}", s.name);
    assert!(
        (1..=50).contains(&chars(&s.severity)),
        "severity {:?}",
        s.severity
    );
    // The target's names, by the Kubernetes rules, read here independently of the adapters.
    let kind = s.resource.kind.as_bytes();
    assert!(
        (1..=63).contains(&kind.len())
            && kind[0].is_ascii_alphabetic()
            && kind.iter().all(u8::is_ascii_alphanumeric),
        "kind {:?}",
        s.resource.kind
    );
    let name = &s.resource.name;
    assert!(
        (1..=253).contains(&name.len()) && name.split('.').all(is_dns_label),
        "resource name {name:?}"
    );
    if let Some(namespace) = &s.resource.namespace {
        assert!(
            namespace.len() <= 63 && is_dns_label(namespace),
            "namespace {namespace:?}"
        );
    }
    assert_eq!(
        s.fingerprint,
        Fingerprint::of(
            s.cluster.as_deref(),
            s.resource.namespace.as_deref().unwrap_or(""),
            &s.resource.kind,
            &s.resource.name,
        ),
    );
    assert!(Fingerprint::parse(s.fingerprint.as_str()).is_some());
    assert!(
        serde_json::from_str::<serde_json::Value>(&s.raw).is_ok(),
        "raw is not JSON: {}",
        s.raw
    );
}

/// An RFC 1123 label's shape: lowercase letters, digits and `-`, starting and ending with a
/// letter or digit (length checked by the caller).
fn is_dns_label(part: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = part.as_bytes();
    !bytes.is_empty()
        && alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && bytes.iter().all(|&b| alnum(b) || b == b'-')
}
