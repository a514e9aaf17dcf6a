#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from their Go modules (pinned by the checked-in
# go.mod/go.sum files under envtest/go/) into a cache folder keyed by a hash of those module
# folders (everything under envtest/go/ but helm/, which build-helm.sh keys on its own), this
# script and the build flags, and reuses binaries already there: a change to any of them gives
# a new folder, so a stale binary cannot survive it. Go's module and build caches stay in their
# default places, so a second build on the same machine is quick.
#
# Prints the binary folder on stdout (everything else goes to stderr).
# Environment: ENVTEST_BIN_ROOT (default <repo>/target/envtest-bin).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$here/.." && pwd)"

need_go="$(sed -n 's/^go //p' "$here/go/kube/go.mod")"
command -v go >/dev/null || {
  echo "build-control-plane.sh: go is missing; install Go $need_go or newer (the go line of envtest/go/kube/go.mod)" >&2
  exit 2
}
kube_version="$(cd "$here/go/kube" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
etcd_version="$(cd "$here/go/etcd" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
go_version="$(go env GOVERSION)"

# Version strings as an upstream release carries them, so /version and clients read them.
minor="${kube_version#v1.}"; minor="${minor%%.*}"
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  kube_ldflags+=" -X $pkg.gitTreeState=clean"
done
kube_flags=(-trimpath -buildvcs=false -ldflags "$kube_ldflags")
etcd_flags=(-trimpath -buildvcs=false -ldflags "-s -w")
export CGO_ENABLED=0

# The key: the module folders, this script, the flags above, and the Go settings that change
# what `go build` produces.
key="$(printf 'CGO_ENABLED=0\nkube: %s\netcd: %s\n%s\n' "${kube_flags[*]}" "${etcd_flags[*]}" \
  "$(go env GOVERSION GOOS GOARCH GOAMD64 GOEXPERIMENT GOFLAGS)" \
  | bash "$here/scripts/cache-key.sh" envtest/go '!envtest/go/helm' \
  envtest/scripts/build-control-plane.sh)"
root="${ENVTEST_BIN_ROOT:-$repo/target/envtest-bin}"
bin="$root/kube-$kube_version-etcd-$etcd_version-$go_version-$key"

if [[ -x "$bin/kube-apiserver" && -x "$bin/kubectl" && -x "$bin/etcd" ]]; then
  echo "$bin"
  exit 0
fi
rm -rf "$bin.tmp"
mkdir -p "$bin.tmp"
start=$(date +%s)

echo "building kube-apiserver and kubectl $kube_version" >&2
(cd "$here/go/kube" && go build "${kube_flags[@]}" -o "$bin.tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl) >&2
echo "building etcd $etcd_version" >&2
(cd "$here/go/etcd" && go build "${etcd_flags[@]}" -o "$bin.tmp/etcd" \
  go.etcd.io/etcd/server/v3) >&2

rm -rf "$bin"
mv "$bin.tmp" "$bin"
echo "control plane built in $(( $(date +%s) - start ))s: $bin" >&2
echo "$bin"
