//! The report as a reader gets it: the verdict of each phase, the text table, the comparison
//! of the gateway with the floor, and the JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use std::time::Duration;

use gateway_loadtest::check::{CountCheck, Counts};
use gateway_loadtest::report::Report;
use gateway_loadtest::results::{
    Completion, Mode, Outcome, Phase, Processes, SignalResult, SignalStatus, Stream,
};
use gateway_loadtest::scenario::{Scenario, StreamKind};

fn scenario() -> Scenario {
    let args = gateway_loadtest::cli::Args::try_parse_from(["x", "--seed", "1"]);
    args.unwrap().scenario.resolve().unwrap()
}

fn sample_run(mode: Mode, latency_ms: u64, outcome: Outcome) -> Phase {
    let mut phase = Phase::new(mode, 1, vec![Stream::new(StreamKind::Steady, 100.0)]);
    let failure = outcome.is_failure();
    let status = if failure {
        SignalStatus::Failed
    } else {
        SignalStatus::Duplicate
    };
    let signals = vec![SignalResult::new(0, status, Some(2), Some("rr".into()))];
    let detail = failure.then(|| "503 Service Unavailable".to_owned());
    let c = Completion {
        outcome,
        signals,
        detail,
        writes: 1,
        redelivery: None,
    };
    let latency = Duration::from_millis(latency_ms);
    for _ in 0..100 {
        phase.record(StreamKind::Steady, true, 0, latency, latency, &c);
    }
    phase
}

#[test]
fn server_errors_fail_the_run() {
    let report = Report::new(
        scenario(),
        "targets",
        vec![sample_run(Mode::Gateway, 5, Outcome::ServerError)],
    );
    assert!(!report.passed);
    let problems = &report.runs[0].verdict.problems;
    assert!(problems.iter().any(|p| p.contains("5xx")), "{problems:?}");
    let text = report.to_string();
    assert!(text.contains("PROBLEM: 100 requests ended 5xx"), "{text}");
    assert!(
        text.contains("failure x100: 503 Service Unavailable"),
        "{text}"
    );
    assert!(text.ends_with("result: FAIL\n"), "{text}");
}

#[test]
fn comparison_and_json() {
    let mut g = sample_run(Mode::Gateway, 6, Outcome::Duplicate);
    g.count_check = CountCheck::Done(Counts {
        fingerprints: 1,
        rrs: 1,
        ..Counts::default()
    });
    g.control_plane = Some(Processes {
        source: "cp".into(),
        rss_mib: vec![300.0, 50.0],
        peak_mib: vec![310.0, 60.0],
        cpu_seconds: vec![0.1, 0.1],
    });
    let f = sample_run(Mode::Floor, 4, Outcome::Duplicate);
    let report = Report::new(scenario(), "self-start", vec![g, f]);
    assert!(report.passed);
    assert_eq!(report.comparison.len(), 1);
    let c = &report.comparison[0];
    assert!((c.overhead_ms[1] - 2.0).abs() < 0.01, "{c:?}");
    assert!((c.ratio_p95 - 1.5).abs() < 0.01, "{c:?}");
    let text = report.to_string();
    assert!(text.contains("== gateway x1 =="), "{text}");
    assert!(
        text.contains("== floor (direct Kubernetes writes) =="),
        "{text}"
    );
    assert!(text.contains("count check: exact"), "{text}");
    assert!(
        text.contains("overhead: p50 +2.00 ms, p95 +2.00 ms"),
        "{text}"
    );
    assert!(
        text.contains("; CPU 0.1, 0.1 s = 2000 µs per signal (cp)"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap_or_default();
    assert_eq!(json["runs"][0]["count_check"]["status"], "done");
    assert_eq!(json["runs"][1]["count_check"]["status"], "skipped");
    assert_eq!(
        json["runs"][0]["streams"][0]["outcomes"]["202"]["count"],
        100
    );
    assert_eq!(json["runs"][0]["requests"]["202"], 100);
    assert_eq!(json["runs"][0]["mode"], "gateway");
    assert_eq!(json["runs"][0]["problems"], serde_json::json!([]));
    assert_eq!(json["scenario"]["duration"], 30.0);
    assert_eq!(json["passed"], true);
}
