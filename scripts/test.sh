#!/usr/bin/env bash
# `make test` once the static binaries and the images are built: builds every test binary,
# runs the host tests (each test binary whole and one at a time, as `cargo test` does) and the
# doc tests, then the QEMU scenarios side by side on the machine's cores (berth-test-run,
# qemu-tests/src/runner/). Each step is timed (scripts/timed.sh) and the step table printed at
# the end, whatever failed; every step runs even after an earlier one failed, except that
# nothing runs without a test build.
#
# Usage: scripts/test.sh    Environment: CARGO (default cargo), BERTH_TEST_LANES (QEMU lanes).
set -u
cd "$(dirname "$0")/.."
cargo=${CARGO:-cargo}
runner=("$cargo" run -q -p berth-qemu-tests --bin berth-test-run --)
status=0
step() {
    scripts/timed.sh "$@" || status=1
}

step "test build" "$cargo" test --workspace --no-run
if [ "$status" = 0 ]; then
    step "host tests" "${runner[@]}" --workspace --exclude berth-qemu-tests --per-binary --lanes 1
    step "doc tests" "$cargo" test --workspace --exclude berth-qemu-tests --doc
    step "QEMU scenarios" "${runner[@]}"
fi
scripts/timed.sh --report
exit "$status"
