//! The `gateway-loadtest` binary: parse the options, run on a runtime of `--threads` workers,
//! print the report (and write its JSON), and exit 0 (passed), 1 (failed) or 2 (not carried
//! out). See the library's docs for the layout.

use std::process::ExitCode;

use clap::Parser;
use gateway_loadtest::{app, cli};

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
