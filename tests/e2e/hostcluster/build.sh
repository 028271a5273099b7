#!/usr/bin/env bash
# Build every binary and image the e2e test cluster needs, from pinned
# versions, into $DASHI_E2E_CACHE (default /var/cache/dashi-cluster-e2e).
#
#   tests/e2e/hostcluster/build.sh            # everything (skips pieces already built)
#   tests/e2e/hostcluster/build.sh PIECE...   # only some: deps kubernetes etcd
#                                     #   containerd runc cilium network-policy-api kube-router coredns images
#
# Every piece is keyed on its pinned version (versions.env): a second run
# only checks stamps and returns in seconds.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root

JOBS="${DASHI_E2E_JOBS:-2}"   # `go build -p`; the target machine has 2 cores
mkdir -p "$BIN" "$IMAGES" "$CACHE/src" "$GOMODCACHE" "$GOCACHE"

timed() {  # timed NAME CMD... : run a piece and report its wall time
  local name=$1 t0; shift; t0=$(date +%s)
  "$@"
  log "$name: done in $(( $(date +%s) - t0 ))s"
}

# Download module PATH@VERSION (through the Go module proxy) and print its
# directory in the module cache (read-only there).
mod_dir() {
  local d
  d=$(go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -n "$d" ] || die "go mod download $1 failed"
  echo "$d"
}

# Copy a downloaded module to a writable directory so we can build it as
# the main module (then its own replace directives apply).
writable_copy() {  # writable_copy MODULE@VERSION DEST
  local src; src=$(mod_dir "$1")
  if [ ! -f "$2/.copied" ]; then
    rm -rf "$2"; mkdir -p "$2"
    cp -a "$src/." "$2/"; chmod -R u+w "$2"
    touch "$2/.copied"
  fi
}

# A piece that is one static binary `go install`ed from its own module.
go_install_piece() {  # go_install_piece NAME VERSION PACKAGE
  local out; out=$(piece_dir "$1" "$2")
  piece_ok "$1" "$2" && { log "$1 $2: cached"; return; }
  mkdir -p "$out"
  GOBIN="$out" CGO_ENABLED=0 go install -p "$JOBS" -trimpath -ldflags "-s -w" "$3@$2"
  touch "$out/.ok"
}

