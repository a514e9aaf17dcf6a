//! Invariants every accepted signal must satisfy, whatever the input.

use gateway::fingerprint::Fingerprint;
use gateway::ingest::Signal;

/// The fixed "now" of every fuzz run: the seeds' timestamps sit just before it, so mutations
/// explore both sides of the freshness window and a crash reproduces on any day.
pub fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_772_366_400).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
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
    assert!(
        (1..=63).contains(&chars(&s.resource.kind)),
        "kind {:?}",
        s.resource.kind
    );
    assert!(
        (1..=253).contains(&chars(&s.resource.name)),
        "resource name {:?}",
        s.resource.name
    );
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
