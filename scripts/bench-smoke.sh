#!/usr/bin/env bash
# Smoke run of the load tool: builds the server and switchboard-bench in
# release mode, starts the server on the embedded SQLite in a temporary data
# dir on a free port with a known admin key, runs every scenario with
# --smoke (a few seconds, small numbers: correctness, not speed), and stops
# the server. Exits 0 only if every scenario passed.
#
#   scripts/bench-smoke.sh                  # all scenarios
#   scripts/bench-smoke.sh fanout idle      # only these
#   BENCH_SMOKE_SKIP="catchup" scripts/bench-smoke.sh   # skip some, shown as SKIPPED
#
# The catchup scenario fails with "UNSUPPORTED" while the server ignores
# /ws?since= (resume); that is reported as such, never as a pass.
set -euo pipefail
cd "$(dirname "$0")/.."

scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
    scenarios=(connect fanout subscribers idle ingest catchup slow accept)
fi
skip=" ${BENCH_SMOKE_SKIP:-} "
# Longest one smoke scenario may take before it counts as hung.
per_scenario_timeout=300

echo "== building (release)"
cargo build --release --locked -p switchboard -p switchboard-bench
target_dir="${CARGO_TARGET_DIR:-target}"
server_bin="$target_dir/release/switchboard"
bench_bin="$target_dir/release/switchboard-bench"

data_dir=$(mktemp -d -t switchboard-bench-smoke.XXXXXX)
key="smoke-$(od -An -N16 -tx8 /dev/urandom | tr -d ' \n')"
server_pid=""
stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    server_pid=""
}
cleanup() {
    stop_server
    rm -rf "$data_dir"
}
trap cleanup EXIT INT TERM

echo "== starting the server (SQLite in $data_dir)"
# Port 0: the server picks a free port and prints it.
SWITCHBOARD__AUTH__API_KEY="$key" \
SWITCHBOARD__HTTP__PORT=0 \
SWITCHBOARD__HTTP__ADDRESS=127.0.0.1 \
SWITCHBOARD__DATA_DIR="$data_dir" \
SWITCHBOARD__DATABASE__URL="" \
RUST_LOG="${RUST_LOG:-warn}" \
    "$server_bin" run >"$data_dir/server.log" 2>&1 &
server_pid=$!
port=""
for _ in $(seq 1 300); do
    port=$(sed -n 's/^switchboard is listening on port \([0-9]*\).*/\1/p' "$data_dir/server.log" | head -n1)
    [ -n "$port" ] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "the server exited at start:" >&2
        cat "$data_dir/server.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "the server did not report its port within 30 s:" >&2
    cat "$data_dir/server.log" >&2
    exit 1
fi
echo "   listening on port $port (pid $server_pid)"

export SWITCHBOARD_BENCH_URL="ws://127.0.0.1:$port/ws"
export SWITCHBOARD_BENCH_KEY="$key"

declare -A outcome
failed=0
for scenario in "${scenarios[@]}"; do
    if [[ "$skip" == *" $scenario "* ]]; then
        outcome[$scenario]="SKIPPED (BENCH_SMOKE_SKIP)"
        continue
    fi
    extra=()
    if [ "$scenario" = connect ]; then
        # The generic scenario publishes nothing itself: give it a source.
        extra=(--publish-rate 20)
    fi
    echo
    echo "== $scenario --smoke"
    log="$data_dir/$scenario.out"
    set +e
    timeout "$per_scenario_timeout" "$bench_bin" "$scenario" --smoke --server-pid "$server_pid" "${extra[@]}" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    set -e
    if [ "$status" -eq 0 ]; then
        outcome[$scenario]="PASS"
    elif grep -q "UNSUPPORTED" "$log"; then
        outcome[$scenario]="FAIL: UNSUPPORTED by this server (see above)"
        failed=1
    elif [ "$status" -eq 124 ]; then
        outcome[$scenario]="FAIL: timed out after ${per_scenario_timeout}s"
        failed=1
    else
        outcome[$scenario]="FAIL (exit $status)"
        failed=1
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "the server died during $scenario:" >&2
        tail -n 50 "$data_dir/server.log" >&2
        outcome[$scenario]="FAIL: the server died"
        failed=1
        break
    fi
done

stop_server
echo
echo "== bench smoke summary"
for scenario in "${scenarios[@]}"; do
    printf '   %-12s %s\n' "$scenario" "${outcome[$scenario]:-not run}"
done
exit "$failed"
