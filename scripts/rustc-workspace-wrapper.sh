#!/bin/sh
# RUSTC_WORKSPACE_WRAPPER of scripts/build-static.sh: cargo runs rustc through this for the
# workspace's own crates only. It adds the remapping of the checkout (and, after it, of the
# target directory, which may lie inside the checkout: the last matching remap wins), so
# dependencies are compiled with flags that do not name the checkout at all, and two checkouts
# sharing a target directory share every dependency's build (the reproducibility test builds a
# second checkout in seconds instead of rebuilding the world).
#
# Usage (by cargo): rustc-workspace-wrapper.sh RUSTC ARGS...
# Environment: BERTH_REMAP_CHECKOUT, BERTH_REMAP_TARGET (set by build-static.sh).
set -eu
rustc=$1
shift
exec "$rustc" "$@" \
    "--remap-path-prefix=${BERTH_REMAP_CHECKOUT:?set by build-static.sh}=/berth" \
    "--remap-path-prefix=${BERTH_REMAP_TARGET:?set by build-static.sh}=/target"
