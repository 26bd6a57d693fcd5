#!/usr/bin/env bash
# Runs every test of switchboard, on PostgreSQL and SQLite.
#
# PostgreSQL: uses the server at $TEST_DATABASE_URL (default: a local one on
# 127.0.0.1:5432 with trust auth, as on a developer machine). When none is
# reachable, it starts a private throw-away cluster on port 55432 (trust auth,
# data under target/test-postgres), installing PostgreSQL from the system
# package manager first if its binaries are missing. No test skips because a
# database is missing: without one, this script fails and says why. The same
# goes for Chromium, which the browser tests drive headless, and for Node.js
# and the dashboard's npm packages, which its browser test runs on.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
PRIVATE_PORT=55432
PRIVATE_DIR="$PWD/target/test-postgres"
started_private=""
# A second, throw-away cluster that one test restarts on purpose (on the
# first free port from 55433, so two checkouts can run their tests at once).
RESTART_PORT=""
RESTART_DIR="$PWD/target/test-postgres-restart"
started_restartable=""

log() { echo "test.sh: $*" >&2; }

# The first port from $1 up that nothing listens on.
free_port() {
  local port=$1
  while timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; do
    port=$((port + 1))
  done
  echo "$port"
}

# host port of a postgres:// URL (defaults 127.0.0.1 5432)
url_host() { local h; h=$(sed -E 's#^[a-z]+://([^@/]*@)?([^:/?]*).*#\2#' <<<"$1"); echo "${h:-127.0.0.1}"; }
url_port() { local p; p=$(sed -nE 's#^[a-z]+://([^@/]*@)?[^:/?]*:([0-9]+).*#\2#p' <<<"$1"); echo "${p:-5432}"; }

reachable() {
  local url=$1 host port
  host=$(url_host "$url"); port=$(url_port "$url")
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$host" -p "$port" -t 2
  else
    timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
  fi
}

pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir; return
  fi
  return 1
}

# Installs a package with the system's package manager:
# install_package WHAT HINT APT DNF APK BREW-ARGS...
install_package() {
  local what=$1 hint=$2 apt=$3 dnf=$4 apk=$5
  shift 5
  log "$what is not installed; installing it"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$apt" >/dev/null
  elif command -v dnf >/dev/null 2>&1; then
    $sudo dnf install -y -q "$dnf"
  elif command -v apk >/dev/null 2>&1; then
    $sudo apk add -q "$apk"
  elif command -v brew >/dev/null 2>&1; then
    brew install -q "$@"
  else
    log "no package manager found: $hint"; exit 1
  fi
}

install_postgres() {
  install_package PostgreSQL "install PostgreSQL or set TEST_DATABASE_URL" \
    postgresql postgresql-server postgresql postgresql
}

# Runs a PostgreSQL binary as a non-root user (initdb refuses root); the
# data directories are handed to that user first.
as_pg_user() {
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    for dir in "$PRIVATE_DIR" "$RESTART_DIR"; do
      [ -d "$dir" ] && chown -R postgres "$dir"
    done
    su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
  else
    "$@"
  fi
}

bindir_or_install() {
  pg_bindir || { install_postgres; pg_bindir || { log "PostgreSQL binaries not found after installing"; exit 1; }; }
}

start_private_cluster() {
  local bindir
  bindir=$(bindir_or_install)
  mkdir -p "$PRIVATE_DIR"
  if [ ! -f "$PRIVATE_DIR/data/PG_VERSION" ]; then
    log "creating a private PostgreSQL cluster in $PRIVATE_DIR"
    rm -rf "$PRIVATE_DIR/data"
    mkdir -p "$PRIVATE_DIR/data"
    as_pg_user "$bindir/initdb" -D "$PRIVATE_DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  log "starting the private PostgreSQL cluster on port $PRIVATE_PORT"
  as_pg_user "$bindir/pg_ctl" -D "$PRIVATE_DIR/data" -l "$PRIVATE_DIR/server.log" -w -t 60 \
    -o "-p $PRIVATE_PORT -k $PRIVATE_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null
  started_private="$bindir"
}