# ---------------------------------------------------------------- deps --
build_deps() {
  # Runtime tools the node needs on the host (what k3s-root / the kubelet
  # and cilium expect: iptables, ipset, conntrack, nsenter, socat, ...),
  # the reference CNI plugins (loopback), gcc for the pause binary,
  # busybox for a shell inside the agnhost image. All Debian packages.
  local pkgs=(iptables ipset conntrack ethtool socat iproute2 util-linux mount
              nftables containernetworking-plugins kmod procps psmisc
              libseccomp-dev pkg-config   # for building runc
              build-essential python3 ca-certificates busybox-static
              clang-19 llvm-19)   # cilium compiles its BPF with clang 19 at run time
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# ---------------------------------------------------------- kubernetes --
# kube-apiserver, controller-manager, scheduler, kubelet, kube-proxy,
# kubectl, kubeadm (only its cert/kubeconfig phases) and the agnhost test image binary, all from ONE k8s.io/kubernetes
# source tree. The module zip lacks staging/ (each staging dir is its own
# module), so the `./staging/src/k8s.io/X` replaces are pointed at the
# published k8s.io/X v0.<minor>.<patch> modules of the same release.
build_kubernetes() {
  local v=$K8S_VERSION out; out=$(piece_dir kubernetes "$v")
  piece_ok kubernetes "$v" && { log "kubernetes $v: cached"; return; }
  local src="$CACHE/src/kubernetes-$v" staging_v="v0.${v#v1.}"
  writable_copy "k8s.io/kubernetes@$v" "$src"
  (
    cd "$src"
    rm -f go.work go.work.sum
    sed -i -E "s#^(\s*k8s\.io/[a-z0-9-]+) => \./staging/src/(k8s\.io/[a-z0-9-]+)\$#\1 => \2 $staging_v#" go.mod
    ! grep -q '=> ./staging' go.mod || die "unrewritten staging replace in go.mod"
    local major minor ld pkg
    major=${v#v}; major=${major%%.*}; minor=${v#v*.}; minor=${minor%%.*}
    # Same version stamps hack/lib/version.sh would set, so kubelet and
    # apiserver report the real release (version-skew checks use them).
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
      ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    mkdir -p "$out"
    # CGO off like upstream's release builds of these components; -s -w
    # keeps linking (the slow part on 2 cores) and the binaries small.
    # One `go build` per missing binary: an interrupted build resumes.
    local missing=() c
    for c in kube-apiserver kube-controller-manager kube-scheduler kubelet \
             kube-proxy kubectl kubeadm agnhost; do
      [ -x "$out/$c" ] || missing+=("$c")
    done
    if [ ${#missing[@]} -gt 0 ]; then
      local paths=()
      for c in "${missing[@]}"; do
        if [ "$c" = agnhost ]; then paths+=(./test/images/agnhost); else paths+=("./cmd/$c"); fi
      done
      CGO_ENABLED=0 go build -p "$JOBS" -trimpath -tags providerless,notest \
        -ldflags "-s -w $ld" -o "$out/" "${paths[@]}"
    fi
    cp test/images/agnhost/VERSION "$out/agnhost.VERSION"
  )
  touch "$out/.ok"
}

# ---------------------------------------------------------------- etcd --
# The etcd server is only published as the library module
# go.etcd.io/etcd/server/v3 (the root module that has main.go points at
# ./server via replace), so build a two-line wrapper main around etcdmain.
build_etcd() {
  local v=$ETCD_VERSION out; out=$(piece_dir etcd "$v")
  piece_ok etcd "$v" && { log "etcd $v: cached"; return; }
  local src="$CACHE/src/etcd-wrapper-$v"
  mkdir -p "$src" "$out"
  cat >"$src/main.go" <<'EOF'
// Wrapper so etcd can be built from the go.etcd.io/etcd/server/v3 module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  (
    cd "$src"
    [ -f go.mod ] || go mod init dashi-e2e/etcd >/dev/null 2>&1
    go mod edit -require="go.etcd.io/etcd/server/v3@$v"
    go mod tidy >/dev/null
    CGO_ENABLED=0 go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$out/etcd" .
  )
  touch "$out/.ok"
}

# ---------------------------------------------------------- containerd --
# containerd 2.x, its runc shim and ctr, all from the same module version
# (Debian's containerd 1.6 shim speaks an older protocol).
build_containerd() {
  local v=$CONTAINERD_VERSION out; out=$(piece_dir containerd "$v")
  piece_ok containerd "$v" && { log "containerd $v: cached"; return; }
  # containerd's go.mod has exclude directives, so `go install pkg@version`
  # refuses it: build it as the main module from a copy.
  local src="$CACHE/src/containerd-$v"
  writable_copy "github.com/containerd/containerd/v2@$v" "$src"
  mkdir -p "$out"
  (
    cd "$src"
    # no_btrfs/no_devmapper/no_zfs: snapshotters we don't use and that want
    # cgo headers; overlayfs is what the CRI plugin uses here.
    CGO_ENABLED=0 go build -p "$JOBS" -trimpath -tags no_btrfs,no_devmapper,no_zfs \
      -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$v" \
      -o "$out/" ./cmd/containerd ./cmd/containerd-shim-runc-v2 ./cmd/ctr
  )
  touch "$out/.ok"
}

# ---------------------------------------------------------------- runc --
# The runc containerd $CONTAINERD_VERSION is tested with (Debian 12's is
# 1.1.5). cgo + libseccomp like upstream's release build.
build_runc() {
  local v=$RUNC_VERSION out; out=$(piece_dir runc "$v")
  piece_ok runc "$v" && { log "runc $v: cached"; return; }
  mkdir -p "$out"
  GOBIN="$out" CGO_ENABLED=1 go install -p "$JOBS" -trimpath -tags seccomp,urfave_cli_no_docs \
    -ldflags "-s -w -X main.gitCommit=$v" "github.com/opencontainers/runc@$v"
  touch "$out/.ok"
}

# -------------------------------------------------------------- cilium --
# The pod network AND the NetworkPolicy enforcer (eBPF). Built as the main
# module (its go.mod has a replace directive); agent, CNI plugin and CLI. The agent compiles its BPF
# programs at run time with clang from the bpf/ sources, which we install
# next to the binaries (its --lib-dir).
build_cilium() {
  local v=$CILIUM_VERSION out; out=$(piece_dir cilium "$v")
  piece_ok cilium "$v" && { log "cilium $v: cached"; return; }
  local src="$CACHE/src/cilium-$v"
  writable_copy "github.com/cilium/cilium@$v" "$src"
  mkdir -p "$out"
  (
    cd "$src"
    # The one patch we carry: cilium's BGP control plane needs
    # github.com/osrg/gobgp/v4, which the Go module proxy reachable here
    # refuses (403). BGP is off by default and unused on one node, so drop
    # its hive cell from agent and operator and the `cilium-dbg bgp`
    # commands; nothing else imports pkg/bgp. Idempotent.
    sed -i -e '\#"github.com/cilium/cilium/pkg/bgp"$#d' -e '/^\t\tbgp\.Cell,$/d' daemon/cmd/cells.go
    sed -i -e '\#"github.com/cilium/cilium/operator/pkg/bgp"$#d' -e '/^\t\tbgp\.Cell,$/d' operator/cmd/root.go
    rm -f cilium-dbg/cmd/bgp.go cilium-dbg/cmd/bgp_*.go
    # ...and let the agent's REST API fall back to its generated "not
    # implemented" responders for the three /bgp endpoints.
    sed -i -E 's/^(\tBgpGetBgp[A-Za-z]+Handler +bgp\.[A-Za-z]+Handler)$/\1 `optional:"true"`/' api/v1/server/server.go
    [ "$(grep -c 'Handler `optional:"true"`' api/v1/server/server.go)" -ge 3 ] || die "cilium API patch did not apply"
    ! grep -q 'bgp\.Cell' daemon/cmd/cells.go operator/cmd/root.go || die "cilium BGP patch did not apply"
    local ld="-s -w -X 'github.com/cilium/cilium/pkg/version.ciliumVersion=${v#v} dashi-e2e'"
    # The operator is NOT built: its packages import
    # sigs.k8s.io/mcs-api/controllers, which the proxy also refuses, too deep
    # to cut out. On one node with ipam=kubernetes the only operator duty we
    # need is creating Cilium's CRDs; up.sh applies the same CRD files.
    if [ ! -x "$out/cilium-agent" ] || [ ! -x "$out/cilium-cni" ] || [ ! -x "$out/cilium-dbg" ]; then
      CGO_ENABLED=0 go build -p "$JOBS" -trimpath -tags osusergo -ldflags "$ld" \
        -o "$out/" ./daemon ./plugins/cilium-cni ./cilium-dbg
      mv "$out/daemon" "$out/cilium-agent"
    fi
    rm -rf "$out/lib" "$out/crds"; mkdir -p "$out/lib" "$out/crds"
    cp -a bpf "$out/lib/bpf"
    cp pkg/k8s/apis/cilium.io/client/crds/*/*.yaml "$out/crds/"
  )
  touch "$out/.ok"
}

# -------------------------------------------------- network-policy-api --
# The ClusterNetworkPolicy CRD, as sigs.k8s.io/network-policy-api ships it
# in its module (config/crd/<channel>/): nothing to build, only copied out
# of the module cache so up.sh needs neither Go nor the proxy.
build_network_policy_api() {
  local v=$NETWORK_POLICY_API_VERSION out; out=$(piece_dir network-policy-api "$v")
  piece_ok network-policy-api "$v" && { log "network-policy-api $v: cached"; return; }
  local src; src=$(mod_dir "sigs.k8s.io/network-policy-api@$v")
  rm -rf "$out"; mkdir -p "$out/standard" "$out/experimental"
  cp "$src/config/crd/standard/policy.networking.k8s.io_clusternetworkpolicies.yaml" "$out/standard/"
  cp "$src/config/crd/experimental/policy.networking.k8s.io_clusternetworkpolicies.yaml" "$out/experimental/"
  touch "$out/.ok"
}

# ------------------------------------------------------------- coredns --
build_coredns() { go_install_piece coredns "$COREDNS_VERSION" github.com/coredns/coredns; }

# --------------------------------------------------------- kube-router --
# The kube-router lane's enforcer: the NetworkPolicy controller k3s embeds
# (k3s pkg/agent/netpol), from its own module at the one version the Go
# module proxy serves. Advisories are reported against v2.1.0; it is a
# local test dataplane here and never shipped.
build_kube_router() {
  go_install_piece kube-router "$KUBE_ROUTER_VERSION" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
}

# -------------------------------------------------------------- images --
# Three images, assembled as docker-archive tarballs by mkimage.py (no
# docker daemon needed), under the exact names the cluster will ask for, so
# nothing is ever pulled. up.sh imports them into containerd.
build_images() {
  local k8s; k8s=$(piece_dir kubernetes "$K8S_VERSION")
  local src="$CACHE/src/kubernetes-$K8S_VERSION"
  piece_ok kubernetes "$K8S_VERSION" || die "build kubernetes first"
  piece_ok coredns "$COREDNS_VERSION" || die "build coredns first"
  local key="pause-$PAUSE_VERSION.coredns-$COREDNS_VERSION.agnhost-$AGNHOST_VERSION-k8s-$K8S_VERSION.v2"
  [ -f "$IMAGES/.ok-$key" ] && { log "images: cached"; return; }
  rm -f "$IMAGES"/*.tar "$IMAGES"/.ok-*
  local tmp; tmp=$(mktemp -d)
  # (a) pause: upstream's own pause.c from the same Kubernetes release,
  # built the way build/pause/Makefile does (static, -Os).
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-dashi-e2e" \
    -o "$tmp/pause" "$src/build/pause/linux/pause.c"
  strip "$tmp/pause"
  python3 "$E2E_DIR/mkimage.py" --out "$IMAGES/pause.tar" --name "$PAUSE_IMAGE" \
    --entrypoint '["/pause"]' --user 65535:65535 --file "$tmp/pause:/pause:0755"
  # (b) coredns: binary from `go install` at the version Kubernetes
  # $K8S_VERSION's kubeadm deploys, under kubeadm's image name.
  python3 "$E2E_DIR/mkimage.py" --out "$IMAGES/coredns.tar" --name "$COREDNS_IMAGE" \
    --entrypoint '["/coredns"]' --expose 53/udp --expose 53/tcp --expose 9153/tcp \
    --file "$(piece_dir coredns "$COREDNS_VERSION")/coredns:/coredns:0755" \
    --passwd
  # (c) agnhost, like test/images/agnhost/Dockerfile: ENTRYPOINT
  # ["/agnhost"], CMD ["pause"], the porter test cert/key, /uploads, the
  # agnhost-2 symlink and the image-defined user/group. Upstream's base is
  # alpine; we add a static busybox for /bin/sh & friends instead.
  local a="$src/test/images/agnhost"
  [ "$(cat "$k8s/agnhost.VERSION")" = "$AGNHOST_VERSION" ] \
    || die "kubernetes $K8S_VERSION has agnhost $(cat "$k8s/agnhost.VERSION"), want $AGNHOST_VERSION"
  python3 "$E2E_DIR/mkimage.py" --out "$IMAGES/agnhost.tar" --name "$AGNHOST_IMAGE" \
    --entrypoint '["/agnhost"]' --cmd '["pause"]' \
    --expose 80/tcp --expose 8080/tcp --expose 8081/tcp --expose 9376/tcp --expose 5000/tcp \
    --file "$k8s/agnhost:/agnhost:0755" --symlink /agnhost-2:agnhost \
    --file "$a/porter/localhost.crt:/localhost.crt:0644" \
    --file "$a/porter/localhost.key:/localhost.key:0644" \
    --dir /uploads --dir /tmp:1777 \
    --busybox /bin/busybox --passwd \
    --extra-user 'user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh' \
    --extra-group 'user-defined-in-image:x:1000:' \
    --extra-group 'group-defined-in-image:x:50000:user-defined-in-image'
  rm -rf "$tmp"
  touch "$IMAGES/.ok-$key"
  ls -la "$IMAGES" >&2
}

main() {
  local pieces=("$@")
  [ ${#pieces[@]} -gt 0 ] || pieces=(deps kubernetes etcd containerd runc cilium network-policy-api kube-router coredns images)
  local p
  for p in "${pieces[@]}"; do
    declare -F "build_${p//-/_}" >/dev/null || die "unknown piece: $p"
    timed "$p" "build_${p//-/_}"
  done
  log "all built under $BIN"
}
main "$@"
