//! Fuzzes the core/v1 Event adapter: no input may panic, and every accepted Event must be a
//! valid signal whose freshness timestamp is inside the window.
#![no_main]

use gateway::ingest::adapters::kubernetes_event;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut owned = data.to_vec();
    if let Ok(signal) = kubernetes_event::parse(&mut owned, common::now()) {
        common::check_signal(&signal);
        assert!(signal.severity == "Warning" || signal.severity == "Error");
    }
});
