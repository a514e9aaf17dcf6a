#!/usr/bin/env bash
# Runs every PERF.md measurement in sequence on a fresh self-started stack per run and keeps
# each report in target/perf/<name>[-<tag>].{txt,json}. Usage: loadtest/perf-suite.sh [name...]
# (default: all). Build first: cargo build --release -p gateway -p gateway-loadtest
#
# A/B against another build: GATEWAY_BIN=/path/to/old/gateway TAG=before loadtest/perf-suite.sh
# steady100 — then the same without the variables; alternate the two to share the noise.
set -uo pipefail
cd "$(dirname "$0")/.."
out=target/perf; mkdir -p "$out"
lt=target/release/gateway-loadtest
bin_args=(); [[ -n "${GATEWAY_BIN:-}" ]] && bin_args=(--gateway-bin "$GATEWAY_BIN")
suffix="${TAG:+-$TAG}"
declare -A runs=(
  [steady100-nostorm]="--rate 100 --duration 30s --warmup 5s --compare --gateway-arg=--storm-threshold=64"
  [steady100]="--rate 100 --duration 20s --warmup 5s --compare"
  [steady200]="--rate 200 --duration 20s --warmup 5s --compare"
  [steady300]="--rate 300 --duration 20s --warmup 5s --compare"
  [steady500]="--rate 500 --duration 30s --warmup 5s --compare"
  [steady1000]="--rate 1000 --duration 20s --warmup 5s"
  [storm-async]="--rate 150 --duration 20s --warmup 5s --fingerprints 50 --gateway-arg=--storm-updates=async"
  [storm-sync]="--rate 150 --duration 20s --warmup 5s --fingerprints 50 --gateway-arg=--storm-updates=sync"
  [storm-inline]="--rate 150 --duration 20s --warmup 5s --fingerprints 50 --gateway-arg=--storm-updates=inline"
  [steady100-async]="--rate 100 --duration 20s --warmup 5s --compare --gateway-arg=--storm-updates=async"
  [steady200-async]="--rate 200 --duration 20s --warmup 5s --compare --gateway-arg=--storm-updates=async"
  [burst2000]="--rate 0 --storm-rate 2000 --storm-duration 10s --storm-fingerprints 100 --warmup 0s"
  [disk200]="--rate 200 --duration 20s --warmup 5s --etcd-storage disk"
  [replicas3-200]="--rate 200 --duration 20s --warmup 5s --replicas 3"
  [replicas1-200]="--rate 200 --duration 20s --warmup 5s --replicas 1"
  [replicas3-200-noring]="--rate 200 --duration 20s --warmup 5s --replicas 3 --gateway-arg=--cluster-enabled=false"
  [replicas3-200-ha]="--rate 200 --duration 20s --warmup 5s --replicas 3 --redeliveries 1"
  [replicas1-100]="--rate 100 --duration 20s --warmup 5s --replicas 1"
  [replicas3-100]="--rate 100 --duration 20s --warmup 5s --replicas 3"
  [replicas3-100-noring]="--rate 100 --duration 20s --warmup 5s --replicas 3 --gateway-arg=--cluster-enabled=false"
  [replicas3-100-ha]="--rate 100 --duration 20s --warmup 5s --replicas 3 --redeliveries 1"
)
names=("$@")
[[ ${#names[@]} -eq 0 ]] && names=(steady100-nostorm steady100 steady200 steady300 steady500 steady1000 storm-async storm-sync storm-inline steady100-async steady200-async burst2000 disk200 replicas1-200 replicas3-200 replicas3-200-noring replicas3-200-ha replicas1-100 replicas3-100 replicas3-100-noring replicas3-100-ha)
for name in "${names[@]}"; do
  echo "== $name$suffix: $lt ${runs[$name]} ${bin_args[*]}"
  # shellcheck disable=SC2086
  timeout 900 "$lt" ${runs[$name]} "${bin_args[@]}" --json "$out/$name$suffix.json" \
    > "$out/$name$suffix.txt" 2>&1
  echo "   exit $? ($(grep -m1 '^result' "$out/$name$suffix.txt"))"
done
