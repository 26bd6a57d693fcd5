#!/usr/bin/env bash
# Cluster benchmarks (issue 11), as reported in BENCHMARKS.md "Cluster
# (issue 11)". Starts switchboard nodes (release build) on fresh PostgreSQL
# databases, runs switchboard-bench against them, stops them and drops the
# databases. Every report is written as JSON to OUT_DIR and printed.
#
#   scripts/bench-cluster.sh [OUT_DIR]          # parts A and B
#   BENCH_CLUSTER_PARTS="A B C D" scripts/bench-cluster.sh bench/results/x
#   BENCH_CLUSTER_ROUNDS=2 BENCH_CLUSTER_FIRST_ROUND=3 ...   # rounds 3 and 4
#
# A  fanout, 1,000 subscribers at 100 events/s, the instance pinned to
#    node-a: subscribers on node-a (same node) or node-b (cross node, through
#    node-b's tailer), alternated BENCH_CLUSTER_ROUNDS times (default 2). Both
#    nodes pinned to core 0, the tool to core 1; CPU is both nodes' added up
#    (each node's in the JSON, `server_each`).
# B  ingest, 6 simulator instances asking 100k events/s each, against 1 node
#    and against 3 nodes (instances pinned round robin), alternated; nothing
#    pinned to a core: the nodes, PostgreSQL and the tool share the machine.
# C  one node, on PostgreSQL then on SQLite: ingest and fanout --rates 100,
#    server on core 0 and tool on core 1 as in BENCHMARKS.md's summary.
# D  (issue 12) one node, PostgreSQL then SQLite: `accept`, 50 HTTP clients
#    sending texts against 1, then 10 simulator instances; pinned as in C.
#
# Needs: the release build (`cargo build --release --workspace`), PostgreSQL
# reachable as BENCH_PG (default postgres://postgres@127.0.0.1:5432, trust
# auth) with createdb/dropdb, and `taskset`.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-bench/results/$(date -u +%F)-cluster}"
parts=" ${BENCH_CLUSTER_PARTS:-A B} "
rounds="${BENCH_CLUSTER_ROUNDS:-2}"
# Numbering of the rounds (file names), so a later run adds to OUT_DIR.
first_round="${BENCH_CLUSTER_FIRST_ROUND:-1}"
round_list=$(seq "$first_round" "$((first_round + rounds - 1))")
pg="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
pg_host=$(sed -E 's#^postgres(ql)?://([^@/]*@)?([^:/]*).*#\3#' <<<"$pg")
pg_port=$(sed -nE 's#^postgres(ql)?://([^@/]*@)?[^:/]*:([0-9]+).*#\3#p' <<<"$pg")
pg_user=$(sed -nE 's#^postgres(ql)?://([^:@/]*)(:[^@]*)?@.*#\2#p' <<<"$pg")
target_dir="${CARGO_TARGET_DIR:-target}"
server_bin="$target_dir/release/switchboard"
bench_bin="$target_dir/release/switchboard-bench"
for bin in "$server_bin" "$bench_bin"; do
    [ -x "$bin" ] || { echo "no $bin: run cargo build --release --workspace" >&2; exit 1; }
done
mkdir -p "$out"
work=$(mktemp -d -t switchboard-bench-cluster.XXXXXX)
key="bench-$(od -An -N16 -tx8 /dev/urandom | tr -d ' \n')"
export SWITCHBOARD_BENCH_KEY="$key"

declare -A node_pid node_port
databases=()

# fresh_db TAG: a fresh database, its URL in $db (dropped at exit).
fresh_db() {
    local name="sbbench_$1_$$_$(date +%s)"
    createdb -h "$pg_host" ${pg_port:+-p "$pg_port"} ${pg_user:+-U "$pg_user"} "$name"
    databases+=("$name")
    db="$pg/$name"
}

# start_node NAME DATABASE_URL [CPU]: a node in the background; waits for the
# port it prints. An empty DATABASE_URL: the embedded SQLite.
start_node() {
    local name=$1 url=$2 cpu=${3:-} dir="$work/$1.$RANDOM"
    local pin=()
    [ -n "$cpu" ] && pin=(taskset -c "$cpu")
    mkdir -p "$dir"
    env -u DATABASE_URL \
        SWITCHBOARD__AUTH__API_KEY="$key" \
        SWITCHBOARD__HTTP__PORT=0 \
        SWITCHBOARD__HTTP__ADDRESS=127.0.0.1 \
        SWITCHBOARD__DATA_DIR="$dir" \
        SWITCHBOARD__DATABASE__URL="$url" \
        SWITCHBOARD__CLUSTER__NODE_ID="$name" \
        RUST_LOG="${RUST_LOG:-warn}" \
        "${pin[@]}" "$server_bin" run >"$dir/server.log" 2>&1 &
    node_pid[$name]=$!
    local port=""
    for _ in $(seq 1 300); do
        port=$(sed -n 's/^switchboard is listening on port \([0-9]*\).*/\1/p' "$dir/server.log" | head -n1)
        [ -n "$port" ] && break
        if ! kill -0 "${node_pid[$name]}" 2>/dev/null; then
            echo "node $name exited at start:" >&2
            cat "$dir/server.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    [ -n "$port" ] || { echo "node $name did not report its port" >&2; cat "$dir/server.log" >&2; exit 1; }
    node_port[$name]=$port
    echo "   node $name: port $port, pid ${node_pid[$name]}${cpu:+, core $cpu}"
}

