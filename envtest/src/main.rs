//! `gateway-envtest up`: a local control plane in the foreground for the local run and the
//! load test. Prints `ready kubeconfig=<path>` on stdout once it is ready — for
//! RemediationRequest writes too, which it warms up first — as its first stdout line, so a
//! script can wait for it; runs until SIGINT or SIGTERM, then stops kube-apiserver and etcd
//! and removes their data and the kubeconfig.
//!
//! With `--proxy`, the kubeconfig goes through a fault-injecting proxy; with `--control`,
//! it takes fault commands (`gateway_envtest::control::HELP`) from stdin or a unix socket and
//! acknowledges each with one more stdout line.

use std::io::{BufRead as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use gateway_envtest::{ControlPlane, Options, Storage, control};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// How often the foreground loop checks that both programs still run.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Namespace of the RemediationRequest warm-up (a dry run: nothing is left in it).
const WARM_UP_NAMESPACE: &str = "default";

/// Longest control command line; a longer one ends its connection (or the reading of stdin).
const MAX_COMMAND_BYTES: usize = 1024;

/// Commands received but not yet run; further senders wait.
const QUEUED_COMMANDS: usize = 16;

/// Control-socket connections served at the same time; further ones wait in the backlog.
const MAX_CONTROL_CONNECTIONS: usize = 8;

#[derive(Parser)]
#[command(about = "A local Kubernetes control plane (etcd + kube-apiserver) for the gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a control plane and run it until SIGINT/SIGTERM.
    #[command(after_help = control::HELP)]
    Up(Up),
}

#[derive(clap::Args)]
struct Up {
    /// Where to write the admin kubeconfig [default: <workspace>/target/envtest/kubeconfig].
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// CRD (or ValidatingAdmissionPolicy) file to install; repeat for several [default:
    /// <workspace>/deploy/crds/remediationrequests.yaml and deploy/policy/spec-immutable.yaml].
    #[arg(long = "crd")]
    crds: Vec<PathBuf>,
    /// Keep etcd's data on disk (the temp dir) instead of tmpfs.
    #[arg(long)]
    etcd_on_disk: bool,
    /// Folder with the etcd and kube-apiserver binaries [default: built by the build script].
    #[arg(long, env = gateway_envtest::BIN_DIR_ENV)]
    bin_dir: Option<PathBuf>,
    /// Put a fault-injecting TCP proxy in front of kube-apiserver; the kubeconfig goes through
    /// it.
    #[arg(long)]
    proxy: bool,
    /// Take control commands (below): `-` reads them from stdin, any other path is a unix
    /// socket created there before `ready` is printed and removed on exit (e.g.
    /// `echo blackhole | nc -U <path>`).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
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
        proxy: up.proxy,
        ..Options::default()
    };
    let began = Instant::now();
    let control_plane = tokio::select! {
        started = ControlPlane::start(options) => started?,
        () = stop_requested(&mut terminate, &mut interrupt) => return Ok(ExitCode::SUCCESS),
    };
    if control_plane
        .crds()
        .iter()
        .any(|crd| crd == gateway_envtest::RR_CRD)
    {
        let warming = Instant::now();
        tokio::select! {
            warmed = control_plane.warm_up_rr_writes(WARM_UP_NAMESPACE) => warmed?,
            () = stop_requested(&mut terminate, &mut interrupt) => return Ok(ExitCode::SUCCESS),
        }
        eprintln!(
            "RemediationRequest writes warmed up in {:.1?}",
            warming.elapsed()
        );
    }
    let (commands, mut requests) = mpsc::channel(QUEUED_COMMANDS);
    let _socket = match &up.control {
        None => None,
        Some(path) if path.as_os_str() == "-" => {
            read_stdin(commands)?;
            None
        }
        Some(path) => Some(ControlSocket::bind(path, commands)?),
    };
    let proxied = match control_plane.proxy() {
        Some(proxy) => format!(" through a proxy at {}", proxy.addr()),
        None => String::new(),
    };
    eprintln!(
        "control plane ready in {:.1?}: {}{proxied} (unprivileged token {}); logs in {}",
        began.elapsed(),
        control_plane.apiserver_url(),
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
            () = stop_requested(&mut terminate, &mut interrupt) => break ExitCode::SUCCESS,
            Some(request) = requests.recv() => {
                let Request { line, reply } = request;
                let answer = tokio::select! {
                    answer = execute(&control_plane, &line) => answer,
                    () = stop_requested(&mut terminate, &mut interrupt) => break ExitCode::SUCCESS,
                };
                println!("{answer}");
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
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

/// Returns on the first SIGTERM or SIGINT.
async fn stop_requested(terminate: &mut Signal, interrupt: &mut Signal) {
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}

/// A control command line, and where to send its acknowledgement besides stdout.
struct Request {
    line: String,
    reply: Option<oneshot::Sender<String>>,
}

/// Parses and runs one command line; the acknowledgement, one line.
async fn execute(control_plane: &ControlPlane, line: &str) -> String {
    let outcome = match line.parse::<control::Command>() {
        Ok(command) => control::run(control_plane, command).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(detail) if detail.is_empty() => format!("ok {line}"),
        Ok(detail) => format!("ok {line}: {detail}"),
        Err(error) => {
            // The whole error (a program's log tail, say) goes to stderr; the answer keeps to
            // its first line.
            let error = format!("{error:#}");
            eprintln!("error: {line}: {error}");
            format!("error {line}: {}", error.lines().next().unwrap_or_default())
        }
    }
}

/// Reads commands from stdin on a thread of its own (tokio's stdin would hold the runtime's
/// shutdown on a blocking read); ends at EOF. Acknowledgements go to stdout only.
fn read_stdin(commands: mpsc::Sender<Request>) -> Result<()> {
    std::thread::Builder::new()
        .name("control-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            loop {
                let mut line = Vec::new();
                let read = (&mut stdin)
                    .take(MAX_COMMAND_BYTES as u64 + 1)
                    .read_until(b'\n', &mut line);
                let line = match read {
                    Ok(0) => return,
                    Ok(_) => match command_line(line) {
                        Ok(Some(line)) => line,
                        Ok(None) => continue,
                        Err(error) => {
                            eprintln!(
                                "error: control input on stdin: {error}; no longer reading it"
                            );
                            return;
                        }
                    },
                    Err(error) => {
                        eprintln!("error: reading stdin: {error}");
                        return;
                    }
                };
                let request = Request { line, reply: None };
                if commands.blocking_send(request).is_err() {
                    return;
                }
            }
        })
        .context("starting the stdin reader")?;
    Ok(())
}

