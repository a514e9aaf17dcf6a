//! The fault commands of `gateway-envtest up --control`: one command per line, parsed into a
//! [`Command`] and run against the [`ControlPlane`] with [`run`]. Kept in the library, next to
//! the hooks they call, so that the syntax is tested without a process.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use crate::ControlPlane;
use crate::proxy::Fault;

/// The command syntax, for `--help`.
pub const HELP: &str = "\
Control commands (with --control; one per line, each answered by one line on stdout, and on
the socket it came from: `ok <command>[: detail]` or `error <command>: <reason>`):
  latency <duration>       delay every chunk through the proxy, both ways (e.g. 500ms, 1.5s)
  blackhole                forward nothing, both ways, keeping connections open
  reset                    reset every proxied connection (RST), and new ones at once
  clear                    remove the proxy fault
  pause apiserver|etcd     SIGSTOP the program
  resume apiserver|etcd    SIGCONT the program
  stop apiserver|etcd      stop the program (SIGTERM, then SIGKILL), keeping its data
  start apiserver|etcd     start it again and wait until it is ready
  compact                  compact etcd to its current revision (detail: the revision)
  expire-watch-history     stop kube-apiserver, write and compact etcd, start it again:
                           every watch resuming from an earlier resourceVersion gets 410
  help                     list the commands
The proxy faults (latency, blackhole, reset, clear) need --proxy.";

/// The answer to `help`: one line, like every answer.
const SUMMARY: &str = "latency <duration> | blackhole | reset | clear | \
pause|resume|stop|start apiserver|etcd | compact | expire-watch-history | help";

/// One of the two programs of a control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// kube-apiserver.
    Apiserver,
    /// etcd.
    Etcd,
}

/// A control command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Set the proxy's fault ([`ControlPlane::fault`]); `clear` is [`Fault::None`].
    Fault(Fault),
    /// [`ControlPlane::pause_apiserver`] / [`ControlPlane::pause_etcd`].
    Pause(Program),
    /// [`ControlPlane::resume_apiserver`] / [`ControlPlane::resume_etcd`].
    Resume(Program),
    /// [`ControlPlane::stop_apiserver`] / [`ControlPlane::stop_etcd`].
    Stop(Program),
    /// [`ControlPlane::start_apiserver`] / [`ControlPlane::start_etcd`].
    Start(Program),
    /// [`ControlPlane::compact_etcd`].
    Compact,
    /// [`ControlPlane::expire_watch_history`].
    ExpireWatchHistory,
    /// List the commands.
    Help,
}

impl FromStr for Command {
    type Err = anyhow::Error;

    fn from_str(line: &str) -> Result<Self> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let command = match words.as_slice() {
            ["latency", duration] => Command::Fault(Fault::Latency(parse_duration(duration)?)),
            ["blackhole"] => Command::Fault(Fault::Blackhole),
            ["reset"] => Command::Fault(Fault::Reset),
            ["clear"] => Command::Fault(Fault::None),
            ["pause", program] => Command::Pause(program.parse()?),
            ["resume", program] => Command::Resume(program.parse()?),
            ["stop", program] => Command::Stop(program.parse()?),
            ["start", program] => Command::Start(program.parse()?),
            ["compact"] => Command::Compact,
            ["expire-watch-history"] => Command::ExpireWatchHistory,
            ["help"] => Command::Help,
            _ => bail!("unknown command (try `help`)"),
        };
        Ok(command)
    }
}

impl FromStr for Program {
    type Err = anyhow::Error;

    fn from_str(word: &str) -> Result<Self> {
        match word {
            "apiserver" | "kube-apiserver" => Ok(Program::Apiserver),
            "etcd" => Ok(Program::Etcd),
            _ => bail!("unknown program {word:?} (apiserver or etcd)"),
        }
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Program::Apiserver => "apiserver",
            Program::Etcd => "etcd",
        })
    }
}

/// `<number><unit>` with unit `ms` or `s` (the number may have a fraction: `1.5s`).
fn parse_duration(text: &str) -> Result<Duration> {
    let invalid = || anyhow!("invalid duration {text:?} (e.g. 250ms, 2s)");
    let (number, seconds_per_unit) = if let Some(number) = text.strip_suffix("ms") {
        (number, 0.001)
    } else if let Some(number) = text.strip_suffix('s') {
        (number, 1.0)
    } else {
        return Err(invalid());
    };
    let number: f64 = number.parse().map_err(|_| invalid())?;
    Duration::try_from_secs_f64(number * seconds_per_unit).map_err(|_| invalid())
}

/// Runs `command`; the answer is a detail for the acknowledgement (may be empty).
pub async fn run(control_plane: &ControlPlane, command: Command) -> Result<String> {
    match command {
        Command::Fault(fault) => control_plane.fault(fault).map(|()| String::new()),
        Command::Pause(Program::Apiserver) => control_plane
            .pause_apiserver()
            .await
            .map(|()| String::new()),
        Command::Pause(Program::Etcd) => control_plane.pause_etcd().await.map(|()| String::new()),
        Command::Resume(Program::Apiserver) => {
            control_plane.resume_apiserver().map(|()| String::new())
        }
        Command::Resume(Program::Etcd) => control_plane.resume_etcd().map(|()| String::new()),
        Command::Stop(Program::Apiserver) => {
            control_plane.stop_apiserver().await.map(|()| String::new())
        }
        Command::Stop(Program::Etcd) => control_plane.stop_etcd().await.map(|()| String::new()),
        Command::Start(Program::Apiserver) => control_plane
            .start_apiserver()
            .await
            .map(|()| String::new()),
        Command::Start(Program::Etcd) => control_plane.start_etcd().await.map(|()| String::new()),
        Command::Compact => control_plane
            .compact_etcd()
            .await
            .map(|revision| format!("revision {revision}")),
        Command::ExpireWatchHistory => control_plane
            .expire_watch_history()
            .await
            .map(|revision| format!("revision {revision}")),
        Command::Help => Ok(SUMMARY.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn commands_parse() {
        let parse = |line: &str| line.parse::<Command>().unwrap();
        assert_eq!(
            parse("latency 500ms"),
            Command::Fault(Fault::Latency(Duration::from_millis(500)))
        );
        assert_eq!(
            parse("  latency 1.5s "),
            Command::Fault(Fault::Latency(Duration::from_millis(1500)))
        );
        assert_eq!(parse("blackhole"), Command::Fault(Fault::Blackhole));
        assert_eq!(parse("reset"), Command::Fault(Fault::Reset));
        assert_eq!(parse("clear"), Command::Fault(Fault::None));
        assert_eq!(parse("pause apiserver"), Command::Pause(Program::Apiserver));
        assert_eq!(parse("resume etcd"), Command::Resume(Program::Etcd));
        assert_eq!(
            parse("stop kube-apiserver"),
            Command::Stop(Program::Apiserver)
        );
        assert_eq!(parse("start etcd"), Command::Start(Program::Etcd));
        assert_eq!(parse("compact"), Command::Compact);
        assert_eq!(parse("expire-watch-history"), Command::ExpireWatchHistory);
        assert_eq!(parse("help"), Command::Help);
    }

    #[test]
    fn mistakes_are_refused() {
        for line in [
            "",
            "latency",
            "latency 5",
            "latency -1s",
            "latency fast",
            "pause",
            "pause kubelet",
            "blackhole now",
        ] {
            assert!(line.parse::<Command>().is_err(), "{line:?} was accepted");
        }
    }
}
