//! Fuzzes the core/v1 Event adapter: no input may panic, and every accepted Event must be a
//! valid signal of severity `Warning` or `Error` (the checks: `common::kubernetes_event`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::kubernetes_event(data));