/// A command line read with at most `MAX_COMMAND_BYTES + 1` bytes: the trimmed command, None
/// for a blank line, an error for an overlong or non-UTF-8 one.
fn command_line(bytes: Vec<u8>) -> Result<Option<String>> {
    if bytes.len() > MAX_COMMAND_BYTES && !bytes.ends_with(b"\n") {
        bail!("a line longer than {MAX_COMMAND_BYTES} bytes");
    }
    let line = String::from_utf8(bytes).context("a line that is not UTF-8")?;
    let line = line.trim();
    Ok((!line.is_empty()).then(|| line.to_owned()))
}

/// The control socket; removed when dropped.
struct ControlSocket {
    path: PathBuf,
    accept: tokio::task::JoinHandle<()>,
}

impl ControlSocket {
    /// Binds the socket at `path` (replacing a stale one) and serves it in the background.
    fn bind(path: &Path, commands: mpsc::Sender<Request>) -> Result<Self> {
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                bail!("{} is in use by another control socket", path.display());
            }
            std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        }
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        let accept = tokio::spawn(serve_socket(listener, commands));
        Ok(Self {
            path: path.to_path_buf(),
            accept,
        })
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Accepts control connections, at most `MAX_CONTROL_CONNECTIONS` at a time.
async fn serve_socket(listener: UnixListener, commands: mpsc::Sender<Request>) {
    let permits = Arc::new(Semaphore::new(MAX_CONTROL_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let commands = commands.clone();
                tokio::spawn(async move {
                    if let Err(error) = serve_connection(stream, commands).await {
                        eprintln!("error: control connection: {error:#}");
                    }
                    drop(permit);
                });
            }
            Err(error) => {
                eprintln!("error: accepting a control connection: {error}");
                tokio::time::sleep(WATCH_INTERVAL).await;
            }
        }
    }
}

/// Runs the commands of one connection in order, answering each on it.
async fn serve_connection(stream: UnixStream, commands: mpsc::Sender<Request>) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = tokio::io::BufReader::new(read);
    loop {
        let mut line = Vec::new();
        let bytes = (&mut read)
            .take(MAX_COMMAND_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if bytes == 0 {
            return Ok(());
        }
        let Some(line) = command_line(line)? else {
            continue;
        };
        let (reply, answer) = oneshot::channel();
        let request = Request {
            line,
            reply: Some(reply),
        };
        if commands.send(request).await.is_err() {
            return Ok(());
        }
        let Ok(answer) = answer.await else {
            return Ok(());
        };
        write.write_all(format!("{answer}\n").as_bytes()).await?;
    }
}
