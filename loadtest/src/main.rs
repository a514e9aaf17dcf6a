//! `gateway-loadtest`: an open-loop, constant-arrival-rate load generator for the gateway's
//! HTTP API, with a report of latency per outcome (measured from each request's due time),
//! Kubernetes writes per signal, an exact-count check against the RRs, gateway memory, and a
//! floor mode that issues the same Kubernetes writes directly. See README.md.
//!
//! # Layout
//! - `cli`: options and the resolved `Scenario`.
//! - `schedule`: due times and the open-loop driver.
//! - `scenario`: the request mix (seeded) and the wire bodies.
//! - `http_sink`: the gateway client (hyper-util pooled, keep-alive).
//! - `floor`: the same Kubernetes writes, issued directly.
//! - `outcome`: classifying responses per request and per signal.
//! - `recorder`: histograms and per-fingerprint accounting.
//! - `load`: one phase — streams driven against a sink.
//! - `check`: the exact-count check against the RRs.
//! - `promtext`: reading counters from `/metrics`.
//! - `stack`: self-start (control plane, gateway processes, their memory).
//! - `report`: the table and the JSON.
//! - `app`: the run from set-up to report.

mod app;
mod check;
mod cli;
#[cfg(test)]
mod fake_gateway;
mod floor;
mod http_sink;
mod load;
mod outcome;
mod promtext;
mod recorder;
mod report;
mod scenario;
mod schedule;
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
    print!("{}", report.render());
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