# The cluster the restart test takes down and brings back; it gets a script
# that does exactly that, in $TEST_PG_RESTART.
start_restartable_cluster() {
  local bindir
  bindir=$(bindir_or_install)
  RESTART_PORT=$(free_port 55433)
  rm -rf "$RESTART_DIR"
  mkdir -p "$RESTART_DIR/data"
  as_pg_user "$bindir/initdb" -D "$RESTART_DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
  local opts="-p $RESTART_PORT -k $RESTART_DIR -c listen_addresses=127.0.0.1 -c fsync=off"
  as_pg_user "$bindir/pg_ctl" -D "$RESTART_DIR/data" -l "$RESTART_DIR/server.log" -w -t 60 -o "$opts" start >/dev/null
  started_restartable="$bindir"
  local run="\"\$@\""
  if [ "$(id -u)" -eq 0 ]; then run="su postgres -s /bin/sh -c \"\$(printf '%q ' \"\$@\")\""; fi
  cat >"$RESTART_DIR/restart.sh" <<SCRIPT
#!/usr/bin/env bash
# Restarts the test cluster: a fast shutdown (sessions are terminated), a
# pause of \${1:-1} s while it is down, then a start.
set -euo pipefail
as_pg() { $run; }
as_pg "$bindir/pg_ctl" -D "$RESTART_DIR/data" -m fast -w stop >/dev/null
sleep "\${1:-1}"
as_pg "$bindir/pg_ctl" -D "$RESTART_DIR/data" -l "$RESTART_DIR/server.log" -w -t 60 -o "$opts" start >/dev/null
SCRIPT
  chmod +x "$RESTART_DIR/restart.sh"
  export TEST_PG_RESTART="$RESTART_DIR/restart.sh"
  export TEST_RESTARTABLE_DATABASE_URL="postgres://postgres@127.0.0.1:$RESTART_PORT/postgres"
}

stop_private_clusters() {
  if [ -n "$started_private" ]; then
    as_pg_user "$started_private/pg_ctl" -D "$PRIVATE_DIR/data" -m fast stop >/dev/null 2>&1 || true
  fi
  if [ -n "$started_restartable" ]; then
    as_pg_user "$started_restartable/pg_ctl" -D "$RESTART_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  fi
}
trap stop_private_clusters EXIT

if [ -z "${TEST_DATABASE_URL:-}" ]; then
  TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
  if ! reachable "$TEST_DATABASE_URL"; then
    TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PRIVATE_PORT/postgres"
    reachable "$TEST_DATABASE_URL" || start_private_cluster
  fi
fi
export TEST_DATABASE_URL
reachable "$TEST_DATABASE_URL" || { log "PostgreSQL at $TEST_DATABASE_URL is not reachable"; exit 1; }
log "PostgreSQL: $TEST_DATABASE_URL"

start_restartable_cluster
log "restartable PostgreSQL: $TEST_RESTARTABLE_DATABASE_URL"

# The browser test drives a real headless Chromium (an EventSource against
# /events/stream); it is installed like PostgreSQL when missing.
chromium_bin() {
  local name
  for name in chromium chromium-browser google-chrome-stable google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
  done
  return 1
}

install_chromium() {
  install_package "Chromium (for the browser test)" \
    "install Chromium or set CHROMIUM to a Chrome binary" \
    chromium chromium chromium --cask chromium
}

if [ -z "${CHROMIUM:-}" ]; then
  CHROMIUM=$(chromium_bin) || {
    install_chromium
    CHROMIUM=$(chromium_bin) || { log "Chromium not found after installing"; exit 1; }
  }
fi
export CHROMIUM
log "Chromium: $CHROMIUM"

