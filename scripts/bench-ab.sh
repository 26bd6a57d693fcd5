#!/usr/bin/env bash
# A/B of one scenario between two server binaries, alternated in one run so
# both see the same machine: before, after, before, after...
#
#   scripts/bench-ab.sh BEFORE_BIN AFTER_BIN OUT_DIR [sqlite|postgres] [ROUNDS] -- SCENARIO ARGS...
#   scripts/bench-ab.sh /tmp/sb-before target/release/switchboard bench/results/x sqlite 4 \
#       -- accept --clients 50 --instances 1 --stopped
#
# Each run gets a fresh SQLite data directory or a fresh PostgreSQL database
# (on BENCH_PG, default postgres://postgres@127.0.0.1:5432, with psql), the
# server on core 0 and the tool on core 1. Reports go to OUT_DIR as
# ROUND-before.json and ROUND-after.json; a line per run is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1 after=$2 out=$3 backend=${4:-sqlite} rounds=${5:-4}
shift 5 || shift $#
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || { echo "usage: $0 BEFORE AFTER OUT_DIR [sqlite|postgres] [ROUNDS] -- SCENARIO ARGS..." >&2; exit 2; }
bench=target/release/switchboard-bench
[ -x "$bench" ] || cargo build --release --locked -p switchboard-bench
pg=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
key=bench-ab-admin-key-0123456789abcdefghij
mkdir -p "$out"
for round in $(seq 1 "$rounds"); do
  for which in before after; do
    bin=$before; [ "$which" = after ] && bin=$after
    dir=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    db_env=()
    if [ "$backend" = postgres ]; then
      db="bench_ab_${round}_$which"
      psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null 2>&1
      db_env=(DATABASE_URL="$pg/$db")
    fi
    env "${db_env[@]}" SWITCHBOARD__DATA_DIR="$dir" SWITCHBOARD__HTTP__ADDRESS=127.0.0.1 \
      SWITCHBOARD__HTTP__PORT="$port" SWITCHBOARD__AUTH__API_KEY="$key" RUST_LOG=warn \
      taskset -c 0 "$bin" run >"$dir/server.log" 2>&1 &
    pid=$!
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
      kill -0 "$pid" 2>/dev/null || { cat "$dir/server.log"; exit 1; }
      sleep 0.1
    done
    "$bench" --cpu 1 --server-pid "$pid" --key "$key" --url "ws://127.0.0.1:$port/ws" \
      --json "$out/$round-$which.json" "$@" >"$out/$round-$which.txt" 2>&1 || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    [ "$backend" = postgres ] && psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
    python3 - "$out/$round-$which.json" "$round" "$which" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
columns, rows = report["columns"], report["rows"]
for row in rows:
    print(f"round {sys.argv[2]} {sys.argv[3]:6}", ", ".join(f"{c} {v}" for c, v in zip(columns, row)))
PY
  done
done
