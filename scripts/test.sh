#!/usr/bin/env bash
# `make test` once the static binaries and the images are built: builds every test binary,
# then runs them all with berth-test-run (qemu-tests/src/runner/): each QEMU scenario as a job
# of its own and every host test binary whole (as `cargo test` runs it), side by side on the
# machine's cores as far as the host resources they claim allow (host test binaries one at a
# time, the reproducibility test alone), then the doc tests. Each step is timed
# (scripts/timed.sh) and the step table printed at the end, whatever failed.
#
# Usage: scripts/test.sh    Environment: CARGO (default cargo), BERTH_TEST_LANES (jobs at once).
set -u
cd "$(dirname "$0")/.."
cargo=${CARGO:-cargo}
status=0
step() {
    scripts/timed.sh "$@" || status=1
}

step "test build" "$cargo" test --workspace --no-run
if [ "$status" = 0 ]; then
    step "tests" "$cargo" run -q -p berth-qemu-tests --bin berth-test-run -- --workspace
    step "doc tests" "$cargo" test --workspace --doc
fi
scripts/timed.sh --report
exit "$status"
