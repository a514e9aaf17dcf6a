//! The report: every phase's results with their verdict, the gateway against the floor, and
//! the pass/fail of the run, printed as a table or written as JSON.

use serde::Serialize;

use crate::check::CountCheck;
use crate::results::{Mode, Percentiles, Phase, Processes, Stream, verdict};
use crate::scenario::{Scenario, StreamKind};

/// The gateway against the floor on one stream, all outcomes.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Which stream.
    pub stream: StreamKind,
    /// Gateway latencies.
    pub gateway: Percentiles,
    /// Floor latencies.
    pub floor: Percentiles,
    /// Gateway minus floor at P50, P95 and P99, ms.
    pub overhead_ms: [f64; 3],
    /// Gateway P95 / floor P95.
    pub ratio_p95: f64,
    /// Writes per signal, gateway and floor.
    pub writes_per_signal: (Option<f64>, Option<f64>),
}

/// Compares the gateway and floor phases stream by stream.
pub fn compare(gateway: &Phase, floor: &Phase) -> Vec<Comparison> {
    let per_signal = |p: &Phase| p.writes.as_ref().map(|w| w.per_signal);
    let writes_per_signal = (per_signal(gateway), per_signal(floor));
    let pair = |g: &Stream| {
        let f = floor.streams.iter().find(|f| f.stream == g.stream)?;
        let (gw, fl) = (g.all.percentiles(), f.all.percentiles());
        let overhead_ms = [gw.p50 - fl.p50, gw.p95 - fl.p95, gw.p99 - fl.p99];
        let ratio_p95 = if fl.p95 > 0.0 { gw.p95 / fl.p95 } else { 0.0 };
        let (stream, gateway, floor) = (g.stream, gw, fl);
        Some(Comparison {
            stream,
            gateway,
            floor,
            overhead_ms,
            ratio_p95,
            writes_per_signal,
        })
    };
    gateway.streams.iter().filter_map(pair).collect()
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// What was sent.
    pub scenario: Scenario,
    /// `self-start` or `targets`.
    pub environment: &'static str,
    /// Phases in the order they ran, each with its verdict.
    pub runs: Vec<Phase>,
    /// Gateway against floor, when both ran.
    pub comparison: Vec<Comparison>,
    /// True when no phase has a problem.
    pub passed: bool,
}

impl Report {
    /// Assembles the report: the verdict of every phase, and the comparison.
    pub fn new(scenario: Scenario, environment: &'static str, mut runs: Vec<Phase>) -> Self {
        for run in &mut runs {
            run.verdict = verdict(run, &scenario);
        }
        let find = |mode| runs.iter().find(|r| r.mode == mode);
        let comparison = match (find(Mode::Gateway), find(Mode::Floor)) {
            (Some(g), Some(f)) => compare(g, f),
            _ => Vec::new(),
        };
        let passed = runs.iter().all(|r| r.verdict.problems.is_empty());
        Report {
            scenario,
            environment,
            runs,
            comparison,
            passed,
        }
    }
}

