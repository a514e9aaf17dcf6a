//! One reader of `/proc` for process figures: the gateway's own `/metrics` uses it for itself,
//! the load tool for the gateway and control-plane processes it measures.

/// What `/proc` says about one process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// Resident set (`VmRSS`), bytes.
    pub resident_bytes: u64,
    /// Peak resident set (`VmHWM`), bytes.
    pub peak_resident_bytes: u64,
    /// User + system CPU seconds.
    pub cpu_seconds: f64,
}

/// Clock ticks per second of `/proc/<pid>/stat` times. Linux fixes `USER_HZ` at 100 on every
/// architecture the gateway ships for; reading `sysconf` would need libc.
const TICKS_PER_SECOND: f64 = 100.0;

impl Usage {
    /// The figures of `pid`, or of this process when `None`; `None` when `/proc` is missing
    /// (not Linux) or the process is gone.
    pub fn read(pid: Option<u32>) -> Option<Usage> {
        let dir = match pid {
            Some(pid) => format!("/proc/{pid}"),
            None => "/proc/self".to_owned(),
        };
        let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
        let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
        let (resident_bytes, peak_resident_bytes) = parse_status(&status)?;
        Some(Usage {
            resident_bytes,
            peak_resident_bytes,
            cpu_seconds: parse_stat(&stat)?,
        })
    }

    /// CPU seconds of `pid` alone (one read instead of two).
    pub fn cpu_seconds(pid: u32) -> Option<f64> {
        parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }
}

/// User + system CPU seconds from the text of `/proc/<pid>/stat`.
pub fn parse_stat(text: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    // After the name, field 3 (state) comes first; utime and stime are fields 14 and 15.
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / TICKS_PER_SECOND)
}

/// `(VmRSS, VmHWM)` in bytes from the text of `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kb * 1024)
        })
    };
    Some((field("VmRSS")?, field("VmHWM")?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stat_with_spaces_and_parentheses_in_the_name() {
        let text = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0";
        assert_eq!(parse_stat(text), Some(3.0));
    }

    #[test]
    fn status_fields_in_bytes() {
        let text = "Name:\tgateway\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_status(text), Some((1024 * 1024, 2048 * 1024)));
    }

    #[test]
    fn this_process_is_readable() {
        let usage = Usage::read(None).unwrap();
        assert!(usage.resident_bytes > 0);
        assert!(usage.peak_resident_bytes >= usage.resident_bytes);
    }
}
