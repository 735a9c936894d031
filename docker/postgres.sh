#!/usr/bin/env bash
# Start, stop or inspect a real PostgreSQL (+ PostGIS) server for tests and CI,
# without Docker. Uses the Debian packages (postgresql-15, postgresql-15-postgis-3),
# installing what is missing with apt-get when run as root.
#
#   bash docker/postgres.sh start    # init the cluster once, start, wait until ready, print the URL
#   bash docker/postgres.sh stop
#   bash docker/postgres.sh status
#
# The cluster lives under <repo>/var/services/postgres/ and belongs to the
# `postgres` OS user (the server refuses to run as root). It listens on 127.0.0.1
# only and trusts local connections: it is a test server, never a production one.
#
# Environment:
#   URBAN_MONITOR_PG_PORT           port (default 55432)
#   URBAN_MONITOR_PG_VERSION        major version of the Debian packages (default 15)
#   URBAN_MONITOR_PG_READY_TIMEOUT  seconds to wait for readiness (default 60)
#   URBAN_MONITOR_PG_VAR_DIR        cluster folder (default <repo>/var/services/postgres): a
#                                   second server (another port) needs its own folder
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${URBAN_MONITOR_PG_PORT:-55432}"
PG_VERSION="${URBAN_MONITOR_PG_VERSION:-15}"
PG_BIN="/usr/lib/postgresql/$PG_VERSION/bin"
READY_TIMEOUT="${URBAN_MONITOR_PG_READY_TIMEOUT:-60}"
DATABASE="urban_monitor"
HOST="127.0.0.1"

VAR_DIR="${URBAN_MONITOR_PG_VAR_DIR:-$REPO_ROOT/var/services/postgres}"
DATA_DIR="$VAR_DIR/data"
SOCKET_DIR="$VAR_DIR/run"
SERVER_LOG="$VAR_DIR/postgres.log"
LOCK_FILE="$VAR_DIR/.script.lock"
URL="postgresql+psycopg://postgres@$HOST:$PORT/$DATABASE"

SHOW_LOG_TAIL=0

log() { echo "[postgres.sh] $*" >&2; }

fail() {
    log "ERROR: $*"
    # The log tail only helps once this run has tried to start the server.
    if ((SHOW_LOG_TAIL)) && [[ -f "$SERVER_LOG" ]]; then
        log "last 50 lines of $SERVER_LOG:"
        tail -n 50 "$SERVER_LOG" >&2 || true
    fi
    exit 1
}

