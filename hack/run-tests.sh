#!/usr/bin/env bash
# hack/run-tests.sh — build every test binary of the workspace, then run them TEST_JOBS at a
# time (default 2) instead of one after another as `cargo test` does.
#
#   hack/run-tests.sh              # all test binaries, then the doc tests
#   TEST_JOBS=1 hack/run-tests.sh  # one at a time (what `cargo test --workspace` does)
#   hack/run-tests.sh -- --nocapture   # arguments after -- go to every test binary
#   TEST_ONLY="etcd_client core_runtime" hack/run-tests.sh   # just these binaries, no doc tests
#
# Why: most of `make test` is e2e binaries waiting on real etcd and Prometheus (failure
# timeouts, certificate lifetimes, scrape and rule intervals), not using the CPU; running two
# side by side roughly halves that wall time. The e2e binaries are independent: each kubesim
# claims its own bridge and subnet, and ports come from per-process offsets (e2e::local_etcd).
#
# Each binary runs in its package's directory, as under `cargo test`. Its output goes to
# target/test-logs/<binary>.log; a line per binary says how it ended and how long it took,
# and every failed binary's log is printed at the end. The slowest binaries start first
# (SLOW below), so the lanes end at about the same time.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
CARGO="${CARGO:-cargo}"
JOBS="${TEST_JOBS:-2}"
LOGS="$REPO_ROOT/target/test-logs"
ARGS=()
if [[ "${1:-}" == "--" ]]; then
    shift
    ARGS=("$@")
fi

# Longest first (seconds measured on the 2-core CI machine); everything else follows.
SLOW=(
    etcd_operator_e2e etcd_operator_ca_rotation monitoring_alerts etcd_operator_tls
    etcd_operator_maintenance etcd_restore etcd_recovery alertmanager_ha etcd_backup
    etcd_operator_ownership
    leader_fencing
)

mkdir -p "$LOGS"
rm -f "$LOGS"/*.log

# "<name> <cwd> <executable>" per test binary, from cargo's own build messages.
mapfile -t BINARIES < <(
    "$CARGO" test --workspace --locked --no-run --message-format=json-render-diagnostics |
        python3 -c '
import json, os, sys
seen = {}
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    if not m.get("profile", {}).get("test"):
        continue
    t = m["target"]
    # Unit tests of a library and integration tests have distinct target names; a binary
    # target with tests gets its kind as a prefix so it cannot clash with its library.
    name = t["name"] if t["kind"] != ["bin"] else "bin-" + t["name"]
    seen[name] = (os.path.dirname(m["manifest_path"]), m["executable"])
for name, (cwd, exe) in sorted(seen.items()):
    print(name, cwd, exe)
'
)
if [[ ${#BINARIES[@]} -eq 0 ]]; then
    echo "run-tests: cargo built no test binaries" >&2
    exit 1
fi

if [[ -n "${TEST_ONLY:-}" ]]; then
    KEPT=()
    for b in "${BINARIES[@]}"; do
        [[ " $TEST_ONLY " == *" ${b%% *} "* ]] && KEPT+=("$b")
    done
    BINARIES=("${KEPT[@]}")
fi

# Order: SLOW in its order, then the rest by name.
ORDERED=()
for slow in "${SLOW[@]}"; do
    for b in "${BINARIES[@]}"; do
        [[ "${b%% *}" == "$slow" ]] && ORDERED+=("$b")
    done
done
for b in "${BINARIES[@]}"; do
    name="${b%% *}"
    [[ " ${SLOW[*]} " == *" $name "* ]] || ORDERED+=("$b")
done

echo "run-tests: ${#ORDERED[@]} test binaries, $JOBS at a time; logs in ${LOGS#"$REPO_ROOT"/}"
START=$SECONDS
FAILED=()
declare -A RUNNING=() # pid -> name

run_one() { # name cwd exe
    local name="$1" cwd="$2" exe="$3" began=$SECONDS rc=0
    (cd "$cwd" && "$exe" "${ARGS[@]}") >"$LOGS/$name.log" 2>&1 || rc=$?
    local summary
    summary="$(grep -E '^test result:' "$LOGS/$name.log" | tail -1 || true)"
    if [[ $rc -eq 0 ]]; then
        echo "run-tests: ok     $name ($((SECONDS - began)) s) ${summary#test result: }"
    else
        echo "run-tests: FAILED $name ($((SECONDS - began)) s, exit $rc) ${summary#test result: }"
    fi
    return "$rc"
}

reap() { # waits for one lane to finish and records a failure
    local pid rc=0
    wait -n -p pid "${!RUNNING[@]}" || rc=$?
    [[ $rc -ne 0 ]] && FAILED+=("${RUNNING[$pid]}")
    unset "RUNNING[$pid]"
}

for b in "${ORDERED[@]}"; do
    read -r name cwd exe <<<"$b"
    while [[ ${#RUNNING[@]} -ge $JOBS ]]; do reap; done
    run_one "$name" "$cwd" "$exe" &
    RUNNING[$!]="$name"
done
while [[ ${#RUNNING[@]} -gt 0 ]]; do reap; done

if [[ -z "${TEST_ONLY:-}" ]]; then
    echo "run-tests: doc tests"
    if ! "$CARGO" test --workspace --locked --doc >"$LOGS/doctests.log" 2>&1; then
        FAILED+=(doctests)
    fi
fi

echo "run-tests: done in $((SECONDS - START)) s"
if [[ ${#FAILED[@]} -gt 0 ]]; then
    for name in "${FAILED[@]}"; do
        echo
        echo "===================== $name: log ====================="
        cat "$LOGS/$name.log"
    done
    echo
    echo "run-tests: FAILED: ${FAILED[*]}" >&2
    exit 1
fi
echo "run-tests: all passed"
