#!/usr/bin/env bash
# Builds the helm CLI from its Go module (pinned by the checked-in envtest/go/helm/go.mod and
# go.sum; regenerate them with gen-helm-gomod.sh) into a cache folder keyed by a hash of that
# module folder, this script and the build flags, and reuses a binary already there. Built the
# way upstream's Makefile builds a release: CGO off, -trimpath, -s -w, version strings set.
#
# Prints the helm binary's path on stdout (everything else goes to stderr); callers export it
# as HELM_BIN, which tests/helm_chart.rs reads:
#   export HELM_BIN="$(bash envtest/scripts/build-helm.sh)"
# Environment: ENVTEST_BIN_ROOT (default <repo>/target/envtest-bin), shared with the
# control-plane binaries.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$here/.." && pwd)"
module="$here/go/helm"

need_go="$(sed -n 's/^go //p' "$module/go.mod")"
command -v go >/dev/null || {
  echo "build-helm.sh: go is missing; install Go $need_go or newer (the go line of $module/go.mod)" >&2
  exit 2
}
helm_version="$(cd "$module" && go list -m -f '{{.Version}}' helm.sh/helm/v4)"
go_version="$(go env GOVERSION)"

# Upstream's release flags (helm's Makefile); metadata empty = a tagged release, so
# `helm version` says v4.x.y, not v4.x.y+unreleased. gitCommit is unknown from a module zip.
ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version"
ldflags+=" -X helm.sh/helm/v4/internal/version.metadata="
ldflags+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
build_flags=(-trimpath -buildvcs=false -ldflags "$ldflags")
export CGO_ENABLED=0

# The key: the module folder, this script, the flags above, and the Go settings that change
# what `go build` produces.
key="$(printf 'CGO_ENABLED=0 %s\n%s\n' "${build_flags[*]}" \
  "$(go env GOVERSION GOOS GOARCH GOAMD64 GOEXPERIMENT GOFLAGS)" \
  | bash "$here/scripts/cache-key.sh" envtest/go/helm envtest/scripts/build-helm.sh)"
root="${ENVTEST_BIN_ROOT:-$repo/target/envtest-bin}"
bin="$root/helm-$helm_version-$go_version-$key"

if [[ -x "$bin/helm" ]]; then
  echo "$bin/helm"
  exit 0
fi
rm -rf "$bin.tmp"
mkdir -p "$bin.tmp"
start=$(date +%s)
echo "building helm $helm_version with $go_version" >&2
(cd "$module" && go build "${build_flags[@]}" -o "$bin.tmp/helm" helm.sh/helm/v4/cmd/helm) >&2
rm -rf "$bin"
mv "$bin.tmp" "$bin"
echo "helm built in $(( $(date +%s) - start ))s: $bin/helm" >&2
echo "$bin/helm"