/// The report as a text table.
impl std::fmt::Display for Report {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.scenario;
        let (duration, warmup) = (s.duration.as_secs_f64(), s.warmup.as_secs_f64());
        let (dup, events) = (s.duplicate_ratio * 100.0, s.event_share * 100.0);
        let (rate, fps, batch) = (s.rate, s.fingerprints, s.alerts_per_payload);
        let (seed, run) = (s.seed.unwrap_or_default(), s.run_id());
        write!(
            out,
            "scenario: rate {rate}/s for {duration:.1}s (+{warmup:.1}s warm-up), {fps} fingerprints, "
        )?;
        writeln!(
            out,
            "{dup:.0}% duplicates, {batch} alert(s)/payload, {events:.0}% Events, seed {seed}, run {run}"
        )?;
        if s.redeliveries > 0.0 {
            let share = s.redeliveries * 100.0;
            writeln!(
                out,
                "redeliveries: {share:.0}% of requests sent twice (half at once, half after the answer)"
            )?;
        }
        if s.storm_rate > 0.0 {
            let (rate, fps) = (s.storm_rate, s.storm_fingerprints);
            let (secs, start) = (s.storm_duration.as_secs_f64(), s.storm_start.as_secs_f64());
            writeln!(
                out,
                "storm: {rate}/s for {secs:.1}s on {fps} fingerprints, from {start:.1}s after warm-up"
            )?;
        }
        writeln!(out, "environment: {}", self.environment)?;
        for r in &self.runs {
            render_run(out, r)?;
        }
        if !self.comparison.is_empty() {
            writeln!(out, "\n== gateway vs floor (all outcomes, ms) ==")?;
            writeln!(
                out,
                "stream      gw p50    fl p50    gw p95    fl p95    gw p99    fl p99    p95 x"
            )?;
            for c in &self.comparison {
                let (g, f) = (&c.gateway, &c.floor);
                let cells = [g.p50, f.p50, g.p95, f.p95, g.p99, f.p99].map(|v| format!("{v:>9.2}"));
                let (stream, ratio) = (c.stream.label(), c.ratio_p95);
                writeln!(out, "{stream:<8} {} {ratio:>8.2}", cells.join(" "))?;
                let [p50, p95, p99] = c.overhead_ms;
                let overhead = format!("p50 {p50:+.2} ms, p95 {p95:+.2} ms, p99 {p99:+.2} ms");
                writeln!(out, "         overhead: {overhead}")?;
            }
        }
        writeln!(
            out,
            "\nresult: {}",
            if self.passed { "PASS" } else { "FAIL" }
        )
    }
}

