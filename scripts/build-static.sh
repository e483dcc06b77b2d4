#!/bin/sh
# Build every workspace binary statically linked against glibc, reproducibly.
#
# - `-C target-feature=+crt-static` links glibc statically; the explicit `--target` keeps
#   proc-macros and build scripts (which run on the build host) dynamic.
# - `--remap-path-prefix` rewrites CARGO_HOME and the target directory to fixed names for every
#   crate, and the checkout to `/berth` for the workspace's own crates only (through
#   scripts/rustc-wrapper/berth-rustc-workspace-wrapper, cargo's RUSTC_WORKSPACE_WRAPPER, named
#   without its directory so its path does not enter the units' hashes): the same sources give
#   byte-identical binaries from any checkout path, and dependencies are built with flags that
#   do not name the checkout, so checkouts sharing a target directory share their builds.
# - The release profile in the root Cargo.toml does thin LTO and strips.
#
# Usage: scripts/build-static.sh [extra cargo args...]
# Honours CARGO_TARGET_DIR and CARGO_HOME, and BERTH_STATIC_BINS: the binaries to build
# (default all five below; the reproducibility test's second checkout builds only the
# image's, `berth berth-init`). Prints the directory holding the binaries.
set -eu

TARGET=x86_64-unknown-linux-gnu
checkout=$(cd "$(dirname "$0")/.." && pwd -P)
cargo_home=${CARGO_HOME:-$HOME/.cargo}
if [ -d "$cargo_home" ]; then
    cargo_home=$(cd "$cargo_home" && pwd -P)
fi

# The target directory is always named explicitly (and remapped), so the flags are the same
# whether or not CARGO_TARGET_DIR is set: `make run` after `make test` rebuilds nothing.
target_dir=${CARGO_TARGET_DIR:-$checkout/target}
mkdir -p "$target_dir"
target_dir=$(cd "$target_dir" && pwd -P)
export CARGO_TARGET_DIR=$target_dir
flags="-C target-feature=+crt-static"
flags="$flags --remap-path-prefix=$cargo_home=/cargo"
flags="$flags --remap-path-prefix=$target_dir=/target"
export BERTH_REMAP_CHECKOUT=$checkout BERTH_REMAP_TARGET=$target_dir
PATH=$checkout/scripts/rustc-wrapper:$PATH
export RUSTC_WORKSPACE_WRAPPER=berth-rustc-workspace-wrapper

# Our flags, not whatever the environment carries (CARGO_ENCODED_RUSTFLAGS would win).
unset CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS
# The same environment whoever starts the build: cargo sets CARGO_MANIFEST_DIR, CARGO_PKG_*
# and friends for the processes it runs (a test, `cargo run`), and a build script's
# `rerun-if-env-changed` compares cargo's own environment. ring's build script (through
# cc-rs) watches CARGO_MANIFEST_DIR and CARGO_PKG_NAME, so a build started from a test (the
# reproducibility test's) re-ran it, rebuilt ring, rustls and reqwest and relinked every
# binary, and the next `make static` or `make run` did it all again.
for var in $(env | sed -n 's/^\(CARGO_PKG_[A-Z_]*\|CARGO_MANIFEST_[A-Z_]*\|CARGO_CRATE_NAME\|CARGO_BIN_NAME\|CARGO_PRIMARY_PACKAGE\|CARGO_TARGET_TMPDIR\|CARGO_RUSTC_CURRENT_DIR\|OUT_DIR\)=.*/\1/p'); do
    unset "$var"
done
# RUSTFLAGS is split on whitespace, so a remapped path must not contain any.
for p in "$checkout" "$cargo_home" "$target_dir"; do
    case $p in
    *[[:space:]]*)
        echo "build-static.sh: path with whitespace cannot be remapped: '$p'" >&2
        exit 1
        ;;
    esac
done

cd "$checkout"
# The source revision berthd reports in Version (and berthctl version prints).
if [ -z "${BERTH_REVISION:-}" ]; then
    BERTH_REVISION=$(git -C "$checkout" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
fi
export BERTH_REVISION
# The binaries images and tests need. berthd and berthctl are the multi-call `berth` under
# another name (it dispatches on argv[0]): links to it rather than two more LTO links of the
# whole engine, which cost minutes on two cores.
# Whichever binaries are asked for, every workspace member is selected (no -p), so each
# dependency is built with the same features and a binary is the same whether or not the
# others are built with it.
bins=
for bin in ${BERTH_STATIC_BINS:-berth berth-init berth-image berth-test-agent berth-snapshotter-conformance}; do
    bins="$bins --bin $bin"
done
# shellcheck disable=SC2086 # $bins is a list of arguments
RUSTFLAGS="$flags" cargo build --release --locked --target "$TARGET" \
    $bins --features berth-engine/conformance "$@"

bin_dir=$target_dir/$TARGET/release
for applet in berthd berthctl; do
    rm -f "$bin_dir/$applet"
    ln -s berth "$bin_dir/$applet"
done
echo "static binaries in $bin_dir:" >&2
for f in "$bin_dir"/*; do
    if [ -f "$f" ] && [ -x "$f" ]; then
        echo "  $(basename "$f")" >&2
    fi
done
echo "$bin_dir"
