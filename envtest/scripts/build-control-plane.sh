#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from their Go modules (pinned by the checked-in
# go.mod/go.sum files under envtest/go/) into a cache folder keyed by version, and reuses
# binaries already there. Go's module and build caches stay in their default places, so a
# second build on the same machine is quick.
#
# Prints the binary folder on stdout (everything else goes to stderr).
# Environment: ENVTEST_BIN_ROOT (default <repo>/target/envtest-bin).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$here/.." && pwd)"
kube_version="$(cd "$here/go/kube" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
etcd_version="$(cd "$here/go/etcd" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
go_version="$(go env GOVERSION)"
root="${ENVTEST_BIN_ROOT:-$repo/target/envtest-bin}"
bin="$root/kube-$kube_version-etcd-$etcd_version-$go_version"

if [[ -x "$bin/kube-apiserver" && -x "$bin/kubectl" && -x "$bin/etcd" ]]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$bin.tmp"
export CGO_ENABLED=0
start=$(date +%s)

# Version strings as an upstream release carries them, so /version and clients read them.
minor="${kube_version#v1.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
done

echo "building kube-apiserver and kubectl $kube_version" >&2
(cd "$here/go/kube" && go build -trimpath -ldflags "$ldflags" -o "$bin.tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl) >&2
echo "building etcd $etcd_version" >&2
(cd "$here/go/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin.tmp/etcd" \
  go.etcd.io/etcd/server/v3) >&2

rm -rf "$bin"
mv "$bin.tmp" "$bin"
echo "control plane built in $(( $(date +%s) - start ))s: $bin" >&2
echo "$bin"
