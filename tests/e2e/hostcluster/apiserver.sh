#!/usr/bin/env bash
# Stop or start the test cluster's API server alone (everything else keeps
# running), for the end-to-end tests in which the API server goes away in
# the middle of a rollout.
#
#   tests/e2e/hostcluster/apiserver.sh stop     # SIGTERM, wait until it has exited (its argv is kept)
#   tests/e2e/hostcluster/apiserver.sh start    # start it again with the same argv, wait for /readyz
#   tests/e2e/hostcluster/apiserver.sh status   # exit 0 when it runs
#
# The API server is a host process that up.sh started (pid in
# $STATE/pids/kube-apiserver.pid); this script stops exactly that pid and
# starts the same command line, logging to the same file, so down.sh finds
# it as it would have.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root
[ -f "$STATE/.up" ] || die "no test cluster is up (run tests/e2e/hostcluster/up.sh)"
ARGV="$STATE/kube-apiserver.argv"

case "${1:-}" in
  stop)
    if ! alive kube-apiserver; then log "kube-apiserver is not running"; exit 0; fi
    p=$(pid_of kube-apiserver)
    cp "/proc/$p/cmdline" "$ARGV"   # NUL-separated: arguments with spaces survive
    kill -TERM "$p"
    for ((i = 0; i < 120; i++)); do alive kube-apiserver || break; sleep 0.25; done
    if alive kube-apiserver; then log "kube-apiserver ($p) did not stop on TERM, killing"; kill -KILL "$p"; sleep 0.5; fi
    log "kube-apiserver stopped"
    ;;
  start)
    if alive kube-apiserver; then log "kube-apiserver is already running"; exit 0; fi
    [ -s "$ARGV" ] || die "no saved command line ($ARGV): stop it with this script first"
    mapfile -d '' argv <"$ARGV"
    setsid "${argv[@]}" >>"$LOGS/kube-apiserver.log" 2>&1 </dev/null &
    echo $! >"$PIDS/kube-apiserver.pid"
    for ((i = 0; i < 180; i++)); do
      if kubectl_admin get --raw /readyz >/dev/null 2>&1; then log "kube-apiserver ready"; exit 0; fi
      alive kube-apiserver || die "kube-apiserver exited on start; see $LOGS/kube-apiserver.log"
      sleep 0.5
    done
    die "kube-apiserver not ready after 90s (logs: $LOGS/kube-apiserver.log)"
    ;;
  status)
    alive kube-apiserver
    ;;
  *)
    echo "usage: $0 stop|start|status" >&2
    exit 2
    ;;
esac
