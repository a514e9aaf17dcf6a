//! The command line as a user types it: the options, the gateway's duration syntax, and the
//! scenario they resolve to (defaults, streams, rejections).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use clap::Parser;
use gateway_loadtest::cli::Args;
use gateway_loadtest::scenario::{Route, Scenario, StreamKind, auto_pool};

fn parse(argv: &str) -> Result<Args, clap::Error> {
    Args::try_parse_from(std::iter::once("gateway-loadtest").chain(argv.split_whitespace()))
}

fn resolved(argv: &str) -> anyhow::Result<Scenario> {
    parse(argv)?.scenario.resolve()
}

fn ok(argv: &str) -> Scenario {
    resolved(argv).unwrap_or_else(|e| panic!("{argv}: {e}"))
}

#[test]
fn durations_use_the_gateways_parser() {
    let warmup = |d: &str| {
        parse(&format!("--warmup={d}"))
            .map(|a| a.scenario.warmup)
            .ok()
    };
    assert_eq!(warmup("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(warmup("1500ms"), Some(Duration::from_millis(1500)));
    assert_eq!(warmup("10s"), Some(Duration::from_secs(10)));
    assert_eq!(warmup("2m"), Some(Duration::from_secs(120)));
    assert_eq!(warmup("1h"), Some(Duration::from_secs(3600)));
    assert_eq!(warmup("0s"), Some(Duration::ZERO));
    for bad in ["10x", "s", "", "1.5s", "3"] {
        assert_eq!(warmup(bad), None, "{bad:?} accepted");
    }
}

#[test]
fn floor_and_compare_exclude_each_other() {
    assert!(parse("--floor --compare").is_err());
    assert!(parse("--compare").is_ok_and(|a| a.compare && !a.floor));
    assert!(parse("--threads 0").is_err());
    assert!(parse("--max-in-flight 0").is_err());
}

#[test]
fn defaults_resolve() {
    let s = ok("--seed 42");
    assert_eq!(s.run_id().len(), 6);
    // 35 s × 100/s × 10 % new = 350, plus margin.
    assert_eq!(s.fingerprints, 485);
    assert_eq!(s.storm_fingerprints, 0);
    assert_eq!(s.streams().len(), 1);
    assert_eq!(s.length(), Duration::from_secs(35));
}

#[test]
fn storm_only() {
    let s = ok("--rate 0 --storm-rate 2000 --storm-duration 10s --storm-fingerprints 100");
    let streams = s.streams();
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].0, StreamKind::Storm);
    assert_eq!(streams[0].1.total_ticks(), 20_000);
    assert_eq!(s.pool(), s.fingerprints + 100);
    assert_eq!(s.length(), Duration::from_secs(10));
}

#[test]
fn storm_alongside_steady_starts_after_warmup() {
    let s = ok("--rate 100 --warmup 2s --duration 20s --storm-rate 500 --storm-start 5s");
    let streams = s.streams();
    assert_eq!(streams[1].1.start, Duration::from_secs(7));
    assert_eq!(s.length(), Duration::from_secs(22));
}

#[test]
fn rejects_bad_options() {
    for bad in [
        "--duplicate-ratio 1.5",
        "--rate 0",
        "--alerts-per-payload 0",
        "--event-share=-0.1",
        "--redeliveries 1.5",
        "--redeliveries=-0.1",
        "--run-id Bad_Id",
        "--rate 0 --storm-rate 10 --storm-fingerprints 0",
    ] {
        assert!(resolved(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn auto_pool_covers_new_fingerprints() {
    let pool = |rate, secs, batch, events, ratio| {
        auto_pool(rate, Duration::from_secs(secs), batch, events, ratio)
    };
    assert_eq!(pool(1000.0, 60, 1, 0.0, 0.9), 6700);
    assert_eq!(pool(100.0, 10, 1, 0.0, 1.0), 100);
    // Batches of 4, a quarter of requests on the Event route: 3.25 signals per request.
    assert_eq!(pool(100.0, 10, 4, 0.25, 0.0), 3675);
}

#[test]
fn storm_stays_in_its_pool() {
    let s = ok("--rate 0 --storm-rate 10 --storm-fingerprints 100 --fingerprints 1000 --seed 5");
    let (_, _, mut g) = s.streams().remove(0);
    let mut firsts = 0;
    for _ in 0..5000 {
        let r = g.next_request();
        assert_eq!(r.route, Route::Alertmanager);
        let s = r.signals[0];
        assert!((1000..1100).contains(&s.fp));
        firsts += usize::from(s.first);
    }
    assert_eq!(firsts, 100);
}

#[test]
fn event_share_and_batch_size() {
    let s = ok("--fingerprints 1000000 --alerts-per-payload 3 --event-share 0.25 --seed 9");
    let (_, _, mut g) = s.streams().remove(0);
    let n = 20_000;
    let mut events = 0;
    for _ in 0..n {
        let r = g.next_request();
        match r.route {
            Route::Event => {
                events += 1;
                assert_eq!(r.signals.len(), 1);
            }
            Route::Alertmanager => assert_eq!(r.signals.len(), 3),
        }
    }
    let share = events as f64 / n as f64;
    assert!((share - 0.25).abs() < 0.02, "event share {share}");
}
