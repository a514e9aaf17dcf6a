#!/usr/bin/env python3
"""Prints PERF.md table rows from gateway-loadtest JSON reports (target/perf/*.json).

Usage: loadtest/perf-table.py target/perf/steady100-*.json
One row per run and mode (gateway, floor): achieved rate, P50/P95/P99 of all outcomes (ms),
non-2xx answers, Kubernetes writes per signal, kube-apiserver + etcd CPU seconds per 1000
signals, gateway CPU seconds per 1000 signals.
"""
import json
import sys

print("| report | mode | achieved/s | P50 / P95 / P99 ms | non-2xx | writes/signal | control-plane CPU s /1000 signals | gateway CPU s /1000 |")
print("|---|---|---|---|---|---|---|---|")
for path in sys.argv[1:]:
    report = json.load(open(path))
    name = path.rsplit("/", 1)[-1].removesuffix(".json")
    for run in report["runs"]:
        streams = run["streams"]
        rate = sum(s["achieved_rate"] for s in streams)
        every = [s["all"] for s in streams]
        pct = " / ".join(f"{max(a[p] for a in every):.1f}" for p in ("p50", "p95", "p99"))
        non_2xx = sum(c for code, c in run["requests"].items() if not code.startswith("2"))
        signals = run["signals"]["sent"]
        writes = run.get("writes") or {}
        per_signal = writes.get("per_signal")
        plane = run.get("control_plane") or {}
        plane_cpu = sum(plane.get("cpu_seconds") or [])
        process = run.get("process") or {}
        gateway_cpu = sum(process.get("cpu_seconds") or [])
        per_k = lambda seconds: f"{1000 * seconds / signals:.2f}" if seconds and signals else "—"
        print(
            f"| `{name}` | {run['mode']} | {rate:.0f} | {pct} | {non_2xx} | "
            f"{per_signal:.3f} | {per_k(plane_cpu)} | {per_k(gateway_cpu)} |"
            if per_signal is not None
            else f"| `{name}` | {run['mode']} | {rate:.0f} | {pct} | {non_2xx} | — | {per_k(plane_cpu)} | {per_k(gateway_cpu)} |"
        )
