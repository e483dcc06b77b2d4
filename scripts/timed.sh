#!/usr/bin/env bash
# Runs one step of `make test` and records its wall time and CPU time (user and system, of the
# command and every child it waited for) as a row of the step table, so the end of `make test`
# shows where the time went: scripts/test.sh prints the table.
#
# Usage: scripts/timed.sh LABEL COMMAND [ARGS...]   runs COMMAND, exits with its status
#        scripts/timed.sh --report                   prints the table
# Environment: BERTH_STEP_TIMES, the table file (tab-separated: label, wall, user, sys); the
# Makefile names a new one per make invocation. Unset: nothing is recorded.
set -u

table=${BERTH_STEP_TIMES:-}

if [ "${1:-}" = --report ]; then
    if [ -z "$table" ] || [ ! -s "$table" ]; then
        exit 0
    fi
    echo "==== make steps (wall and CPU seconds; CPU is user+sys of the step and its children) ===="
    awk -F'\t' '
        BEGIN { printf "%-22s %9s %9s %9s %9s\n", "step", "wall s", "user s", "sys s", "cpu/wall" }
        {
            printf "%-22s %9.1f %9.1f %9.1f %9.2f\n", $1, $2, $3, $4, ($2 > 0 ? ($3 + $4) / $2 : 0)
            w += $2; u += $3; s += $4
        }
        END { printf "%-22s %9.1f %9.1f %9.1f %9.2f\n", "total", w, u, s, (w > 0 ? (u + s) / w : 0) }
    ' "$table"
    exit 0
fi

label=${1:?usage: scripts/timed.sh LABEL COMMAND [ARGS...] | --report}
shift
started=$(date +%s.%N)
status=0
"$@" || status=$?
ended=$(date +%s.%N)
if [ -n "$table" ]; then
    # `times` (a builtin, so no subshell) prints the shell's own times, then its children's.
    times_out=$(mktemp)
    times >"$times_out"
    row=$(awk -v label="$label" -v s="$started" -v e="$ended" '
        function secs(t,   m) { m = t; sub(/m.*/, "", m); sub(/^[0-9]+m/, "", t); sub(/s$/, "", t); return m * 60 + t }
        NR == 2 { printf "%s\t%.1f\t%.1f\t%.1f\n", label, e - s, secs($1), secs($2) }
    ' "$times_out")
    rm -f "$times_out"
    mkdir -p "$(dirname "$table")"
    printf '%s\n' "$row" >>"$table"
    failed=
    [ "$status" = 0 ] || failed=" (exit status $status)"
    echo "timed: $(printf '%s' "$row" | awk -F'\t' '{printf "%s: %s s wall, %s s user, %s s sys", $1, $2, $3, $4}')$failed" >&2
fi
exit "$status"
