#!/usr/bin/env bash
# Start the single-node test cluster (or report that it is already up).
#
#   tests/e2e/hostcluster/up.sh [LANE]   -> prints the kubeconfig path on stdout
#
# LANE (or $DASHI_E2E_LANE) is the NetworkPolicy enforcer: cilium (default;
# cilium's agent is also the pod network), or kube-router (k3s's embedded
# policy controller: kube-router with only its firewall on, over a bridge +
# host-local pod network from Debian's CNI plugins, as k3s runs it beside
# flannel). See README.md for kube-network-policies.
#
# Exit codes: 0 running & healthy, 3 not built yet (run build.sh),
# 1 anything else (see $DASHI_E2E_CACHE/state/logs/).
#
# Every component runs as a plain host process started from here (no
# systemd on these machines); their pids go to state/pids for down.sh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root

T0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - T0 ))s"; }
LANE=${1:-${DASHI_E2E_LANE:-cilium}}
case $LANE in
  cilium) ENFORCER=cilium-agent ;;
  kube-router) ENFORCER=kube-router ;;
  *) echo "dashi-e2e: unknown lane '$LANE' (cilium, kube-router)" >&2; exit 1 ;;
esac

# ------------------------------------------------------------ prechecks --
LANE_PIECES=("cilium $CILIUM_VERSION" "network-policy-api $NETWORK_POLICY_API_VERSION")
[ "$LANE" = kube-router ] && LANE_PIECES=("kube-router $KUBE_ROUTER_VERSION")
for piece in "kubernetes $K8S_VERSION" "etcd $ETCD_VERSION" "containerd $CONTAINERD_VERSION" "runc $RUNC_VERSION" \
             "${LANE_PIECES[@]}" "coredns $COREDNS_VERSION"; do
  # shellcheck disable=SC2086
  if ! piece_ok $piece; then
    echo "dashi-e2e: NOT BUILT: ${piece% *} ${piece#* } is missing under $BIN;" \
         "run tests/e2e/hostcluster/build.sh first" >&2
    exit 3
  fi
done
ls "$IMAGES"/.ok-* >/dev/null 2>&1 || { echo "dashi-e2e: NOT BUILT: images missing under $IMAGES; run tests/e2e/hostcluster/build.sh" >&2; exit 3; }
LANE_TOOLS="clang-19 llc-19"
[ "$LANE" = kube-router ] && LANE_TOOLS=""
for tool in ipset iptables conntrack nsenter nft $LANE_TOOLS; do
  command -v "$tool" >/dev/null || { echo "dashi-e2e: NOT BUILT: host tool $tool missing; run tests/e2e/hostcluster/build.sh deps" >&2; exit 3; }
done

