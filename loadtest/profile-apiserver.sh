#!/usr/bin/env bash
# Where the CPU goes under load: runs a local control plane, one gateway and the load tool
# against it, takes a 15 s CPU profile of kube-apiserver (its built-in /debug/pprof) and of the
# whole machine's processes (/proc), and prints the top of both.
# Usage: loadtest/profile-apiserver.sh [RATE] (default 300). Build first:
#   cargo build --release -p gateway -p gateway-loadtest -p gateway-envtest
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${1:-300}"
out=target/perf/profile; mkdir -p "$out"
kubeconfig="$PWD/$out/kubeconfig"
bin="$(bash envtest/scripts/build-control-plane.sh)"
fifo="$(mktemp -u)"; mkfifo "$fifo"
target/release/gateway-envtest up --kubeconfig "$kubeconfig" > "$fifo" &
plane=$!
cleanup() { kill "$gw" "$plane" 2>/dev/null || true; wait 2>/dev/null || true; rm -f "$fifo"; }
trap cleanup EXIT
read -r _ < "$fifo"
"$bin/kubectl" --kubeconfig "$kubeconfig" create namespace loadtest >/dev/null
target/release/gateway --listen 127.0.0.1:18080 --health-listen 127.0.0.1:18081 \
  --metrics-listen 127.0.0.1:19090 --peer-listen 127.0.0.1:0 --namespace loadtest --kubeconfig "$kubeconfig" \
  --log-level warn 2> "$out/gateway.log" &
gw=$!
until curl -sf http://127.0.0.1:18081/readyz >/dev/null; do sleep 0.2; done
server="$(sed -n 's/^ *server: *//p' "$kubeconfig" | head -1)"
token="$(sed -n 's/^ *token: *//p' "$kubeconfig" | head -1)"
# Senders authenticate (auth.mode: kubernetes, the default): the admin token stands in for a
# sender's, reviewed once and then decided from the gateway's cache.
printf '%s' "$token" > "$out/sender-token"
cpu() { # utime+stime ticks of the processes whose command line matches $1
  local total=0
  for pid in $(pgrep -f "$1"); do
    total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0) ))
  done
  echo "$total"
}
target/release/gateway-loadtest --targets http://127.0.0.1:18080 --metrics-targets http://127.0.0.1:19090 \
  --token-file "$out/sender-token" \
  --kubeconfig "$kubeconfig" --namespace loadtest --rate "$rate" --duration 30s --warmup 5s \
  > "$out/load.txt" 2>&1 &
load=$!
sleep 10
declare -A before
for p in kube-apiserver 'etcd --name' 'release/gateway --listen' gateway-loadtest; do before[$p]=$(cpu "$p"); done
curl -sk -H "Authorization: Bearer $token" "$server/debug/pprof/profile?seconds=15" > "$out/apiserver.pprof"
echo "CPU seconds over the 15 s profile window:"
for p in kube-apiserver 'etcd --name' 'release/gateway --listen' gateway-loadtest; do
  printf '  %-26s %6.2f\n' "$p" "$(echo "($(cpu "$p") - ${before[$p]}) / 100" | bc -l)"
done
wait "$load" || true
go tool pprof -top -nodecount=25 "$out/apiserver.pprof" 2>/dev/null | tee "$out/apiserver-top.txt"
echo "--- cumulative, by the apiserver's own packages ---"
go tool pprof -top -cum -nodecount=40 "$out/apiserver.pprof" 2>/dev/null | grep -E 'k8s.io|etcd|json|cel' | head -25 | tee "$out/apiserver-cum.txt"
