//! `gateway-loadtest`: an open-loop, constant-arrival-rate load generator for the gateway's
//! HTTP API, with a report of latency per outcome (measured from each request's due time),
//! Kubernetes writes per signal, an exact-count check against the RRs, gateway and
//! control-plane memory and CPU, and a floor mode that issues the same Kubernetes writes
//! directly. It reuses the gateway crate for every fact it shares with it: metric names, RR
//! types, the adapters and the RR builder, the fingerprint, durations, `/proc` figures.
//! See README.md.
//!
//! # Layout
//! - `cli`: the options as given.
//! - `scenario`: the scenario resolved from them, and the seeded request mix of each stream.
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

mod app;
mod check;
mod cli;
mod floor;
mod gateway_api;
mod load;
mod payload;
mod report;
mod results;
mod scenario;
mod schedule;
mod scrape;
mod stack;

use std::process::ExitCode;

use clap::Parser;

/// Exit code for a run that completed but failed (5xx, transport errors, count mismatches).
const EXIT_FAILED_RUN: u8 = 1;
/// Exit code for a run that could not be carried out (bad options, set-up failure).
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let json = args.json.clone();
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = app::run(args) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    // Dropping the runtime ends the tasks; self-started processes die with their handles.
    drop(runtime);
    let report = match outcome {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    print!("{report}");
    if let Some(path) = json {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(anyhow::Error::from)
            .and_then(|b| Ok(std::fs::write(&path, b)?));
        if let Err(e) = written {
            eprintln!("error: writing {}: {e:#}", path.display());
            return ExitCode::from(EXIT_ERROR);
        }
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED_RUN)
    }
}
