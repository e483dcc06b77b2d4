#!/bin/sh
# Build the CRI judges, `crictl` and `critest` from sigs.k8s.io/cri-tools, into a cache outside
# the repository keyed by version, and skip the build of each one already there.
#
# Usage: scripts/build-cri-tools.sh [crictl] [critest]   (default both; prints the cache
#                                                          directory on its last line)
#        scripts/build-cri-tools.sh --background LOG [crictl] [critest]
#            starts the build detached, output into LOG, and returns at once: `make test`
#            starts crictl's build (its host tests need crictl only; critest is for
#            `make test-cri`) before cargo's, so the Go build fills the cores cargo leaves idle;
#            the tests' own call waits for it (the build holds a lock) and finds it cached.
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

if [ "${1:-}" = --background ]; then
    log=${2:?--background needs a log file}
    shift 2
    mkdir -p "$(dirname "$log")"
    echo "build-cri-tools: building ${*:-crictl critest} in the background (log: $log)" >&2
    nohup "$0" "$@" >"$log" 2>&1 </dev/null &
    exit 0
fi

version=${CRI_TOOLS_VERSION:-v1.37.0}
cache_root=${BERTH_CACHE_DIR:-/var/cache/berth}
out="$cache_root/cri-tools/$version"
tools=${*:-crictl critest}
for tool in $tools; do
    case $tool in
    crictl | critest) ;;
    *)
        echo "build-cri-tools: unknown tool $tool (crictl, critest)" >&2
        exit 2
        ;;
    esac
done

missing() {
    m=
    for tool in $tools; do
        [ -x "$out/$tool" ] || m="$m $tool"
    done
    echo "$m"
}

if [ -z "$(missing)" ]; then
    echo "build-cri-tools: cached: $(for t in $tools; do printf '%s ' "$out/$t"; done)" >&2
    echo "$out"
    exit 0
fi

# One build at a time per version (a background build and a test's call): the second waits,
# then finds what the first built.
mkdir -p "$cache_root/cri-tools"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache_root/cri-tools/$version.lock"
    if ! flock -n 9; then
        echo "build-cri-tools: another build of cri-tools $version is running; waiting" >&2
        flock 9
    fi
    if [ -z "$(missing)" ]; then
        echo "build-cri-tools: built meanwhile: $out" >&2
        echo "$out"
        exit 0
    fi
fi
tools=$(missing)

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
echo "build-cri-tools: building$tools of sigs.k8s.io/cri-tools $version with $(go version) in $work" >&2

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

mkdir -p "$out"
for tool in $tools; do
    if [ "$tool" = crictl ]; then
        echo "build-cri-tools: go build sigs.k8s.io/cri-tools/cmd/crictl" >&2
        go build -ldflags "$ldflags" -o crictl sigs.k8s.io/cri-tools/cmd/crictl
        ./crictl --version >&2
    else
        echo "build-cri-tools: go test -c sigs.k8s.io/cri-tools/cmd/critest" >&2
        go test -c -ldflags "$ldflags" -o critest sigs.k8s.io/cri-tools/cmd/critest
    fi
    # Copy, then rename: the cache never holds half a binary.
    cp "$tool" "$out/.$tool.tmp"
    mv "$out/.$tool.tmp" "$out/$tool"
done
echo "build-cri-tools: built$tools in $(($(date +%s) - start)) s: $out" >&2
echo "$out"