fn render_run(out: &mut std::fmt::Formatter<'_>, r: &Phase) -> std::fmt::Result {
    match r.mode {
        Mode::Gateway => writeln!(out, "\n== gateway x{} ==", r.replicas)?,
        Mode::Floor => writeln!(out, "\n== floor (direct Kubernetes writes) ==")?,
    }
    for st in &r.streams {
        let lag = st.send_lag.percentiles();
        let used = st
            .fingerprints_used
            .map(|n| format!("; {n} fingerprints used"));
        let (label, scheduled, achieved) = (st.stream.label(), st.scheduled_rate, st.achieved_rate);
        let (due, sent, dropped) = (st.due, st.sent, st.dropped);
        write!(
            out,
            "[{label}] scheduled {scheduled:.0}/s, achieved {achieved:.1}/s; "
        )?;
        write!(out, "due {due}, sent {sent}, dropped {dropped}; ")?;
        let (p99, max, used) = (lag.p99, lag.max, used.unwrap_or_default());
        writeln!(out, "send lag p99 {p99:.2} ms, max {max:.2} ms{used}")?;
        writeln!(
            out,
            "  outcome       count      p50      p90      p95      p99    p99.9      max"
        )?;
        let rows = st.outcomes.iter().map(|(o, h)| (o.label(), h));
        for (label, h) in rows.chain([("all", &st.all), ("(service)", &st.service)]) {
            let p = h.percentiles();
            let cells = [p.p50, p.p90, p.p95, p.p99, p.p999, p.max].map(|v| format!("{v:>8.2}"));
            writeln!(out, "  {label:<10} {:>8} {}", p.count, cells.join(" "))?;
        }
    }
    let s = &r.signals;
    let (sent, created, duplicate) = (s.sent, s.created, s.duplicate);
    let (share, rejected, failed) = (s.duplicate_share() * 100.0, s.rejected, s.failed);
    write!(
        out,
        "signals: {sent} sent, {created} created, {duplicate} duplicate ({share:.1}% of accepted), "
    )?;
    writeln!(out, "{rejected} rejected, {failed} failed")?;
    let resent = &r.redeliveries;
    if resent.requests > 0 {
        let (requests, signals, same) = (resent.requests, resent.signals, resent.same_answer);
        write!(
            out,
            "redeliveries: {requests} requests resent verbatim; of {signals} signals recorded the first time, "
        )?;
        writeln!(
            out,
            "{same} answered with the ordinal they repeat, {} otherwise",
            resent.mismatches
        )?;
        for example in &resent.examples {
            writeln!(out, "  {example}")?;
        }
    }
    let pairs = |m: &mut dyn Iterator<Item = String>| m.collect::<Vec<_>>().join(" ");
    let requests = pairs(&mut r.requests.iter().map(|(k, v)| format!("{}={v}", k.label())));
    writeln!(out, "requests (warm-up included): {requests}")?;
    if let Some(w) = &r.writes {
        let (writes, signals, per_signal, source) = (w.writes, w.signals, w.per_signal, &w.source);
        writeln!(
            out,
            "kubernetes writes: {writes:.0} for {signals} signals = {per_signal:.3} per signal ({source})"
        )?;
        if !w.by_verb_outcome.is_empty() {
            let calls = pairs(&mut w.by_verb_outcome.iter().map(|(k, v)| format!("{k}={v:.0}")));
            writeln!(out, "  calls by verb/outcome: {calls}")?;
        }
        if !w.k8s_call_mean_ms.is_empty() {
            let means = pairs(
                &mut w
                    .k8s_call_mean_ms
                    .iter()
                    .map(|(k, v)| format!("{k}={v:.2}")),
            );
            writeln!(out, "  gateway-side mean call time, ms: {means}")?;
        }
        if !w.forward_ms.is_empty() {
            let hop = pairs(&mut w.forward_ms.iter().map(|(k, v)| format!("{k}={v:.2}")));
            writeln!(out, "  forward to the owner, ms: {hop}")?;
        }
    }
    match &r.count_check {
        CountCheck::Done(c) => {
            let verdict = if c.mismatches == 0 {
                "exact"
            } else {
                "MISMATCH"
            };
            let (fps, rrs, storm, mismatches) =
                (c.fingerprints, c.rrs, c.rrs_in_storm, c.mismatches);
            write!(
                out,
                "count check: {verdict} — {fps} fingerprints, {rrs} RRs ({storm} in a storm), {mismatches} mismatches"
            )?;
            match c.fingerprints_skipped {
                0 => writeln!(out)?,
                n => writeln!(
                    out,
                    "; {n} fingerprints not compared (some of their signals failed)"
                )?,
            }
            for e in &c.examples {
                writeln!(out, "  {e}")?;
            }
        }
        CountCheck::Skipped { reason } => writeln!(out, "count check: skipped ({reason})")?,
        CountCheck::Failed { reason } => writeln!(out, "count check: FAILED ({reason})")?,
    }
    if let Some(m) = &r.process {
        writeln!(out, "gateway RSS: {} ({})", figures(m, None), m.source)?;
    }
    if let Some(m) = &r.control_plane {
        writeln!(
            out,
            "control plane RSS: {} ({})",
            figures(m, Some(s.sent)),
            m.source
        )?;
    }
    if let Some(ms) = r.storm_staleness_ms {
        let what = "from the last response until every RR's storm block matched its history";
        writeln!(out, "storm status staleness: {ms:.0} ms {what}")?;
    }
    for (d, n) in &r.failures {
        writeln!(out, "failure x{n}: {d}")?;
    }
    for w in &r.verdict.warnings {
        writeln!(out, "warning: {w}")?;
    }
    for p in &r.verdict.problems {
        writeln!(out, "PROBLEM: {p}")?;
    }
    Ok(())
}

/// `a, b MiB, peak c, d MiB; CPU e, f s`, with the CPU per signal when `signals` is given.
fn figures(m: &Processes, signals: Option<u64>) -> String {
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format!("{} MiB", list(&m.rss_mib));
    if !m.peak_mib.is_empty() {
        out += &format!(", peak {} MiB", list(&m.peak_mib));
    }
    if !m.cpu_seconds.is_empty() {
        out += &format!("; CPU {} s", list(&m.cpu_seconds));
    }
    if let Some(n) = signals.filter(|n| *n > 0 && !m.cpu_seconds.is_empty()) {
        let per = m.cpu_seconds.iter().sum::<f64>() * 1e6 / n as f64;
        out += &format!(" = {per:.0} µs per signal");
    }
    out
}
