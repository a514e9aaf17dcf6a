#!/usr/bin/env bash
# P95 at 100 signals/s with owner resolution on and off, on one control plane: every alert
# names a Pod that exists (an orphan, so the fingerprint, and the load tool's count check, stay
# the Pod's: resolution looks it up in the cache and finds it is its own top). Rounds alternate
# off / on; each round has its own run id, hence its own pods and RRs. Reports are written to
# target/perf/owners/<resolve>-<round>.json. The gateways run with --auth-mode none: this
# measures resolution, not sender authentication (PERF.md measures that on its own).
# Usage: loadtest/perf-owners.sh [rounds=2] [rate=100] — build first:
#   cargo build --release -p gateway -p gateway-envtest -p gateway-loadtest
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-2}"; rate="${2:-100}"
duration=30s; warmup=5s; pool=500
out=target/perf/owners; mkdir -p "$out"
kubeconfig="$PWD/$out/kubeconfig"
source loadtest/local-plane.sh
kubectl=("$bin/kubectl" --kubeconfig "$kubeconfig")
"${kubectl[@]}" create namespace loadtest >/dev/null
"${kubectl[@]}" create namespace loadtest-workloads >/dev/null
for round in $(seq 1 "$rounds"); do
  for resolve in false true; do
    run="o${round}${resolve:0:1}"
    python3 - "$run" "$pool" > "$out/pods-$run.yaml" <<'PY'
import json, sys
run, n = sys.argv[1], int(sys.argv[2])
items = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"lt-{run}-{i}"},
          "spec": {"containers": [{"name": "c", "image": "registry.example/c:1"}]}} for i in range(n)]
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
PY
    "${kubectl[@]}" -n loadtest-workloads create -f "$out/pods-$run.yaml" >/dev/null
    target/release/gateway --listen 127.0.0.1:28080 --health-listen 127.0.0.1:28081 \
      --metrics-listen 127.0.0.1:29090 --peer-listen 127.0.0.1:0 --namespace loadtest --kubeconfig "$kubeconfig" \
      --log-level warn --auth-mode none --owners-resolve "$resolve" 2> "$out/gateway-$run.log" &
    gw=$!
    until curl -sf http://127.0.0.1:28081/readyz >/dev/null; do sleep 0.2; done
    echo "== round $round, owners.resolve=$resolve (run $run)"
    target/release/gateway-loadtest --targets http://127.0.0.1:28080 \
      --metrics-targets http://127.0.0.1:29090 --kubeconfig "$kubeconfig" --namespace loadtest \
      --run-id "$run" --fingerprints "$pool" --rate "$rate" --duration "$duration" --warmup "$warmup" \
      --json "$out/$resolve-$round.json" | grep -E '^  all|writes:|calls by|count check|result:'
    curl -s http://127.0.0.1:29090/metrics | grep -E '^gateway_owner_(resolutions|fallbacks)_total' | grep -v ' 0$' || true
    kill "$gw"; wait "$gw" 2>/dev/null || true; gw=
  done
done
