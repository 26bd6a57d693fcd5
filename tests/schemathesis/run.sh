#!/usr/bin/env bash
# Runs schemathesis against a switchboard server, both inside a network
# namespace of their own that has nothing but loopback (see hooks.py), so
# nothing the fuzzer makes up can reach another host. Started by
# tests/api/openapi.rs, which passes:
#   SWITCHBOARD_BIN  the server binary     ST        the schemathesis command
#   PORT             where it listens      ST_ARGS   further arguments
#   SWITCHBOARD__* / DATABASE_URL          the server's settings
set -euo pipefail
ip link set lo up
"$SWITCHBOARD_BIN" run >"$SERVER_LOG" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
# Wait until the server answers, or it has exited, or the deadline passes.
deadline=$((SECONDS + 60))
until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
  kill -0 "$server" 2>/dev/null || { echo "the server exited:"; cat "$SERVER_LOG"; exit 2; }
  [ "$SECONDS" -lt "$deadline" ] || { echo "the server did not listen within 60 s"; exit 2; }
  sleep 0.1
done
export SCHEMATHESIS_HOOKS=hooks
export PYTHONPATH="$(dirname "$0")${PYTHONPATH:+:$PYTHONPATH}"
# shellcheck disable=SC2086
$ST run "http://127.0.0.1:$PORT/openapi.json" \
  --header "apikey: $SWITCHBOARD__AUTH__API_KEY" \
  $ST_ARGS
