//! Fuzzes the Alertmanager adapter: no input may panic, every accepted alert must be a valid
//! signal, and whenever simd-json and serde_json both accept a body they must agree on every
//! alert.
//!
//! An input that starts with `X-Timestamp: <value>\n` passes `<value>` as the header, so the
//! header path is fuzzed too.
#![no_main]

use gateway::ingest::adapters::alertmanager;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const HEADER: &[u8] = b"X-Timestamp: ";

fuzz_target!(|data: &[u8]| {
    let (x_timestamp, body) = match data.strip_prefix(HEADER) {
        Some(rest) => match rest.iter().position(|b| *b == b'\n') {
            Some(end) => (Some(&rest[..end]), &rest[end + 1..]),
            None => (None, data),
        },
        None => (None, data),
    };
    let now = common::now();
    let mut owned = body.to_vec();
    let by_simd = alertmanager::parse(&mut owned, x_timestamp, now);
    let by_serde = alertmanager::parse_with_serde_json(body, x_timestamp, now);
    if let Ok(alerts) = &by_simd {
        assert!(!alerts.is_empty());
        for signal in alerts.iter().flatten() {
            common::check_signal(signal);
        }
    }
    if let (Ok(a), Ok(b)) = (&by_simd, &by_serde) {
        assert_eq!(a, b, "simd-json and serde_json disagree");
    }
});
