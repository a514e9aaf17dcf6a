#!/usr/bin/env bash
# Regenerates envtest/go/helm/go.mod and go.sum for a Helm release: a module of our own that
# requires helm.sh/helm/v4 at that tag and keeps its CLI with a `tool` directive (`go mod tidy`
# would otherwise drop a dependency that only provides `main` packages). Its own module, apart
# from envtest/go/kube, so Helm's Kubernetes client libraries do not move the apiserver's.
# Run by hand when moving to a new release; the result is checked in, and build-helm.sh builds
# from the checked-in files.
set -euo pipefail
version="${1:?usage: gen-helm-gomod.sh v4.X.Y}"
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="$here/go/helm"

modfile="$(go mod download -json "helm.sh/helm/v4@$version" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
go_line="$(sed -n 's/^go //p' "$modfile")"

mkdir -p "$dir"
cat > "$dir/go.mod" <<MOD
module gateway-envtest/helm

go $go_line
MOD
rm -f "$dir/go.sum"
cd "$dir"
go mod edit -require="helm.sh/helm/v4@$version" -tool=helm.sh/helm/v4/cmd/helm
go mod tidy
