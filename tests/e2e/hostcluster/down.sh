#!/usr/bin/env bash
# Stop the test cluster and put the machine back as it was before up.sh:
# processes (incl. containerd shims and container processes), mounts,
# iptables/ipset/nft rules, interfaces, network namespaces, sysctls, state
# dirs. Keeps the build cache ($DASHI_E2E_CACHE/bin, images, go caches).
#
#   tests/e2e/hostcluster/down.sh      (safe to run when nothing is up)
set -uo pipefail   # no -e: clean up as much as possible, report at the end
. "$(dirname "$0")/lib.sh"
need_root

stop_pid() {  # stop_pid NAME : TERM, then KILL after a grace period
  local name=$1 p i
  p=$(pid_of "$name"); [ -n "$p" ] || return 0
  alive "$name" || return 0
  kill -TERM "$p" 2>/dev/null
  for ((i = 0; i < 40; i++)); do alive "$name" || return 0; sleep 0.25; done
  log "$name ($p) did not stop on TERM, killing"
  kill -KILL "$p" 2>/dev/null; sleep 0.5
}

# Kill a process by pid, after re-checking its command line (pids recycle).
kill_if_cmd() {  # kill_if_cmd PID SUBSTRING
  local cmd; cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 0
  [[ $cmd == *"$2"* ]] && kill -KILL "$1" 2>/dev/null
  return 0
}

if [ ! -d "$STATE" ] && [ ! -d "$RUN_DIR" ] && ! ip link show "$NODE_IFACE" >/dev/null 2>&1; then
  log "no test cluster state found; nothing to do"
  rm -f "$KUBECONFIG_OUT"
  exit 0
fi
log "stopping test cluster"
rm -f "$STATE/.up"

# 1. Node agents first so nothing restarts containers behind our back.
for d in kubelet kube-proxy cilium-agent cilium-operator kube-router kube-scheduler kube-controller-manager; do
  stop_pid "$d"
done

# 2. Containers: kill every task containerd knows, while it still runs.
if alive containerd; then
  for id in $(ctr_k8s tasks ls -q 2>/dev/null); do
    ctr_k8s tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1
  done
  sleep 1
  for id in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks rm -f "$id" >/dev/null 2>&1; done
  for id in $(ctr_k8s containers ls -q 2>/dev/null); do ctr_k8s containers rm "$id" >/dev/null 2>&1; done
fi
stop_pid containerd
# Shims are started by containerd but outlive it by design; ours are the
# ones whose -address is our containerd socket.
for p in $(pgrep -f "containerd-shim-runc-v2" 2>/dev/null); do
  kill_if_cmd "$p" "-address $CONTAINERD_SOCK"
done
# Any container process still alive lives in a kubepods cgroup.
for hier in /sys/fs/cgroup/*/; do
  [ -d "$hier/kubepods" ] || continue
  for p in $(find "$hier/kubepods" -name cgroup.procs -exec cat {} + 2>/dev/null); do
    kill -KILL "$p" 2>/dev/null
  done
done
sleep 0.5
for hier in /sys/fs/cgroup/*/; do
  [ -d "$hier/kubepods" ] || continue
  find "$hier/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
done

# 3. Control plane.
stop_pid kube-apiserver
stop_pid etcd

# 4. Network: kube-proxy's and cilium's own cleanup modes first...
[ -x "$K8S_BIN/kube-proxy" ] && "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1
[ -x "$CILIUM_BIN/cilium-dbg" ] && \
  "$CILIUM_BIN/cilium-dbg" post-uninstall-cleanup --all-state --force \
  --bpf-root "$BPFFS" --cgroup-root "$CILIUM_CGROUP_ROOT" >"$LOGS/cilium-cleanup.log" 2>&1
# ...then sweep whatever is left: chains/rules named KUBE-* / CILIUM_* (and
# the kubelet canary chains) in every iptables backend, leaving every other
# rule on the machine untouched.
sweep_iptables() {  # sweep_iptables SAVE RESTORE
  command -v "$1" >/dev/null || return 0
  local dump; dump=$("$1" 2>/dev/null) || return 0
  grep -qE 'KUBE-|CILIUM_' <<<"$dump" || return 0
  awk '
    /^:(KUBE-|CILIUM_)/ { next }
    /^-A (KUBE-|CILIUM_)/ { next }
    /^-A / && / -j (KUBE-|CILIUM_)/ { next }
    /^-A / && /--comment "?cilium/ { next }
    { print }' <<<"$dump" | "$2" 2>>"$LOGS/down.log"
}
for be in "" -legacy -nft; do
  sweep_iptables "iptables$be-save" "iptables$be-restore"
  sweep_iptables "ip6tables$be-save" "ip6tables$be-restore"
done
if command -v nft >/dev/null; then
  for fam in ip ip6 inet; do
    nft list table "$fam" kube-proxy >/dev/null 2>&1 && nft delete table "$fam" kube-proxy
  done
fi
# Tables that appeared with the cluster and are now empty (the built-in
# chains iptables-nft leaves behind) go too; tables that hold rules stay.
if command -v nft >/dev/null && [ -f "$STATE/nft-tables.before" ]; then
  nft list tables 2>/dev/null | while read -r _ fam name; do
    grep -qxF "table $fam $name" "$STATE/nft-tables.before" && continue
    rules=$(nft list table "$fam" "$name" 2>/dev/null \
      | grep -cvE '^\s*(table |chain |type |policy |\}|$)')
    [ "$rules" = 0 ] && nft delete table "$fam" "$name"
  done