# Health = every daemon alive, apiserver ready, node Ready, CoreDNS answers
# (checked from the host through the cluster DNS service).
healthy() {
  local d
  for d in etcd containerd kube-apiserver kube-controller-manager kube-scheduler \
           kubelet "$ENFORCER" kube-proxy; do
    alive "$d" || { HEALTH_WHY="$d not running"; return 1; }
  done
  kubectl_admin get --raw /readyz >/dev/null 2>&1 || { HEALTH_WHY="apiserver not ready"; return 1; }
  [ "$(kubectl_admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] \
    || { HEALTH_WHY="node not Ready"; return 1; }
  dns_ok || { HEALTH_WHY="CoreDNS does not answer"; return 1; }
}
# DNS check from the host: ask the kube-dns service IP (kube-proxy DNATs it
# to the CoreDNS pod) for the kubernetes service. Stays on this machine.
dns_ok() {
  python3 - "$CLUSTER_DNS" "kubernetes.default.svc.$CLUSTER_DOMAIN" <<'PY'
import socket, struct, sys, random
server, name = sys.argv[1], sys.argv[2]
qid = random.randint(0, 65535)
q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
for _ in range(3):
    try:
        s.sendto(q, (server, 53)); r = s.recv(512)
        ok = struct.unpack(">H", r[:2])[0] == qid and (r[3] & 0xF) == 0 and struct.unpack(">H", r[6:8])[0] > 0
        sys.exit(0 if ok else 1)
    except socket.timeout:
        pass
sys.exit(1)
PY
}

if [ -f "$STATE/.up" ]; then
  HEALTH_WHY=""
  running=$(cat "$STATE/lane" 2>/dev/null || echo cilium)
  [ "$running" = "$LANE" ] || die "the $running lane is up, not $LANE; run tests/e2e/hostcluster/down.sh first"
  if healthy; then
    log "test cluster already running and healthy"
    echo "$KUBECONFIG_OUT"
    exit 0
  fi
  die "a test cluster is set up but unhealthy ($HEALTH_WHY); see $LOGS, run tests/e2e/hostcluster/down.sh then up.sh"
fi
if [ -d "$STATE" ] || [ -d "$RUN_DIR" ] || ip link show "$NODE_IFACE" >/dev/null 2>&1; then
  die "leftovers of an earlier test cluster found; run tests/e2e/hostcluster/down.sh first"
fi

mkdir -p "$STATE" "$LOGS" "$PIDS" "$RUN_DIR"
echo "$LANE" >"$STATE/lane"
# From here on, a failure leaves things for down.sh to clean up.
trap 'log "up.sh failed after $(elapsed); logs in $LOGS; run down.sh to clean up"' ERR

# Record what we change on the host so down.sh can put it back.
# Kernel tunables kubelet/kube-proxy/cilium set:
sysctl -a 2>/dev/null | grep -E '^(kernel\.(panic|panic_on_oops|unprivileged_bpf_disabled)|vm\.(overcommit_memory|panic_on_oom)|net\.ipv4\.(ip_forward|conf\.(all|default)\.(forwarding|rp_filter|accept_local|send_redirects))|net\.bridge\.bridge-nf-call-(iptables|ip6tables)|net\.core\.bpf_jit_enable|net\.netfilter\.nf_conntrack_(max|tcp_timeout_established|tcp_timeout_close_wait)|net\.ipv4\.neigh\.default\.gc_thresh[123]) ' \
  > "$STATE/sysctl.before" || true
mountpoint -q "$BPFFS" && touch "$STATE/bpffs.preexisting" || true
# Host paths some component creates at a fixed location (kubelet's
# /var/log/pods and device-plugin dir, the shims' socket dir, netns dir,
# cilium's run dir): down.sh removes those that did not exist before.
for p in $HOST_PATHS; do [ -e "$p" ] && echo "$p"; done >"$STATE/paths.preexisting"
# nftables tables (iptables-nft creates filter/nat/... on first use).
nft list tables 2>/dev/null >"$STATE/nft-tables.before" || true

# -------------------------------------------------------------- network --
# The node's own address on an interface of its own (see cluster.env). The
# kernels here lack the dummy driver, so it is one end of a veth pair whose
# other end also stays in the host namespace (a veth has carrier, an empty
# bridge would not).
ip link add "$NODE_IFACE" type veth peer name "${NODE_IFACE}p"
ip addr add "$NODE_IP/32" dev "$NODE_IFACE"
ip link set "${NODE_IFACE}p" up
ip link set "$NODE_IFACE" up
# Pod traffic is routed by the host (cilium native routing): forwarding on.
sysctl -qw net.ipv4.ip_forward=1
# The ARP table is one for every network namespace, and the kernel's limit
# is 1,024 entries. On a bridge (the kube-router lane) every pod learns the
# address of every pod it dials: a matrix of 60 pods needs about 60 x 60
# entries, and past the limit new ones fail ("neighbor table overflow!" in
# the kernel log) and most probes time out. Nodes that run many pods raise
# these; so does this one, and down.sh puts them back.
sysctl -qw net.ipv4.neigh.default.gc_thresh1=4096 net.ipv4.neigh.default.gc_thresh2=16384 \
  net.ipv4.neigh.default.gc_thresh3=32768

# ------------------------------------------------------------------ PKI --
# kubeadm only as a certificate/kubeconfig generator: same files, names and
# RBAC identities a kubeadm cluster has.
PKI="$STATE/pki"; KCFG="$STATE/kubeconfigs"
mkdir -p "$PKI" "$KCFG"
cat >"$STATE/kubeadm.yaml" <<EOF
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: $NODE_IP
  bindPort: $APISERVER_PORT
nodeRegistration:
  name: $NODE_NAME
  criSocket: unix://$CONTAINERD_SOCK
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: dashi-e2e
kubernetesVersion: $K8S_VERSION
certificatesDir: $PKI
controlPlaneEndpoint: $NODE_IP:$APISERVER_PORT
networking:
  serviceSubnet: $SERVICE_CIDR
  podSubnet: $POD_CIDR
  dnsDomain: $CLUSTER_DOMAIN
apiServer:
  certSANs: [127.0.0.1, localhost, $NODE_IP]
EOF
KA=("$K8S_BIN/kubeadm" --config "$STATE/kubeadm.yaml")
"${KA[@]:0:1}" init phase certs all "${KA[@]:1}" >"$LOGS/kubeadm.log" 2>&1
"${KA[@]:0:1}" init phase kubeconfig all "${KA[@]:1}" --kubeconfig-dir "$KCFG" >>"$LOGS/kubeadm.log" 2>&1
# kube-proxy and cilium get their own client certs (kubeadm itself would
# use service-account tokens inside pods; these run on the host).
"$K8S_BIN/kubeadm" kubeconfig user --config "$STATE/kubeadm.yaml" --client-name system:kube-proxy \
  >"$KCFG/kube-proxy.conf" 2>>"$LOGS/kubeadm.log"
"$K8S_BIN/kubeadm" kubeconfig user --config "$STATE/kubeadm.yaml" --client-name "$LANE" --org system:masters \
  >"$KCFG/enforcer.conf" 2>>"$LOGS/kubeadm.log"
chmod 600 "$KCFG"/*.conf
install -m 600 "$KCFG/admin.conf" "$KUBECONFIG_OUT"

start() {  # start NAME CMD... : run a daemon in its own session, log + pid
  local name=$1; shift
  setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! >"$PIDS/$name.pid"
}
wait_for() {  # wait_for SECONDS WHAT CMD... : poll until CMD succeeds
  local secs=$1 what=$2 i; shift 2
  for ((i = 0; i < secs * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    local f
    for f in "$PIDS"/*.pid; do  # fail fast if a daemon died
      alive "$(basename "$f" .pid)" || die "$(basename "$f" .pid) exited while waiting for $what; see $LOGS/$(basename "$f" .pid).log"
    done
    sleep 0.5
  done
  die "timed out after ${secs}s waiting for $what (logs: $LOGS)"
}

# ----------------------------------------------------------------- etcd --
# Plain HTTP on loopback only: nothing but the local apiserver talks to it.
log "starting etcd"
start etcd "$ETCD_BIN/etcd" --name "$NODE_NAME" --data-dir "$STATE/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster "$NODE_NAME=http://127.0.0.1:2380" --listen-metrics-urls "" \
  --unsafe-no-fsync --snapshot-count 10000 --log-level warn

# ----------------------------------------------------------- containerd --
log "starting containerd"
CNI_BIN="$STATE/cni/bin"; CNI_CONF="$STATE/cni/net.d"
mkdir -p "$CNI_BIN" "$CNI_CONF" "$STATE/containerd"
ln -sf /usr/lib/cni/loopback "$CNI_BIN/loopback"
if [ "$LANE" = cilium ]; then
  ln -sf "$CILIUM_BIN/cilium-cni" "$CNI_BIN/cilium-cni"
else
  for plugin in bridge host-local portmap; do ln -sf "/usr/lib/cni/$plugin" "$CNI_BIN/$plugin"; done
fi
cat >"$STATE/containerd/config.toml" <<EOF
version = 3
root = "$STATE/containerd/root"
state = "$RUN_DIR/containerd/state"
# NRI would open a socket under /var/run/nri; nothing here uses it.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  # Never pull: every image the cluster uses is imported from $IMAGES.
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE_IMAGE"
[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  # These sandboxes run without CAP_SYS_RESOURCE, so nothing may lower an
  # oom_score_adj (the pause container asks for -998 and runc dies with
  # "can't get final child's PID from pipe"). Clamp to containerd's own
  # value, as for rootless containerd.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$RUNC_BIN/runc"
        Root = "$RUN_DIR/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$CNI_BIN"]
    conf_dir = "$CNI_CONF"
    max_conf_num = 1
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
# containerd finds its shim (containerd-shim-runc-v2) on PATH.
start containerd env PATH="$CTRD_BIN:$PATH" "$CTRD_BIN/containerd" --config "$STATE/containerd/config.toml"
wait_for 30 containerd "$CTRD_BIN/ctr" --address "$CONTAINERD_SOCK" version

log "importing images"
for img in "$IMAGES"/*.tar; do
  ctr_k8s images import --no-unpack=false "$img" >>"$LOGS/images.log" 2>&1
done
# The pause image must never be garbage-collected.
ctr_k8s images label "$PAUSE_IMAGE" io.cri-containerd.pinned=pinned >/dev/null

# -------------------------------------------------------- control plane --
log "starting kube-apiserver"
start kube-apiserver "$K8S_BIN/kube-apiserver" \
  --advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
  --etcd-servers http://127.0.0.1:2379 \
  --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range 30000-32767 \
  --allow-privileged=true --authorization-mode Node,RBAC \
  --enable-admission-plugins NodeRestriction \
  --client-ca-file "$PKI/ca.crt" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP \
  --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
  --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
  --requestheader-allowed-names front-proxy-client --requestheader-extra-headers-prefix X-Remote-Extra- \
  --requestheader-group-headers X-Remote-Group --requestheader-username-headers X-Remote-User \
  --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --enable-bootstrap-token-auth=false --profiling=false --v=1
wait_for 90 "kube-apiserver /readyz" "$K8S_BIN/kubectl" --kubeconfig "$KCFG/super-admin.conf" get --raw /readyz
# What `kubeadm init` does for admin.conf's group (kubeadm:cluster-admins).
"$K8S_BIN/kubectl" --kubeconfig "$KCFG/super-admin.conf" create clusterrolebinding kubeadm:cluster-admins \
  --clusterrole cluster-admin --group kubeadm:cluster-admins >/dev/null
# Let the apiserver reach kubelets for exec/logs/port-forward (its client
# cert is CN=kube-apiserver-kubelet-client, no group).
"$K8S_BIN/kubectl" --kubeconfig "$KCFG/super-admin.conf" create clusterrolebinding kube-apiserver-kubelet-api-admin \
  --clusterrole system:kubelet-api-admin --user kube-apiserver-kubelet-client >/dev/null

log "starting kube-controller-manager, kube-scheduler"
start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
  --kubeconfig "$KCFG/controller-manager.conf" \
  --authentication-kubeconfig "$KCFG/controller-manager.conf" \
  --authorization-kubeconfig "$KCFG/controller-manager.conf" \
  --bind-address 127.0.0.1 --secure-port 10257 \
  --allocate-node-cidrs=true --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
  --use-service-account-credentials=true --controllers '*,-cloud-node-lifecycle' \
  --leader-elect=false --profiling=false --v=1
start kube-scheduler "$K8S_BIN/kube-scheduler" \
  --kubeconfig "$KCFG/scheduler.conf" \
  --authentication-kubeconfig "$KCFG/scheduler.conf" --authorization-kubeconfig "$KCFG/scheduler.conf" \
  --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --profiling=false --v=1

# --------------------------------------------------------------- kubelet --
log "starting kubelet"
KUBELET_DIR="$STATE/kubelet"
mkdir -p "$KUBELET_DIR"
# Pods with dnsPolicy=Default get this resolv.conf: a loopback resolver, so
# nothing in the cluster ever queries the host's upstream DNS.
echo "nameserver 127.0.0.1" >"$STATE/resolv.conf"
cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
# This machine is cgroup v1 (hybrid) and has no systemd.
cgroupDriver: cgroupfs
failCgroupV1: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
clusterDNS: [$CLUSTER_DNS]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $STATE/resolv.conf
failSwapOn: false
# Images are imported, never pulled: don't garbage-collect them, and don't
# evict test pods because the build cache fills the disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
EOF
start kubelet "$K8S_BIN/kubelet" --config "$STATE/kubelet.yaml" \
  --kubeconfig "$KCFG/kubelet.conf" --root-dir "$KUBELET_DIR" \
  --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1
wait_for 60 "node $NODE_NAME to register with a pod CIDR" \
  sh -c "[ -n \"\$('$K8S_BIN/kubectl' --kubeconfig '$KUBECONFIG_OUT' get node '$NODE_NAME' -o jsonpath='{.spec.podCIDR}')\" ]"

# ---------------------------------------------------------------- cilium --
# Pod networking and NetworkPolicy enforcement. Native routing on one node,
# IPAM from the node's podCIDR, kube-proxy stays (no replacement), no L7
# proxy/envoy, no health probes to other nodes. Hubble is on: the agent
# serves the Observer API (the same one hubble-relay serves a cluster) on
# loopback, without TLS, for `inv observe --hubble`; its ring buffer holds
# the largest number of flows it takes (65535, "one less than a power of
# two", pkg/hubble/cell/config.go), so a reader that falls behind for a
# few seconds at 5,000 flows/s still loses none. Monitor aggregation
# "medium" (the Helm chart's default; the agent's own, "none", makes an
# event of every packet) reports connections and every drop.
start_cilium() {
log "starting cilium-agent"
mountpoint -q "$BPFFS" || mount -t bpf bpf "$BPFFS"
# Cilium's CRDs (what cilium-operator would create; see README for why the
# operator is not run). Server-side apply: some CRDs exceed the size limit
# of client-side apply's annotation.
kubectl_admin apply --server-side --force-conflicts -f "$CILIUM_BIN/crds/" >"$LOGS/cilium-crds.log"
# ClusterNetworkPolicy: the agent watches it (v1alpha2, which the v0.3 CRD
# still serves) only once the CRD is established; the Helm chart leaves
# the CRD to the user (k8sClusterNetworkPolicy.enabled sets only the flag).
kubectl_admin apply --server-side --force-conflicts -f "$NPAPI_DIR/experimental/" >>"$LOGS/cilium-crds.log"
# (not `kubectl wait`: it fails at once while a new CRD has no conditions yet)
wait_for 60 "the ClusterNetworkPolicy CRD to be established" sh -c \
  "'$K8S_BIN/kubectl' --kubeconfig '$KUBECONFIG_OUT' get crd clusternetworkpolicies.policy.networking.k8s.io \
   -o jsonpath='{.status.conditions[?(@.type==\"Established\")].status}' | grep -q True"
CIL_COMMON=(--k8s-kubeconfig-path "$KCFG/enforcer.conf" --cluster-name default --cluster-id 0
            --enable-ipv4=true --enable-ipv6=false --identity-allocation-mode crd)
mkdir -p "$STATE/cilium-bin"
# cilium runs `clang` (LLVM 19 like its own images) to build its BPF programs.
ln -sf "$(command -v clang-19)" "$STATE/cilium-bin/clang"
ln -sf "$(command -v llc-19)" "$STATE/cilium-bin/llc"
start cilium-agent env PATH="$STATE/cilium-bin:$PATH" K8S_NODE_NAME="$NODE_NAME" "$CILIUM_BIN/cilium-agent" "${CIL_COMMON[@]}" \
  --lib-dir "$CILIUM_BIN/lib" --state-dir "$CILIUM_RUN_DIR" --bpf-root "$BPFFS" \
  --cgroup-root "$CILIUM_CGROUP_ROOT" \
  --ipam kubernetes --k8s-require-ipv4-pod-cidr=true \
  --routing-mode native --ipv4-native-routing-cidr "$POD_CIDR" --auto-direct-node-routes=false \
  --enable-ipv4-masquerade=false \
  --devices "$NODE_IFACE" --direct-routing-device "$NODE_IFACE" \
  --kube-proxy-replacement=false --enable-l7-proxy=false --enable-envoy-config=false \
  --enable-hubble=true --hubble-listen-address "$HUBBLE_ADDRESS" --hubble-disable-tls=true \
  --hubble-event-buffer-capacity 65535 --monitor-aggregation medium \
  --enable-health-checking=false --enable-endpoint-health-checking=false \
  --cni-exclusive=false --enable-policy default --enable-k8s-networkpolicy=true \
  --policy-cidr-match-mode=nodes \
  --enable-k8s-cluster-network-policy=true \
  --agent-health-port 9879 --enable-bpf-clock-probe=false
wait_for 240 "cilium-agent to become ready" "$CILIUM_BIN/cilium-dbg" status --brief
# The equivalent of k3s's "Starting network policy controller": the agent
# watches networking.k8s.io/v1 NetworkPolicy and enforces it.
wait_for 60 "cilium to enforce NetworkPolicy" sh -c \
  "'$CILIUM_BIN/cilium-dbg' status | grep -q 'networking.k8s.io/v1::NetworkPolicy'"

# Only now hand pods to cilium: with the CNI config present the runtime
# reports NetworkReady and the node turns Ready.
cat >"$CNI_CONF/05-cilium.conflist" <<EOF
{
  "cniVersion": "0.3.1",
  "name": "cilium",
  "plugins": [{"type": "cilium-cni", "log-file": "$LOGS/cilium-cni.log"}]
}
EOF
}

# ----------------------------------------------------------- kube-router --
# k3s's NetworkPolicy enforcement (k3s pkg/agent/netpol runs this same
# controller): kube-router with only its firewall, over a plain bridge pod
# network (Debian's bridge + host-local CNI plugins, addresses from the
# node's podCIDR). Denied packets are REJECTed (icmp-port-unreachable).
start_kube_router() {
  log "starting the bridge pod network and kube-router (firewall only)"
  local cidr
  cidr=$(kubectl_admin get node "$NODE_NAME" -o jsonpath='{.spec.podCIDR}')
  # Bridged pod-to-pod traffic must pass iptables for the policy chains.
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
  cat >"$CNI_CONF/10-bridge.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "dashi-bridge",
  "plugins": [
    {"type": "bridge", "bridge": "$POD_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$cidr"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$STATE/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  start kube-router "$KUBE_ROUTER_BIN/kube-router" --kubeconfig "$KCFG/enforcer.conf" \
    --hostname-override "$NODE_NAME" --run-firewall=true --run-router=false --run-service-proxy=false \
    --enable-cni=false --health-port 0 --metrics-port 0 \
    --service-cluster-ip-range "$SERVICE_CIDR" --iptables-sync-period 1m --v=1
  wait_for 60 "kube-router to program its firewall chains" sh -c "iptables-save | grep -q KUBE-ROUTER-FORWARD"
}

if [ "$LANE" = cilium ]; then start_cilium; else start_kube_router; fi

# ------------------------------------------------------------ kube-proxy --
log "starting kube-proxy"
cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $KCFG/kube-proxy.conf}
mode: iptables
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [$NODE_IP/32]
# 0 = leave the host's conntrack tunables alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
start kube-proxy "$K8S_BIN/kube-proxy" --config "$STATE/kube-proxy.yaml" --v=1

wait_for 120 "node $NODE_NAME Ready" sh -c \
  "[ \"\$('$K8S_BIN/kubectl' --kubeconfig '$KUBECONFIG_OUT' get node '$NODE_NAME' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}')\" = True ]"

# --------------------------------------------------------------- CoreDNS --
log "deploying CoreDNS"
sed -e "s#@COREDNS_IMAGE@#$COREDNS_IMAGE#g" -e "s#@CLUSTER_DNS@#$CLUSTER_DNS#g" \
    -e "s#@CLUSTER_DOMAIN@#$CLUSTER_DOMAIN#g" "$E2E_DIR/manifests/coredns.yaml" \
  | kubectl_admin apply -f - >/dev/null
kubectl_admin -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null
wait_for 60 "CoreDNS to answer on $CLUSTER_DNS" dns_ok

touch "$STATE/.up"
trap - ERR
log "test cluster up in $(elapsed); KUBECONFIG=$KUBECONFIG_OUT"
echo "$KUBECONFIG_OUT"
