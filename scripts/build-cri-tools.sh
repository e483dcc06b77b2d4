#!/bin/sh
# Build the CRI judges, `crictl` and `critest` from sigs.k8s.io/cri-tools, into a cache outside
# the repository keyed by version, and skip the build when both binaries are already there.
#
# Usage: scripts/build-cri-tools.sh          (prints the cache directory on its last line)
# Environment:
#   BERTH_CACHE_DIR     cache root (default /var/cache/berth); binaries land in
#                       $BERTH_CACHE_DIR/cri-tools/<version>/{crictl,critest}
#   CRI_TOOLS_VERSION   the cri-tools release (default v1.37.0, the one matching the CRI
#                       proto vendored in cri/proto/, k8s.io/cri-api v0.37.x)
#
# How: cri-tools has no `replace` directives, but critest is not a `main` package — its
# Makefile builds it with `go test -c` from cmd/critest — so `go install …@version` can give
# crictl only. A throw-away module that requires cri-tools at the release builds both; with
# nothing else required, minimal version selection picks exactly the versions cri-tools'
# own go.mod pins (what its vendor/ holds). CGO_ENABLED=0 and -trimpath as upstream, the
# version stamped into pkg/version like upstream's `make`. Only the Go module proxy is used.
set -eu

version=${CRI_TOOLS_VERSION:-v1.37.0}
cache_root=${BERTH_CACHE_DIR:-/var/cache/berth}
out="$cache_root/cri-tools/$version"

if [ -x "$out/crictl" ] && [ -x "$out/critest" ]; then
    echo "build-cri-tools: cached: $out/crictl, $out/critest" >&2
    echo "$out"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    if [ -x /usr/local/go/bin/go ]; then
        PATH="$PATH:/usr/local/go/bin"
    else
        echo "build-cri-tools: no Go toolchain (go) on PATH or in /usr/local/go/bin" >&2
        exit 1
    fi
fi

start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/berth-cri-tools.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "build-cri-tools: building sigs.k8s.io/cri-tools $version with $(go version) in $work" >&2

cd "$work"
cat >go.mod <<EOF
// Throw-away module: builds crictl and critest of sigs.k8s.io/cri-tools $version.
module berth.local/cri-tools-build

go 1.26

require sigs.k8s.io/cri-tools $version
EOF

export CGO_ENABLED=0
export GOFLAGS="-mod=mod -trimpath -buildvcs=false"
ldflags="-X sigs.k8s.io/cri-tools/pkg/version.Version=${version#v}"

echo "build-cri-tools: go mod download (module graph of cri-tools $version)" >&2
# `go` may raise the go directive to what cri-tools needs; that is fine for a scratch module.
go get "sigs.k8s.io/cri-tools@$version" >&2

echo "build-cri-tools: go build sigs.k8s.io/cri-tools/cmd/crictl" >&2
go build -ldflags "$ldflags" -o crictl sigs.k8s.io/cri-tools/cmd/crictl

echo "build-cri-tools: go test -c sigs.k8s.io/cri-tools/cmd/critest" >&2
go test -c -ldflags "$ldflags" -o critest sigs.k8s.io/cri-tools/cmd/critest

./crictl --version >&2
mkdir -p "$out"
# Install both, then rename: a cache directory never holds half a build.
cp crictl "$out/.crictl.tmp"
cp critest "$out/.critest.tmp"
mv "$out/.crictl.tmp" "$out/crictl"
mv "$out/.critest.tmp" "$out/critest"
echo "build-cri-tools: built in $(($(date +%s) - start)) s: $out/crictl, $out/critest" >&2
echo "$out"