fi
# kube-router's ipsets are KUBE-SRC-*/KUBE-DST-* and kube-router-*; a set
# can only go once the rules that use it are gone (swept above).
for s in $(ipset list -n 2>/dev/null | grep -E '^(cilium_|KUBE-|kube-router-)'); do ipset destroy "$s" 2>/dev/null; done
ip link del "$POD_BRIDGE" 2>/dev/null
for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^(cilium_|lxc)'); do
  ip link del "$l" 2>/dev/null
done
ip link del "$NODE_IFACE" 2>/dev/null
# Policy-routing rules/tables cilium may have added (it uses tables 2004/2005).
while ip rule show | grep -qE 'lookup (2004|2005)\b'; do
  pref=$(ip rule show | grep -E 'lookup (2004|2005)\b' | head -1 | cut -d: -f1)
  ip rule del pref "$pref" 2>/dev/null || break
done
ip route flush table 2004 2>/dev/null; ip route flush table 2005 2>/dev/null

# 5. Mounts: pod netns bind mounts, kubelet volume mounts, overlay rootfs,
# cilium's cgroup2 and (if we mounted it) bpffs. Deepest first.
umount_under() {
  local m
  for m in $(awk -v pre="$1" 'index($5, pre) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
}
for d in /run/netns/cni- "$STATE/" "$RUN_DIR/" "$CILIUM_CGROUP_ROOT" /run/containerd/ "$CILIUM_RUN_DIR/"; do
  umount_under "$d"
done
rm -f /run/netns/cni-* 2>/dev/null
if [ -f "$STATE/bpffs.preexisting" ]; then
  rm -rf "$BPFFS/tc/globals"/cilium_* "$BPFFS/cilium" 2>/dev/null
elif mountpoint -q "$BPFFS"; then
  umount "$BPFFS" 2>/dev/null
fi

# 6. Sysctls kubelet/cilium changed back to their values before up.sh.
if [ -f "$STATE/sysctl.before" ]; then
  while IFS= read -r line; do
    key=${line%% = *}; val=${line#* = }
    cur=$(sysctl -n "$key" 2>/dev/null) || continue
    [ "$cur" = "$val" ] || sysctl -qw "$key=$val" 2>/dev/null
  done <"$STATE/sysctl.before"
fi

# 7. Files and dirs.
if [ -f "$STATE/paths.preexisting" ]; then
  for p in $HOST_PATHS; do
    grep -qxF "$p" "$STATE/paths.preexisting" && continue
    mountpoint -q "$p" && umount "$p" 2>/dev/null   # e.g. /run/netns bind mount
    if [ "$p" = /run/containerd ]; then
      # Shared with any other containerd on the machine (docker's): drop
      # only shim sockets nobody listens on, then the dirs if empty.
      for sock in /run/containerd/s/*; do
        [ -S "$sock" ] || continue
        ss -xlH 2>/dev/null | grep -qF " $sock " || rm -f "$sock"
      done
      rmdir /run/containerd/s /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd 2>/dev/null
      continue
    fi
    rm -rf "$p" 2>/dev/null
  done
fi
rm -rf "$RUN_DIR" "$CILIUM_RUN_DIR"
rm -rf "$STATE" 2>/dev/null || { umount_under "$STATE/"; rm -rf "$STATE"; }
rm -f "$KUBECONFIG_OUT"

# 8. Report anything that survived.
left=()
pgrep -f "$CONTAINERD_SOCK" >/dev/null 2>&1 && left+=("processes using $CONTAINERD_SOCK")
# Any process still running one of the built binaries (the agents, the
# control plane, containerd, runc).
for p in $(pgrep -f "^$BIN/" 2>/dev/null); do
  left+=("process $p ($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-80))")
done
ipset list -n 2>/dev/null | grep -qE '^(cilium_|KUBE-|kube-router-)' && left+=("ipsets")
for be in "" -legacy; do ip6tables$be-save 2>/dev/null | grep -qE 'KUBE-|CILIUM_' && left+=("ip6tables$be rules"); done
compgen -G "/run/netns/cni-*" >/dev/null && left+=("network namespaces /run/netns/cni-*")
[ -d "$STATE" ] && left+=("$STATE")
grep -qE " ($(echo "$STATE|$RUN_DIR|/run/netns/cni-|$CILIUM_CGROUP_ROOT" | sed 's#/#\\/#g')) " /proc/self/mountinfo && left+=("mounts")
ip link show "$NODE_IFACE" >/dev/null 2>&1 && left+=("$NODE_IFACE")
ip -o link show | grep -qE ': (cilium_|lxc)' && left+=("cilium interfaces")
ip link show "$POD_BRIDGE" >/dev/null 2>&1 && left+=("$POD_BRIDGE")
for be in "" -legacy; do iptables$be-save 2>/dev/null | grep -qE 'KUBE-|CILIUM_' && left+=("iptables$be rules"); done
[ -d /sys/fs/cgroup/memory/kubepods ] && left+=("kubepods cgroups")
if [ ${#left[@]} -gt 0 ]; then
  log "down: LEFTOVERS: ${left[*]}"
  exit 1
fi
log "test cluster stopped, machine clean"