stop_nodes() {
    local name pid
    for name in "${!node_pid[@]}"; do
        kill -TERM "${node_pid[$name]}" 2>/dev/null || true
    done
    for name in "${!node_pid[@]}"; do
        pid=${node_pid[$name]}
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    node_pid=()
    node_port=()
}

cleanup() {
    stop_nodes
    for db in "${databases[@]}"; do
        dropdb -h "$pg_host" ${pg_port:+-p "$pg_port"} ${pg_user:+-U "$pg_user"} --if-exists "$db" || true
    done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

ws() { echo "ws://127.0.0.1:${node_port[$1]}/ws"; }

# bench NAME ARGS...: one run of the tool, its report kept as $out/NAME.json.
bench() {
    local name=$1
    shift
    echo
    echo "== $name: switchboard-bench $*"
    # A failed run is reported and the others still run.
    "$bench_bin" --json "$out/$name.json" "$@" || echo "   ($name: exit $?)"
}

if [[ "$parts" == *" A "* ]]; then
    echo "== A: cross-node vs same-node delivery (fanout, 1,000 subscribers, 100 events/s)"
    fresh_db a
    start_node node-a "$db" 0
    start_node node-b "$db" 0
    pids="${node_pid[node-a]},${node_pid[node-b]}"
    for round in $round_list; do
        for sub in node-a node-b; do
            side=same
            [ "$sub" = node-b ] && side=cross
            bench "A-$round-$side" --cpu 1 --server-pid "$pids" --url "$(ws node-a)" \
                --subscribe-url "$(ws "$sub")" --pin-node node-a \
                fanout --rates 100 --step 10 --warmup 3
        done
    done
    stop_nodes
fi

if [[ "$parts" == *" B "* ]]; then
    echo
    echo "== B: ingest, 1 node against 3 nodes on one PostgreSQL (nothing pinned to a core)"
    for round in $round_list; do
        for nodes in 1 3; do
            fresh_db "b$nodes"
            names=()
            for i in $(seq 1 "$nodes"); do
                start_node "node-$i" "$db"
                names+=("node-$i")
            done
            pids=$(for n in "${names[@]}"; do echo -n "${node_pid[$n]},"; done)
            peers=$(for n in "${names[@]:1}"; do echo -n "$(ws "$n"),"; done)
            pin=$(IFS=,; echo "${names[*]}")
            args=(--server-pid "${pids%,}" --url "$(ws node-1)" --pin-node "$pin")
            [ -n "$peers" ] && args+=(--peer-url "${peers%,}")
            bench "B-$round-${nodes}node" "${args[@]}" ingest --instances 6
            stop_nodes
        done
    done
fi

if [[ "$parts" == *" C "* ]]; then
    echo
    echo "== C: one node, PostgreSQL then SQLite (server on core 0, tool on core 1)"
    for round in $round_list; do
        for backend in postgres sqlite; do
            for scenario in ingest fanout; do
                db=""
                [ "$backend" = postgres ] && fresh_db "c$scenario"
                start_node node-1 "$db" 0
                extra=()
                [ "$scenario" = fanout ] && extra=(--rates 100 --step 10)
                bench "C-$round-$backend-$scenario" --cpu 1 --server-pid "${node_pid[node-1]}" \
                    --url "$(ws node-1)" "$scenario" "${extra[@]}"
                stop_nodes
            done
        done
    done
fi

if [[ "$parts" == *" D "* ]]; then
    echo
    echo "== D: sendText accept rate, one node, PostgreSQL then SQLite (server on core 0, tool on core 1)"
    for round in $round_list; do
        for backend in postgres sqlite; do
            db=""
            [ "$backend" = postgres ] && fresh_db "d"
            start_node node-1 "$db" 0
            bench "D-$round-$backend-accept" --cpu 1 --server-pid "${node_pid[node-1]}" \
                --url "$(ws node-1)" accept --clients 50 --instances 1,10
            stop_nodes
        done
    done
fi

echo
echo "== reports in $out"
