#!/usr/bin/env bash
# Point kubectl & tests at the running test cluster.
#
#   eval "$(tests/e2e/hostcluster/env.sh)"     # exports KUBECONFIG (+ PATH to kubectl)
#   tests/e2e/hostcluster/env.sh --check       # exit 0 if the cluster is up, else 1
#
# Prints shell `export` lines; exits non-zero (and prints nothing) if no
# cluster is up, so `eval` leaves the environment untouched.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
if [ ! -f "$STATE/.up" ] || [ ! -f "$KUBECONFIG_OUT" ]; then
  echo "dashi-e2e: no test cluster is up (run tests/e2e/hostcluster/up.sh)" >&2
  exit 1
fi
[ "${1:-}" = --check ] && exit 0
printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_OUT"
printf 'export PATH=%q:"$PATH"\n' "$K8S_BIN"
