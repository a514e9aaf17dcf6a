//! Supervised child processes: etcd and kube-apiserver, started so that they cannot outlive
//! the process that started them, logging to a file, stoppable and restartable with the same
//! command line, and pausable (SIGSTOP / SIGCONT).
//!
//! Three mechanisms, each covering a different way the owner can go away:
//! - `Drop` kills the child (normal end of a test, or a panic that unwinds);
//! - `PR_SET_PDEATHSIG = SIGKILL` makes the kernel kill the child when its parent dies for any
//!   reason, including `kill -9` of the test process, where no destructor runs;
//! - each child leads its own process group, so one signal reaches anything it forks, and a
//!   Ctrl-C on the terminal reaches only the CLI, which then shuts the children down in order.
//!
//! The parent-death signal fires when the *thread* that forked the child exits, not the
//! process. Tests start and drop tokio runtimes (and their threads) all the time, so children
//! are forked by one dedicated thread that lives as long as the process (the spawner below).

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use rustix::process::{Pid, Signal};
use tokio::sync::oneshot;

/// How often a stopping child is polled for its exit.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// How long [`Supervised::pause`] waits for every thread to stop.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a pausing program's threads are checked.
const PAUSE_POLL: Duration = Duration::from_millis(2);

/// Lines of a log shown in errors.
const LOG_TAIL_LINES: usize = 40;

/// One supervised program: its command line, its log file and its process.
#[derive(Debug)]
pub(crate) struct Supervised {
    /// Short name for messages (`etcd`, `kube-apiserver`).
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    /// stdout and stderr of every run, appended, so a restart keeps the earlier history.
    log: PathBuf,
    state: Mutex<State>,
}

/// Where a program is in its life.
#[derive(Debug)]
enum State {
    /// Never started, or stopped through [`Supervised::stop`] / [`Supervised::kill`].
    Stopped,
    /// A std `Child` (not tokio's) because tokio's is tied to the runtime that spawned it, and
    /// a shared control plane outlives the runtime of the test that started it.
    Running(Child),
    /// Exited by itself (reaped); kept so every later question gets the same answer.
    Exited(ExitStatus),
}

impl Supervised {
    pub(crate) fn new(
        name: &'static str,
        program: PathBuf,
        args: Vec<String>,
        log: PathBuf,
    ) -> Self {
        Self {
            name,
            program,
            args,
            log,
            state: Mutex::new(State::Stopped),
        }
    }

    /// The short name, for messages.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The log file of this program.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// Starts the program; fails if it is already running.
    pub(crate) async fn start(&self) -> Result<()> {
        if self.is_running() {
            bail!("{} is already running", self.name);
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        writeln!(
            log,
            "=== gateway-envtest: starting {} {}",
            self.program.display(),
            self.args.join(" ")
        )?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        die_with_parent(&mut command);
        let child = spawn(command)
            .await
            .with_context(|| format!("starting {}", self.program.display()))?;
        tracing::debug!(name = self.name, pid = child.id(), "started");
        *self.lock() = State::Running(child);
        Ok(())
    }

    /// Stops the program: SIGTERM to its process group, then SIGKILL after `grace`. Stopping
    /// a program that is not running is a no-op.
    pub(crate) async fn stop(&self, grace: Duration) -> Result<()> {
        let State::Running(mut child) = std::mem::replace(&mut *self.lock(), State::Stopped) else {
            return Ok(());
        };
        signal_group(&child, Signal::TERM);
        // A paused program holds the SIGTERM until it is continued; continue it, so that a
        // stop during a pause is as quick as any other.
        signal_group(&child, Signal::CONT);
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = child.try_wait()? {
                tracing::debug!(name = self.name, %status, "stopped");
                return Ok(());
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    name = self.name,
                    ?grace,
                    "did not stop on SIGTERM; killing it"
                );
                signal_group(&child, Signal::KILL);
                child.wait()?;
                return Ok(());
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
    }

    /// Pauses the program: SIGSTOP to its process group, then waits until every thread of it
    /// has stopped. Its sockets stay open and the kernel keeps accepting connections for it,
    /// but nothing answers, like a process stuck in a long GC pause or a frozen VM.
    ///
    /// The wait matters: SIGSTOP wakes one thread, which then stops the others, and until it
    /// gets a CPU — tens of milliseconds on a loaded machine — the others keep serving
    /// requests sent after the signal.
    pub(crate) async fn pause(&self) -> Result<()> {
        let pid = self.signal(Signal::STOP)?;
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        while !all_threads_stopped(pid) {
            if Instant::now() >= deadline {
                bail!(
                    "{} did not stop within {PAUSE_TIMEOUT:?} of SIGSTOP",
                    self.name
                );
            }
            tokio::time::sleep(PAUSE_POLL).await;
        }
        Ok(())
    }

    /// Resumes a paused program: SIGCONT to its process group (the kernel wakes every thread
    /// before the call returns). A no-op for one that runs.
    pub(crate) fn resume(&self) -> Result<()> {
        self.signal(Signal::CONT).map(drop)
    }

    /// Sends `signal` to the running program's process group; returns the program's pid.
    fn signal(&self, signal: Signal) -> Result<Pid> {
        let state = self.lock();
        let State::Running(child) = &*state else {
            bail!("{} is not running", self.name);
        };
        let pid = i32::try_from(child.id())
            .ok()
            .and_then(Pid::from_raw)
            .with_context(|| format!("{} has no valid pid", self.name))?;
        rustix::process::kill_process_group(pid, signal)
            .with_context(|| format!("signalling {} ({signal:?})", self.name))?;
        tracing::debug!(name = self.name, ?signal, "signalled");
        Ok(pid)
    }

    /// Kills the program (SIGKILL to its process group) and reaps it. Blocking, but only for
    /// as long as the kernel takes to tear down a killed process.
    pub(crate) fn kill(&self) {
        if let State::Running(mut child) = std::mem::replace(&mut *self.lock(), State::Stopped) {
            signal_group(&child, Signal::KILL);
            let _ = child.wait();
        }
    }

    /// If the program exited by itself (not through `stop` or `kill`), how.
    pub(crate) fn exited(&self) -> Option<ExitStatus> {
        match *self.lock() {
            State::Exited(status) => Some(status),
            State::Stopped | State::Running(_) => None,
        }
    }

    /// Whether the program is running (started, not stopped, not exited).
    pub(crate) fn is_running(&self) -> bool {
        matches!(*self.lock(), State::Running(_))
    }

    /// The last lines of the log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        format!(
            "last {} lines of {}:\n{}",
            tail.len(),
            self.log.display(),
            tail.join("\n")
        )
    }

    /// Adds to an error from waiting on this program whether the program is still running
    /// and the end of its log.
    pub(crate) fn explain(&self, error: anyhow::Error) -> anyhow::Error {
        let state = match *self.lock() {
            State::Exited(status) => format!("{} exited ({status})", self.name),
            State::Running(_) => format!("{} is running", self.name),
            State::Stopped => format!("{} is stopped", self.name),
        };
        anyhow!("{error:#}\n{state}; {}", self.log_tail())
    }

    /// The state, first updated if the process has exited since the last look.
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let State::Running(child) = &mut *state
            && let Ok(Some(status)) = child.try_wait()
        {
            *state = State::Exited(status);
        }
        state
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `signal` to the child's process group (the child leads it: `process_group(0)`).
/// A group that is already gone is not an error.
fn signal_group(child: &Child, signal: Signal) {
    let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) else {
        return;
    };
    if let Err(error) = rustix::process::kill_process_group(pid, signal) {
        tracing::debug!(%error, ?signal, "signalling the process group");
    }
}

