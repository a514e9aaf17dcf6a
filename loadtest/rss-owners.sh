#!/usr/bin/env bash
# Resident memory of the owner metadata cache holding N pods (default 10000): starts a local
# control plane, creates N pods (each controlled by one of N/100 ReplicaSets, with the usual
# labels and a 1 KiB annotation, as a real pod's metadata carries) plus their ReplicaSets and
# Deployments, then starts a gateway with the cache off (--owners-resolve false) and one with it
# on (the default), each once ready: RSS, peak RSS (VmHWM) and gateway_owner_cache_objects.
# The difference of the two settled RSS is the cache's cost.
# Usage: loadtest/rss-owners.sh [N] — build first:
#   cargo build --release -p gateway -p gateway-envtest
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000}"
out=target/perf/rss-owners; mkdir -p "$out"
kubeconfig="$PWD/$out/kubeconfig"
source loadtest/local-plane.sh
kubectl=("$bin/kubectl" --kubeconfig "$kubeconfig")
"${kubectl[@]}" create namespace rss >/dev/null
python3 - "$n" > "$out/objects.yaml" <<'PY'
import json, sys
n = int(sys.argv[1]); sets = max(1, n // 100)
note = "x" * 1024
def ref(kind, api, name):
    return [{"apiVersion": api, "kind": kind, "name": name, "controller": True,
             "uid": "00000000-0000-0000-0000-%012d" % (hash(name) % 10**12)}]
template = {"metadata": {"labels": {"app": "w"}},
            "spec": {"containers": [{"name": "c", "image": "registry.example/c:1"}]}}
items = []
for s in range(sets):
    items.append({"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": f"w{s}"},
                  "spec": {"selector": {"matchLabels": {"app": "w"}}, "template": template}})
    items.append({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                  "metadata": {"name": f"w{s}-7d9f8", "ownerReferences": ref("Deployment", "apps/v1", f"w{s}")},
                  "spec": {"selector": {"matchLabels": {"app": "w"}}, "template": template}})
for i in range(n):
    s = i % sets
    items.append({"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": f"w{s}-7d9f8-{i:05d}", "labels": {"app": "w", "pod-template-hash": "7d9f8"},
                               "annotations": {"example.com/note": note},
                               "ownerReferences": ref("ReplicaSet", "apps/v1", f"w{s}-7d9f8")},
                  "spec": template["spec"]})
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
PY
echo "creating $n pods..."
"${kubectl[@]}" -n rss create -f "$out/objects.yaml" >/dev/null
"${kubectl[@]}" -n rss get pods --no-headers | wc -l
for resolve in false true; do
  echo "== owners.resolve=$resolve"
  "target/release/gateway" --listen 127.0.0.1:28080 --health-listen 127.0.0.1:28081 \
    --metrics-listen 127.0.0.1:29090 --peer-listen 127.0.0.1:0 --namespace rss --kubeconfig "$kubeconfig" --log-level warn \
    --owners-resolve "$resolve" &
  gw=$!
  until curl -sf http://127.0.0.1:28081/readyz >/dev/null; do sleep 0.2; done
  curl -s http://127.0.0.1:29090/metrics | grep -E '^(gateway_owner_cache_objects|process_resident_memory_bytes) '
  grep -E 'VmRSS|VmHWM' "/proc/$gw/status"
  sleep 30
  echo "settled after 30 s:"; grep -E 'VmRSS' "/proc/$gw/status"
  kill "$gw"; wait "$gw" 2>/dev/null || true; gw=
done
