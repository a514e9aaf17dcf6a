#!/usr/bin/env bash
# Regenerates envtest/go/kube/go.mod for a Kubernetes release: requires k8s.io/kubernetes
# at that tag and replaces each staging module (required upstream as v0.0.0) with its
# published v0.<minor>.<patch>. Run by hand when moving to a new release; the result is
# checked in, and build-control-plane.sh builds from the checked-in files.
set -euo pipefail
version="${1:?usage: gen-kube-gomod.sh vX.Y.Z}"
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="$here/go/kube"
staging_version="v0.${version#v1.}"

modfile="$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
go_line="$(sed -n 's/^go //p' "$modfile")"
godebug_line="$(sed -n 's/^godebug //p' "$modfile")"

cat > "$dir/go.mod" <<MOD
module gateway-envtest/kube

go $go_line

godebug $godebug_line
MOD
cd "$dir"
go mod edit -require="k8s.io/kubernetes@$version"
for m in $(grep -E '^\s*k8s.io/[a-z0-9-]+ v0\.0\.0\s*$' "$modfile" | awk '{print $1}' | sort -u); do
  go mod edit -replace="$m=$m@$staging_version"
done
go mod edit -tool=k8s.io/kubernetes/cmd/kube-apiserver -tool=k8s.io/kubernetes/cmd/kubectl
go mod tidy
