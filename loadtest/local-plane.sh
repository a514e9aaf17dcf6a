# Sourced by the loadtest scripts: starts a local control plane (etcd + kube-apiserver, the RR
# CRD installed) writing its admin kubeconfig to "$kubeconfig", and stops it on exit together
# with the gateway whose pid the script keeps in "$gw". Sets "$bin" (the control-plane binaries,
# kubectl among them). Needs target/release/gateway-envtest.
bin="$(bash envtest/scripts/build-control-plane.sh)"
fifo="$(mktemp -u)"; mkfifo "$fifo"
target/release/gateway-envtest up --kubeconfig "$kubeconfig" > "$fifo" &
plane=$!
gw=
cleanup() { [[ -n "$gw" ]] && kill "$gw" 2>/dev/null; kill "$plane" 2>/dev/null; wait 2>/dev/null || true; rm -f "$fifo"; }
trap cleanup EXIT
read -r _ < "$fifo"