as_owner() {
    # Runs a server-side command as the cluster owner: `postgres` when we are
    # root, ourselves otherwise.
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

psql_admin() {
    PGOPTIONS="-c client_min_messages=warning" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PORT" -U postgres "$@"
}

postgis_installed() {
    compgen -G "/usr/share/postgresql/$PG_VERSION/extension/postgis.control" >/dev/null
}

install_packages() {
    local wanted=()
    [[ -x "$PG_BIN/postgres" ]] || wanted+=("postgresql-$PG_VERSION")
    postgis_installed || wanted+=("postgresql-$PG_VERSION-postgis-3")
    ((${#wanted[@]})) || return 0
    if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        [[ -x "$PG_BIN/postgres" ]] || fail "PostgreSQL did not start: $PG_BIN/postgres is missing; install postgresql-$PG_VERSION (apt-get needs root)."
        return 0
    fi
    log "installing ${wanted[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${wanted[@]}" >&2; } 9>&-; then
        [[ -x "$PG_BIN/postgres" ]] || fail "PostgreSQL did not start: apt-get could not install postgresql-$PG_VERSION."
        log "WARNING: apt-get could not install ${wanted[*]}"
    fi
}

ensure_owner_user() {
    [[ $EUID -eq 0 ]] || return 0
    if ! id postgres >/dev/null 2>&1; then
        log "creating the postgres OS user"
        useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
}

server_running() {
    [[ -f "$DATA_DIR/PG_VERSION" ]] && as_owner "$PG_BIN/pg_ctl" -D "$DATA_DIR" status >/dev/null 2>&1
}

accepting() {
    "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PORT" -U postgres -d postgres
}

init_cluster() {
    mkdir -p "$VAR_DIR" "$SOCKET_DIR"
    if [[ $EUID -eq 0 ]]; then
        touch "$SERVER_LOG"
        chown postgres: "$VAR_DIR" "$SOCKET_DIR" "$SERVER_LOG"
        # The owner must reach the cluster through the repository's folders.
        runuser -u postgres -- test -x "$VAR_DIR" \
            || fail "PostgreSQL did not start: the postgres user cannot enter $VAR_DIR; make its parent folders world-executable."
    fi
    if [[ -f "$DATA_DIR/PG_VERSION" ]]; then
        return 0
    fi
    log "initialising a PostgreSQL $PG_VERSION cluster in $DATA_DIR"
    as_owner "$PG_BIN/initdb" -D "$DATA_DIR" -U postgres --auth=trust -E UTF8 --locale=C \
        >>"$SERVER_LOG" 2>&1 || fail "PostgreSQL did not start: initdb failed for $DATA_DIR; delete $VAR_DIR and retry."
    echo "include_if_exists = 'urban_monitor.conf'" | as_owner tee -a "$DATA_DIR/postgresql.conf" >/dev/null
}

write_config() {
    # Rewritten on each start so a changed port takes effect. Durability is
    # traded for speed (fsync off): this cluster only ever holds test data.
    as_owner tee "$DATA_DIR/urban_monitor.conf" >/dev/null <<EOF
# Written by docker/postgres.sh; edits are overwritten on the next start.
port = $PORT
listen_addresses = '$HOST'
unix_socket_directories = '$SOCKET_DIR'
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
log_min_messages = warning
EOF
}

ensure_database() {
    if [[ "$(psql_admin -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != "1" ]]; then
        log "creating database $DATABASE"
        psql_admin -d postgres -c "CREATE DATABASE $DATABASE" >&2 \
            || fail "PostgreSQL started but creating database $DATABASE failed."
    fi
    if postgis_installed; then
        psql_admin -d "$DATABASE" -c "CREATE EXTENSION IF NOT EXISTS postgis" >&2 \
            || log "WARNING: PostgreSQL runs, but CREATE EXTENSION postgis failed in $DATABASE; spatial SQL will not work."
    else
        log "WARNING: ***************************************************************"
        log "WARNING: PostGIS is NOT installed (postgresql-$PG_VERSION-postgis-3 missing);"
        log "WARNING: PostgreSQL runs without it and spatial SQL will not work."
        log "WARNING: ***************************************************************"
    fi
}

wait_ready() {
    local deadline=$((SECONDS + READY_TIMEOUT))
    SHOW_LOG_TAIL=1
    while ((SECONDS < deadline)); do
        if accepting; then
            return 0
        fi
        sleep 0.5
    done
    fail "PostgreSQL did not start: pg_isready got no answer on $HOST:$PORT within ${READY_TIMEOUT}s."
}

cmd_start() {
    if server_running; then
        local running_port
        running_port="$(sed -n 's/^port = //p' "$DATA_DIR/urban_monitor.conf" 2>/dev/null || true)"
        if [[ -n "$running_port" && "$running_port" != "$PORT" ]]; then
            fail "PostgreSQL already runs from $DATA_DIR on port $running_port, not $PORT; run 'bash docker/postgres.sh stop' first."
        fi
        wait_ready
        ensure_database
        log "already running"
        echo "$URL"
        return 0
    fi
    install_packages
    if accepting; then
        log "a PostgreSQL server not started by this script already answers on $HOST:$PORT; using it"
        ensure_database
        echo "$URL"
        return 0
    fi
    SHOW_LOG_TAIL=1
    ensure_owner_user
    init_cluster
    write_config
    log "starting PostgreSQL $PG_VERSION on $HOST:$PORT"
    # fd 9 (the script lock) must not leak into the long-lived server.
    as_owner "$PG_BIN/pg_ctl" -D "$DATA_DIR" -l "$SERVER_LOG" -w -t "$READY_TIMEOUT" start \
        >/dev/null 9>&- || fail "PostgreSQL did not start: pg_ctl start failed for $DATA_DIR."
    wait_ready
    ensure_database
    log "ready (log $SERVER_LOG)"
    echo "$URL"
}

cmd_stop() {
    if ! server_running; then
        log "not running"
        return 0
    fi
    log "stopping PostgreSQL"
    as_owner "$PG_BIN/pg_ctl" -D "$DATA_DIR" -m fast -w -t 60 stop >/dev/null \
        || fail "pg_ctl stop failed for $DATA_DIR."
    log "stopped"
}

cmd_status() {
    if server_running && accepting; then
        echo "running on $HOST:$PORT ($URL)"
        return 0
    fi
    echo "stopped"
    return 3
}

main() {
    local action="${1:-}"
    case "$action" in
        start | stop | status) ;;
        *)
            echo "usage: $0 {start|stop|status}" >&2
            exit 2
            ;;
    esac
    mkdir -p "$VAR_DIR"
    # Several test sessions may call this script at once: one at a time.
    exec 9>"$LOCK_FILE"
    flock 9
    "cmd_$action"
}

main "$@"
