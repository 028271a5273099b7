# Shared settings for build.sh / up.sh / down.sh / env.sh. Sourced, not run.
# shellcheck shell=bash

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "$E2E_DIR/versions.env"
# shellcheck source=cluster.env
. "$E2E_DIR/cluster.env"

# Everything heavy (Go caches, sources, binaries, image tarballs, cluster
# state that we own) lives outside the repo.
CACHE="${DASHI_E2E_CACHE:-/var/cache/dashi-cluster-e2e}"
BIN="$CACHE/bin"                 # built binaries, one dir per pinned version
IMAGES="$CACHE/images"           # OCI image tarballs we assemble ourselves
STATE="$CACHE/state"             # runtime state of the running test cluster
LOGS="$STATE/logs"
KUBECONFIG_OUT="$CACHE/kubeconfig.yaml"

# Go caches persist next to the binaries so a second build is fast.
export GOMODCACHE="$CACHE/gomod"
export GOCACHE="$CACHE/gocache"
# Never let `go` try to fetch another toolchain (no internet), never use a
# go.work that a downloaded module might carry.
export GOTOOLCHAIN=local GOWORK=off
export GOFLAGS="${GOFLAGS:--mod=mod}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (it manages iptables, mounts, netns)"; }

# The directory of one built piece; a piece is "done" when its .ok stamp
# exists, the stamp name carries the pinned version, so bumping a version in
# versions.env rebuilds only that piece.
piece_dir() { echo "$BIN/$1-$2"; }
piece_ok()  { [ -f "$(piece_dir "$1" "$2")/.ok" ]; }

# The binaries of each built piece.
K8S_BIN="$(piece_dir kubernetes "$K8S_VERSION")"
ETCD_BIN="$(piece_dir etcd "$ETCD_VERSION")"
CTRD_BIN="$(piece_dir containerd "$CONTAINERD_VERSION")"
RUNC_BIN="$(piece_dir runc "$RUNC_VERSION")"
CILIUM_BIN="$(piece_dir cilium "$CILIUM_VERSION")"
KUBE_ROUTER_BIN="$(piece_dir kube-router "$KUBE_ROUTER_VERSION")"
NPAPI_DIR="$(piece_dir network-policy-api "$NETWORK_POLICY_API_VERSION")"

kubectl_admin() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT" "$@"; }
ctr_k8s() { "$CTRD_BIN/ctr" --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

# Process bookkeeping: every daemon we start has a pid file; down.sh stops
# exactly those pids (never by name).
PIDS="$STATE/pids"
pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }
# A daemon that exited stays a zombie until reaped, and no init reaps it in
# these sandboxes: kill -0 still succeeds on it, so look at its state too.
alive() {
  local p; p=$(pid_of "$1")
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null && ! grep -qE '^State:[[:space:]]+Z' "/proc/$p/status" 2>/dev/null
}
