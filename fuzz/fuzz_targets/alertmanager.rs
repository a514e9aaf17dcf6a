//! Fuzzes the Alertmanager adapter: no input may panic, every accepted alert must be a valid
//! signal, and whenever simd-json and serde_json both accept a body they must agree on every
//! alert (the checks: `common::alertmanager`).
//!
//! An input that starts with `X-Timestamp: <value>\n` passes `<value>` as the header, so the
//! header path is fuzzed too.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::alertmanager(data));
