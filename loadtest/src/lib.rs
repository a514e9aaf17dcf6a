//! `gateway-loadtest`: an open-loop, constant-arrival-rate load generator for the gateway's
//! HTTP API, with a report of latency per outcome (measured from each request's due time),
//! Kubernetes writes per signal, an exact-count check against the RRs, gateway and
//! control-plane memory and CPU, and a floor mode that issues the same Kubernetes writes
//! directly. It reuses the gateway crate for every fact it shares with it: metric names, RR
//! types, the adapters and the RR builder, the fingerprint, durations, `/proc` figures.
//! See README.md.
//!
//! # Layout
//! - `cli`: the command-line options (the scenario's flattened in).
//! - `scenario`: the scenario options, resolved, and the seeded request mix of each stream.
//! - `payload`: the wire bodies, and the names and fingerprints they carry.
//! - `schedule`: due times and the open-loop driver.
//! - `load`: one phase — every stream driven against a sink.
//! - `gateway_api`: the gateway sink (HTTP client) and reading its answers.
//! - `floor`: the floor sink — the gateway's Kubernetes writes, issued directly.
//! - `results`: the one results model of a phase, and the verdict.
//! - `check`: the exact-count check and storm staleness, against the RRs.
//! - `scrape`: what the gateways' `/metrics` say about a phase.
//! - `stack`: self-start (control plane, gateway processes) and their process figures.
//! - `report`: the phases as a table and as JSON.
//! - `app`: the run from set-up to report.
//!
//! The binary (`main.rs`) parses the options and calls [`app::run`]; the tests in `tests/`
//! drive the same modules through this library.

pub mod app;
pub mod check;
pub mod cli;
pub mod floor;
pub mod gateway_api;
pub mod load;
pub mod payload;
pub mod report;
pub mod results;
pub mod scenario;
pub mod schedule;
pub mod scrape;
pub mod stack;
