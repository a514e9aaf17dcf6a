//! Memory of the dedup index: resident set before and after indexing N RemediationRequests
//! shaped like the gateway's own (deterministic names, one occurrence each, or a full storm
//! history with `--storm`). Run: `cargo run --release --example index_memory -- 100000`.

use gateway::index::Index;

#[path = "support/pod_rr.rs"]
mod pod_rr;

fn resident_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let storm = args.iter().any(|a| a == "--storm");
    println!(
        "size_of: RrState {} B, History {} B, Timestamp {} B",
        std::mem::size_of::<gateway::index::RrState>(),
        std::mem::size_of::<gateway::k8s::history::History>(),
        std::mem::size_of::<jiff::Timestamp>()
    );
    let before = resident_mib();
    let index = Index::new();
    for i in 0..n {
        // Arrivals up to the RR's last occurrence (now), one second apart, as a storm leaves.
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let arrivals = if storm { 64 } else { 1 };
        let recent: Vec<i64> = (0..arrivals).rev().map(|k| now_ms - 1000 * k).collect();
        let (_, rr) = pod_rr::pod_rr(&format!("api-{i}"), recent, Some(i as u64 + 1));
        index.apply(&rr);
    }
    let after = resident_mib();
    println!(
        "{n} RRs indexed ({} history): RSS {before:.1} MiB -> {after:.1} MiB ({:.0} bytes per RR)",
        if storm { "64-entry" } else { "1-entry" },
        (after - before) * 1024.0 * 1024.0 / n as f64
    );
    assert_eq!(index.len(), n);
}
