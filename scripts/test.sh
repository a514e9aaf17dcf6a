#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine of this project's kind: installs what the tests
# need and the machine lacks (Debian's prometheus and prometheus-alertmanager, which the deploy,
# observe and Alertmanager tests run), builds the control plane and helm from their Go modules
# (cached), then runs `cargo test --workspace` with any extra arguments. `.ci/run` calls
# exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null || { echo "test.sh: $1 is missing; $2" >&2; exit 2; }; }
need cargo "install Rust with rustup (https://rustup.rs); this script does not download toolchains"
need go "install Go at least as new as the go line of envtest/go/kube/go.mod"

if [[ ! -x /usr/bin/prometheus || ! -x /usr/bin/promtool \
   || ! -x /usr/bin/prometheus-alertmanager || ! -x /usr/bin/amtool ]]; then
  echo "test.sh: installing Debian's prometheus and prometheus-alertmanager" >&2
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    prometheus prometheus-alertmanager
fi

# Control-plane binaries live outside the clone so a fresh clone on a warm machine reuses them.
export ENVTEST_BIN_ROOT="${ENVTEST_BIN_ROOT:-$HOME/.cache/gateway/envtest-bin}"
if [[ -z "${ENVTEST_BIN_DIR:-}" ]]; then
  ENVTEST_BIN_DIR="$(bash envtest/scripts/build-control-plane.sh)"
  export ENVTEST_BIN_DIR
fi
echo "test.sh: control plane binaries in $ENVTEST_BIN_DIR" >&2
# helm, built from its Go module the same way (the chart tests run it).
if [[ -z "${HELM_BIN:-}" ]]; then
  HELM_BIN="$(bash envtest/scripts/build-helm.sh)"
  export HELM_BIN
fi
echo "test.sh: helm at $HELM_BIN" >&2

# Golden files are rewritten only on purpose (scripts/update-golden.sh), never because the
# environment happened to carry the switch.
unset UPDATE_CRD UPDATE_DEPLOY UPDATE_HELM
exec cargo test --workspace "$@"