# The dashboard's browser test runs Playwright (playwright-core from npm)
# on Node.js against that Chromium, and the committed dashboard build is
# checked by building it again with Vite, which needs Node.js 20.19+ or
# 22.12+. Node.js is installed like Chromium when missing; the npm packages
# come from dashboard/package-lock.json.
node_recent() {
  node -e 'const [a, b] = process.versions.node.split(".").map(Number);
    process.exit((a === 20 && b >= 19) || (a === 22 && b >= 12) || a > 22 ? 0 : 1)' 2>/dev/null
}
if [ -z "${NODE:-}" ]; then
  command -v node >/dev/null 2>&1 || install_package "Node.js (for the dashboard)" \
    "install Node.js 20.19 or later" nodejs nodejs nodejs node
  command -v npm >/dev/null 2>&1 || install_package "npm (for the dashboard)" \
    "install npm" npm npm npm node
  NODE=$(command -v node) || { log "Node.js not found after installing"; exit 1; }
fi
export NODE
PATH="$(dirname "$NODE"):$PATH"
node_recent || { log "Node.js $(node --version) is too old: the dashboard's build (Vite) needs 20.19+ or 22.12+"; exit 1; }
log "Node.js: $NODE ($(node --version))"
if [ ! -f dashboard/node_modules/.package-lock.json ] ||
  [ dashboard/package-lock.json -nt dashboard/node_modules/.package-lock.json ]; then
  log "installing the dashboard's npm packages (npm ci)"
  (cd dashboard && npm ci --no-audit --no-fund --loglevel=error)
fi
# The committed build must be what its sources build to.
node dashboard/scripts/check-build.mjs

# Python 3 and the PyPI packages the tests use: the seeds' clients and the
# protocol cross-check (websockets, websocket-client), the PDU cross-check
# (python-gsmmodem's encoder, tests/support/split_deliver.py). Installed with
# pip when missing.
command -v python3 >/dev/null 2>&1 ||
  install_package "Python 3" "install Python 3" python3 python3 python3 python
python3 -m pip --version >/dev/null 2>&1 ||
  install_package pip "install pip for Python 3" python3-pip python3-pip py3-pip python
# pip_require MODULE PACKAGE: installs PACKAGE unless MODULE imports.
pip_require() {
  python3 -c "import $1" >/dev/null 2>&1 && return
  log "installing the Python package $2"
  python3 -m pip install -q "$2" 2>/dev/null ||
    python3 -m pip install -q --break-system-packages "$2"
  python3 -c "import $1" >/dev/null 2>&1 || { log "$2 could not be installed"; exit 1; }
}
pip_require websockets websockets
pip_require websocket websocket-client
pip_require gsmmodem.pdu python-gsmmodem-new

# schemathesis fuzzes a running server from its OpenAPI document, in a
# network namespace of its own (tests/api/openapi.rs): it needs pip's
# schemathesis at this version, and unshare and ip (util-linux, iproute2).
SCHEMATHESIS_VERSION=4.32.5
command -v unshare >/dev/null 2>&1 || install_package util-linux "install util-linux" util-linux util-linux util-linux util-linux
command -v ip >/dev/null 2>&1 || install_package iproute2 "install iproute2" iproute2 iproute iproute2 iproute2mac
if [ -z "${SCHEMATHESIS:-}" ]; then
  SCHEMATHESIS="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/st"
  if ! "$SCHEMATHESIS" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
    log "installing schemathesis $SCHEMATHESIS_VERSION with pip"
    python3 -m pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" 2>/dev/null ||
      python3 -m pip install -q --disable-pip-version-check --break-system-packages "schemathesis==$SCHEMATHESIS_VERSION"
  fi
fi
export SCHEMATHESIS
log "schemathesis: $("$SCHEMATHESIS" --version)"

# Databases left by earlier runs (each test makes its own).
if command -v psql >/dev/null 2>&1; then
  psql "$TEST_DATABASE_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'sbtest_%'" 2>/dev/null |
    while read -r db; do psql "$TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; done
fi

# Every crate the lock file names, for every platform: tests/api/docker.rs
# reads the workspace offline (`cargo metadata --offline`), which wants the
# crates a build for this platform never downloads (heapless's
# atomic-polyfill, under phonenumber's build script) too.
cargo fetch --locked >/dev/null

# With no arguments every package of the workspace (the server and the load
# tool); arguments (a test target, a filter) go to cargo as they are.
if [ $# -eq 0 ]; then
  cargo test --locked --workspace --all-targets
else
  cargo test --locked "$@"
fi
