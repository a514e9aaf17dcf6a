#!/usr/bin/env bash
# Peak resident memory of a gateway fed the amplification body: ~200 KiB of
# commonAnnotations and A tiny alerts on distinct pods (default 400, under the 500-alert cap;
# 700 is answered 413 by the cap before any alert is built), sent R times (default 200), C at
# a time (default 8). Each alert would carry the common annotations into its own RR; the
# gateway must answer 400 (every alert over api.max_signal_bytes) without holding them.
# Starts a local control plane and the gateway with --auth-mode none (the bound under test is
# the body's, not the sender's). Prints the answers and VmRSS/VmHWM before and after.
# Usage: loadtest/rss-amplification.sh [A] [R] [C] [gateway-binary]
# Build first: cargo build --release -p gateway -p gateway-envtest
set -euo pipefail
cd "$(dirname "$0")/.."
alerts="${1:-400}"; rounds="${2:-200}"; parallel="${3:-8}"; gateway="${4:-target/release/gateway}"
out=target/perf/amplification; mkdir -p "$out"
kubeconfig="$PWD/$out/kubeconfig"
source loadtest/local-plane.sh
"$bin/kubectl" --kubeconfig "$kubeconfig" create namespace amp >/dev/null
python3 - "$alerts" > "$out/body.json" <<'PY'
import json, sys, datetime
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
n = int(sys.argv[1])
print(json.dumps({
    "version": "4", "status": "firing", "receiver": "gateway", "groupKey": "{}:{}",
    "commonLabels": {"alertname": "Amplified", "namespace": "amp", "severity": "warning"},
    "commonAnnotations": {"runbook": "r" * (200 * 1024)},
    "alerts": [{"status": "firing", "labels": {"pod": f"p{i}"}, "startsAt": now} for i in range(n)],
}, separators=(",", ":")))
PY
echo "body: $(wc -c < "$out/body.json") bytes, $alerts alerts"
"$gateway" --listen 127.0.0.1:28180 --health-listen 127.0.0.1:28181 \
  --metrics-listen 127.0.0.1:29190 --peer-listen 127.0.0.1:0 --namespace amp --kubeconfig "$kubeconfig" \
  --auth-mode none --log-level error &
gw=$!
until curl -sf http://127.0.0.1:28181/readyz >/dev/null; do sleep 0.2; done
echo "before:"; grep -E 'VmRSS|VmHWM' "/proc/$gw/status"
seq "$rounds" | xargs -P "$parallel" -I{} curl -s -o /dev/null -w '%{http_code}\n' \
  -H 'Content-Type: application/json' --data-binary @"$out/body.json" \
  http://127.0.0.1:28180/api/v1/signals/prometheus | sort | uniq -c
echo "after $rounds bodies, $parallel at a time:"; grep -E 'VmRSS|VmHWM' "/proc/$gw/status"
echo "RRs created: $("$bin/kubectl" --kubeconfig "$kubeconfig" -n amp get remediationrequests --no-headers 2>/dev/null | wc -l)"
