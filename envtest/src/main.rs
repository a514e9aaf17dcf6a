//! `gateway-envtest up`: a local control plane in the foreground for the local run and the
//! load test. Prints one line, `ready kubeconfig=<path>`, on stdout once it is ready (the
//! only stdout output, so a script can wait for it), runs until SIGINT or SIGTERM, then stops
//! kube-apiserver and etcd and removes their data and the kubeconfig.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Parser, Subcommand};
use gateway_envtest::{ControlPlane, Options, Storage};
use tokio::signal::unix::{SignalKind, signal};

/// How often the foreground loop checks that both programs still run.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Parser)]
#[command(about = "A local Kubernetes control plane (etcd + kube-apiserver) for the gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a control plane and run it until SIGINT/SIGTERM.
    Up(Up),
}

#[derive(clap::Args)]
struct Up {
    /// Where to write the admin kubeconfig [default: <workspace>/target/envtest/kubeconfig].
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// CRD file to install; repeat for several [default: <workspace>/deploy/crds/remediationrequests.yaml].
    #[arg(long = "crd")]
    crds: Vec<PathBuf>,
    /// Keep etcd's data on disk (the temp dir) instead of tmpfs.
    #[arg(long)]
    etcd_on_disk: bool,
    /// Folder with the etcd and kube-apiserver binaries [default: built by the build script].
    #[arg(long, env = gateway_envtest::BIN_DIR_ENV)]
    bin_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let Command::Up(up) = Cli::parse().command;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(up)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(up: Up) -> Result<ExitCode> {
    // Registered before starting, so a signal during start-up is not lost.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let root = gateway_envtest::workspace_root();
    let options = Options {
        crds: if up.crds.is_empty() {
            gateway_envtest::default_crds()
        } else {
            up.crds
        },
        storage: if up.etcd_on_disk {
            Storage::Disk
        } else {
            Storage::Tmpfs
        },
        bin_dir: up.bin_dir,
        kubeconfig: Some(
            up.kubeconfig
                .unwrap_or_else(|| root.join("target/envtest/kubeconfig")),
        ),
        ..Options::default()
    };
    let began = Instant::now();
    let control_plane = tokio::select! {
        started = ControlPlane::start(options) => started?,
        _ = terminate.recv() => return Ok(ExitCode::SUCCESS),
        _ = interrupt.recv() => return Ok(ExitCode::SUCCESS),
    };
    eprintln!(
        "control plane ready in {:.1?}: {} (unprivileged token {}); logs in {}",
        began.elapsed(),
        control_plane.url(),
        control_plane.unprivileged_token(),
        control_plane.dir().display(),
    );
    println!(
        "ready kubeconfig={}",
        control_plane.kubeconfig_path().display()
    );

    let mut watch = tokio::time::interval(WATCH_INTERVAL);
    let code = loop {
        tokio::select! {
            _ = terminate.recv() => break ExitCode::SUCCESS,
            _ = interrupt.recv() => break ExitCode::SUCCESS,
            _ = watch.tick() => {
                if let Some(exit) = control_plane.unexpected_exit() {
                    eprintln!("error: {exit}");
                    break ExitCode::FAILURE;
                }
            }
        }
    };
    eprintln!("stopping the control plane");
    control_plane.shutdown().await?;
    Ok(code)
}
