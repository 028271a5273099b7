#!/usr/bin/env bash
# Smoke test of the running test cluster: pod networking, NetworkPolicy
# enforcement and cluster DNS, with agnhost only (all traffic stays between
# pods we create here).
#
#   tests/e2e/hostcluster/smoke.sh      # exit 0 = all good
set -euo pipefail
. "$(dirname "$0")/lib.sh"
"$E2E_DIR/env.sh" --check
export KUBECONFIG="$KUBECONFIG_OUT"
k() { "$K8S_BIN/kubectl" "$@"; }
NS=dashi-e2e-smoke-$$
cleanup() { k delete namespace "$NS" --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT

k create namespace "$NS" >/dev/null
k -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: server}}
spec:
  containers:
  - name: porter
    image: $AGNHOST_IMAGE
    imagePullPolicy: IfNotPresent
    args: ["porter"]
    env: [{name: SERVE_PORT_8080, value: foo}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  containers:
  - name: pause
    image: $AGNHOST_IMAGE
    imagePullPolicy: IfNotPresent
    command: ["/agnhost", "pause"]
EOF
k -n "$NS" wait --for=condition=Ready pod/server pod/client --timeout=120s >/dev/null
SERVER_IP=$(k -n "$NS" get pod server -o jsonpath='{.status.podIP}')

# agnhost connect prints nothing and exits 0 on success, prints TIMEOUT /
# REFUSED / ... and exits 1 on failure; reduce that to one word.
probe() {
  local out
  if out=$(k -n "$NS" exec client -- /agnhost connect "$1" --timeout=1s --protocol="${2:-tcp}" 2>&1); then
    echo OK
  else
    grep -oE 'TIMEOUT|REFUSED|DNS|UNKNOWN' <<<"$out" | head -1 | grep . || echo "ERROR: $out" | tr '\n' ' '
  fi
}
pass=0 fail=0
check() {  # check NAME EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then echo "ok   $1"; pass=$((pass + 1)); else echo "FAIL $1: want '$2', got '$3'"; fail=$((fail + 1)); fi
}

r=$(probe "$SERVER_IP:8080")
check "client -> server:8080 allowed without policy" OK "$r"

r=$(probe "kube-dns.kube-system.svc.$CLUSTER_DOMAIN:53")
check "DNS: resolve kube-dns.kube-system.svc and connect tcp/53" OK "$r"

k -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress}
spec:
  podSelector: {}
  policyTypes: [Ingress]
EOF
# Policy programming is asynchronous; give it a few seconds.
r=""
for _ in $(seq 1 20); do
  r=$(probe "$SERVER_IP:8080")
  [ "$r" = TIMEOUT ] && break
  sleep 1
done
check "client -> server:8080 blocked by default-deny ingress" TIMEOUT "$r"

k -n "$NS" delete networkpolicy default-deny-ingress >/dev/null
r=""
for _ in $(seq 1 20); do
  r=$(probe "$SERVER_IP:8080")
  [ "$r" = OK ] && break
  sleep 1
done
check "client -> server:8080 allowed again after policy delete" OK "$r"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