/// Whether every thread of process `pid` is stopped (state `T`, or `t` under a tracer), read
/// from `/proc/<pid>/task/*/stat`. A thread that exits meanwhile does not count.
fn all_threads_stopped(pid: Pid) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{}/task", pid.as_raw_nonzero())) else {
        return false;
    };
    threads.flatten().all(|thread| {
        let Ok(stat) = std::fs::read_to_string(thread.path().join("stat")) else {
            return true;
        };
        // `<tid> (<comm>) <state> ...`; comm may contain anything, so split at the last ')'.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        matches!(state, Some('T' | 't' | 'Z' | 'X'))
    })
}

/// Asks the kernel to SIGKILL the child when the thread that forked it exits.
fn die_with_parent(command: &mut Command) {
    let parent = rustix::process::getpid();
    let hook = move || -> io::Result<()> {
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
        // The parent may have died between fork and prctl; then nobody will ever send the
        // signal, so refuse to exec (spawn fails) instead of leaving an orphan behind.
        if rustix::process::getppid() != Some(parent) {
            return Err(io::Error::from_raw_os_error(
                rustix::io::Errno::SRCH.raw_os_error(),
            ));
        }
        Ok(())
    };
    // SAFETY: `pre_exec` is unsafe because the closure runs in the forked child of a
    // multi-threaded process, where only async-signal-safe operations are allowed. This one
    // makes two raw system calls (prctl, getppid) and compares integers: no allocation (io::Error
    // from an OS error code does not allocate), no locks, no access to other threads' state.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(hook);
    }
}

/// A spawn request for the spawner thread.
struct SpawnRequest {
    command: Command,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// The spawner thread's mailbox; the thread lives until the process exits, so the
/// parent-death signal of its children fires exactly when the process dies.
static SPAWNER: Mutex<Option<mpsc::Sender<SpawnRequest>>> = Mutex::new(None);

/// Spawns `command` on the spawner thread.
async fn spawn(command: Command) -> Result<Child> {
    let (reply, answer) = oneshot::channel();
    {
        let mut spawner = SPAWNER.lock().unwrap_or_else(PoisonError::into_inner);
        if spawner.is_none() {
            let (sender, requests) = mpsc::channel::<SpawnRequest>();
            std::thread::Builder::new()
                .name("envtest-spawner".into())
                .spawn(move || {
                    for SpawnRequest { mut command, reply } in requests {
                        let _ = reply.send(command.spawn());
                    }
                })
                .context("starting the spawner thread")?;
            *spawner = Some(sender);
        }
        let Some(sender) = spawner.as_ref() else {
            bail!("no spawner thread")
        };
        sender
            .send(SpawnRequest { command, reply })
            .map_err(|_| anyhow!("the spawner thread is gone"))?;
    }
    Ok(answer
        .await
        .map_err(|_| anyhow!("the spawner thread is gone"))??)
}
