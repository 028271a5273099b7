#!/usr/bin/env bash
# Builds the pinned k3d (cluster/versions.py K3D_VERSION) from its Go module
# for the contract tests (tests/local/test_k3d_contract.py), without a release
# download: the Go module proxy serves github.com/k3d-io/k3d/v5's source.
# Cached in $DASHI_K3D_CACHE (default /var/cache/dashi-cluster-k3d); prints
# the binary's path. Exit 3 when Go is not installed.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=$(python3 -c 'import re;print(re.search(r"K3D_VERSION = \"(v[^\"]+)\"", open("cluster/versions.py").read())[1])')
# The k3s default a release build bakes in (Makefile: -X version.K3sVersion);
# v5.9.0 shipped with v1.33.4-k3s1 (k3d-io/k3d issue #1604).
K3S_DEFAULT=$(python3 -c 'import re;print(re.search(r"K3S_VERSION = \"(v[^\"]+)\"", open("cluster/versions.py").read())[1])')
CACHE=${DASHI_K3D_CACHE:-/var/cache/dashi-cluster-k3d}
OUT="$CACHE/$VERSION/k3d"

if [ -x "$OUT" ] && "$OUT" version 2>/dev/null | grep -q "k3d version $VERSION"; then
  echo "$OUT"
  exit 0
fi
command -v go >/dev/null 2>&1 || { echo "build_k3d: go is not installed" >&2; exit 3; }

mkdir -p "$CACHE/$VERSION"
WORK=$(mktemp -d)
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
export GOPATH="$CACHE/gopath" GOCACHE="$CACHE/gocache" GOWORK=off GOFLAGS=-mod=mod
# `go install module@version` also asks the proxy for the module's version
# list, which it refuses for k3d; downloading the one version works.
DIR=$(go mod download -json "github.com/k3d-io/k3d/v5@$VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')
cp -r "$DIR" "$WORK/src"
chmod -R u+w "$WORK/src"
(cd "$WORK/src" && go build -trimpath \
  -ldflags "-s -w -X github.com/k3d-io/k3d/v5/version.Version=$VERSION -X github.com/k3d-io/k3d/v5/version.K3sVersion=$K3S_DEFAULT" \
  -o "$OUT.tmp" .) >&2
mv "$OUT.tmp" "$OUT"
echo "$OUT"
