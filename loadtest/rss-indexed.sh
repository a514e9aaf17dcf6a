#!/usr/bin/env bash
# Resident memory of a gateway that has listed and indexed N RemediationRequests (default
# 100000): starts a local control plane, creates the RRs directly, starts a gateway, waits
# until it is ready (its first list done) and reads its RSS, its peak RSS (VmHWM: the first
# list's decoding included) and its index size; 30 s later it reads the settled RSS.
# Usage: loadtest/rss-indexed.sh [N] [gateway-binary ...] — with several binaries (an A/B of
# two builds), each is measured in turn against the same RRs (default target/release/gateway).
# Build first: cargo build --release -p gateway -p gateway-envtest --example preload_rrs
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"
shift || true
bins=("$@"); [[ ${#bins[@]} -eq 0 ]] && bins=(target/release/gateway)
out=target/perf/rss; mkdir -p "$out"
kubeconfig="$PWD/$out/kubeconfig"
source loadtest/local-plane.sh
"$bin/kubectl" --kubeconfig "$kubeconfig" create namespace rss >/dev/null
target/release/examples/preload_rrs "$kubeconfig" rss "$n" 32
for gateway in "${bins[@]}"; do
  echo "== $gateway"
  start=$(date +%s.%N)
  "$gateway" --listen 127.0.0.1:28080 --health-listen 127.0.0.1:28081 \
    --metrics-listen 127.0.0.1:29090 --peer-listen 127.0.0.1:0 --namespace rss --kubeconfig "$kubeconfig" --log-level warn &
  gw=$!
  until curl -sf http://127.0.0.1:28081/readyz >/dev/null; do sleep 0.2; done
  echo "ready after $(echo "$(date +%s.%N) - $start" | bc) s"
  curl -s http://127.0.0.1:29090/metrics | grep -E '^(gateway_index_entries|process_resident_memory_bytes) '
  grep -E 'VmRSS|VmHWM' "/proc/$gw/status"
  sleep 30
  echo "settled after 30 s:"; grep -E 'VmRSS' "/proc/$gw/status"
  kill "$gw"; wait "$gw" 2>/dev/null || true; gw=
done
