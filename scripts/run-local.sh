#!/usr/bin/env bash
# Runs the gateway on 127.0.0.1:8080 (health :8081, metrics :9090).
#
# With a cluster configured (--kubeconfig FILE, or KUBECONFIG set) it uses that cluster, and
# senders need a bearer token bound to the ClusterRole gateway-signal-source (README, "Who may
# send"). Otherwise it first starts a local control plane (etcd + kube-apiserver built from
# their Go modules, with the RemediationRequest CRD installed), runs the gateway there with
# `--auth-mode none` (only loopback can reach it; the gateway logs a warning), and stops the
# control plane again on exit.
# Extra arguments go to the gateway (see `cargo run -- --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

args=("$@")
have_kubeconfig=false
for arg in "${args[@]}"; do
  [[ "$arg" == --kubeconfig* ]] && have_kubeconfig=true
done
[[ -n "${KUBECONFIG:-}" || -n "${GATEWAY_KUBECONFIG:-}" ]] && have_kubeconfig=true

cargo build --release --bin gateway
if ! $have_kubeconfig; then
  cargo build -p gateway-envtest
  kubeconfig="$PWD/target/envtest/kubeconfig"
  fifo="$(mktemp -u)"; mkfifo "$fifo"
  target/debug/gateway-envtest up --kubeconfig "$kubeconfig" > "$fifo" &
  plane=$!
  trap 'kill "$plane" 2>/dev/null; wait "$plane" 2>/dev/null; rm -f "$fifo"' EXIT
  read -r ready < "$fifo"
  echo "local control plane: $ready" >&2
  args+=(--kubeconfig "$kubeconfig" --namespace "${GATEWAY_NAMESPACE:-default}" --auth-mode none)
fi
target/release/gateway --listen 127.0.0.1:8080 --health-listen 127.0.0.1:8081 \
  --metrics-listen 127.0.0.1:9090 --peer-listen 127.0.0.1:8082 --log-format text "${args[@]}"
