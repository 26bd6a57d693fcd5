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
# A2 the same question with the noise shared: 500 subscribers on node-a
#    (fanout, which drives the instance) and, at the same time, 500 on node-b
#    (connect, every event); both tools on core 1, both nodes on core 0.
# B  ingest, 6 simulator instances asking 100k events/s each, against 1 node
#    and against 3 nodes (instances pinned round robin), alternated; nothing
#    pinned to a core: the nodes, PostgreSQL and the tool share the machine.
#    The CPU of the run database's PostgreSQL backends inside the measured
#    window goes to NAME.postgres.txt (also for C's PostgreSQL ingest).
# smoke  every scenario with --smoke against two nodes with the cluster
#    options (subscribers on node-b, instances pinned to node-a); exits
#    non-zero if one fails. Reports go to OUT_DIR too.
# C  one node, on PostgreSQL then on SQLite: ingest and fanout --rates 100,
#    server on core 0 and tool on core 1 as in BENCHMARKS.md's summary.
# D  (issue 12) one node, PostgreSQL then SQLite: `accept`, 50 HTTP clients
#    sending texts against 1, then 10 simulator instances, with the
#    simulators sending them, then stopped (`--stopped`: the accept alone);
#    pinned as in C.
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

# fresh_db TAG: a fresh database, its URL in $db and its name in $db_name
# (dropped at exit).
fresh_db() {
    local name="sbbench_$1_$$_$(date +%s)"
    createdb -h "$pg_host" ${pg_port:+-p "$pg_port"} ${pg_user:+-U "$pg_user"} "$name"
    databases+=("$name")
    db="$pg/$name"
    db_name=$name
}

# pg_ticks DB: "pid ticks" (user + system CPU) of each PostgreSQL backend
# connected to DB; PostgreSQL runs on this machine.
pg_ticks() {
    psql -h "$pg_host" ${pg_port:+-p "$pg_port"} ${pg_user:+-U "$pg_user"} -d postgres -tAc \
        "select pid from pg_stat_activity where datname = '$1'" |
        while read -r pid; do
            [ -r "/proc/$pid/stat" ] && echo "$pid $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')"
        done
}

# pg_cores DB AFTER LENGTH FILE: from AFTER to AFTER + LENGTH seconds from
# now, the cores DB's backends used (the WAL writer and checkpointer are not
# counted); written to FILE. Run beside the tool, inside its measured window.
pg_cores() {
    local before after
    sleep "$2"
    before=$(pg_ticks "$1")
    sleep "$3"
    after=$(pg_ticks "$1")
    python3 - "$3" "$(getconf CLK_TCK)" "$before" "$after" >"$4" <<'PY'
import sys
length, hz = float(sys.argv[1]), float(sys.argv[2])
parse = lambda t: dict(map(int, l.split()) for l in t.splitlines() if l.strip())
a, b = parse(sys.argv[3]), parse(sys.argv[4])
used = sum(t - a.get(p, t) for p, t in b.items()) / hz
print(f"postgres backends of the run's database: {used / length:.2f} cores over {length:.0f} s ({len(b)} backends)")
PY
}

# start_node NAME DATABASE_URL [CPU]: a node in the background; waits for the
# port it prints. An empty DATABASE_URL: the embedded SQLite.
start_node() {
    local name=$1 url=$2 cpu=${3:-} dir="$work/$1.$RANDOM"
    local pin=()
    [ -n "$cpu" ] && pin=(taskset -c "$cpu")
    mkdir -p "$dir"
    : >"$dir/server.log"
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
        port=$(sed -n 's/^switchboard is listening on port \([0-9]*\).*/\1/p' "$dir/server.log" | head -n1 || true)
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
    # A failed run is reported (and its status kept in $last_rc) and the
    # others still run.
    last_rc=0
    "$bench_bin" --json "$out/$name.json" "$@" || last_rc=$?
    [ "$last_rc" = 0 ] || echo "   ($name: exit $last_rc)"
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

if [[ "$parts" == *" A2 "* ]]; then
    echo "== A2: same node and cross node at once: 500 subscribers on each node, one instance on node-a at 100 events/s"
    fresh_db a2
    start_node node-a "$db" 0
    start_node node-b "$db" 0
    pids="${node_pid[node-a]},${node_pid[node-b]}"
    for round in $round_list; do
        # fanout drives the instance and watches it on node-a; `connect`
        # watches every event on node-b in the middle of fanout's window.
        bench "A2-$round-same" --cpu 1 --server-pid "$pids" --url "$(ws node-a)" --pin-node node-a \
            fanout --subscribers 500 --rates 100 --step 20 --warmup 3 &
        same_job=$!
        sleep 1
        bench "A2-$round-cross" --cpu 1 --server-pid "$pids" --url "$(ws node-b)" \
            connect -c 500 --warmup 6 --duration 15
        wait "$same_job"
    done
    stop_nodes
fi

if [[ "$parts" == *" smoke "* ]]; then
    echo "== smoke: every scenario with --smoke on two nodes, subscribers on node-b, instances pinned to node-a"
    fresh_db smoke
    start_node node-a "$db"
    start_node node-b "$db"
    failed=""
    for scenario in fanout subscribers idle ingest catchup slow accept; do
        bench "smoke-$scenario" --server-pid "${node_pid[node-a]},${node_pid[node-b]}" \
            --url "$(ws node-a)" --subscribe-url "$(ws node-b)" --pin-node node-a \
            --peer-url "$(ws node-b)" "$scenario" --smoke >"$work/smoke-$scenario.out" 2>&1
        [ "$last_rc" = 0 ] || failed="$failed $scenario"
        grep -E "^smoke:|^- [a-z].*(failed|error)" "$work/smoke-$scenario.out" | sed "s/^/   $scenario: /" || true
    done
    stop_nodes
    [ -z "$failed" ] || { echo "smoke failed:$failed" >&2; exit 1; }
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
            # Inside the tool's window: instances created, 3 s warm-up, 10 s measured.
            pg_cores "$db_name" 5 7 "$out/B-$round-${nodes}node.postgres.txt" &
            pg_job=$!
            bench "B-$round-${nodes}node" "${args[@]}" ingest --instances 6
            wait "$pg_job"
            cat "$out/B-$round-${nodes}node.postgres.txt"
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
                name="C-$round-$backend-$scenario"
                # Inside the tool's window (ingest: 3 s warm-up, 10 s measured).
                [ "$backend" = postgres ] && [ "$scenario" = ingest ] &&
                    pg_cores "$db_name" 5 7 "$out/$name.postgres.txt" &
                pg_job=$!
                bench "$name" --cpu 1 --server-pid "${node_pid[node-1]}" \
                    --url "$(ws node-1)" "$scenario" "${extra[@]}"
                wait "$pg_job" || true
                [ -f "$out/$name.postgres.txt" ] && cat "$out/$name.postgres.txt"
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
            bench "D-$round-$backend-accept-stopped" --cpu 1 --server-pid "${node_pid[node-1]}" \
                --url "$(ws node-1)" accept --clients 50 --instances 1,10 --stopped
            stop_nodes
        done
    done
fi

echo
echo "== reports in $out"
