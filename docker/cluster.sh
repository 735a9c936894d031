#!/usr/bin/env bash
# Run the distributed topology on this machine without Docker: Kafka and PostgreSQL (via
# docker/kafka.sh and docker/postgres.sh), then one process per role:
#   urban-monitor serve scheduler, N x urban-monitor serve inference (one consumer group),
#   urban-monitor serve alerting, urban-monitor serve api
# with bus.kind=kafka and the PostgreSQL database. Pid files and logs: var/cluster/.
#
#   bash docker/cluster.sh start [CONFIG]   # CONFIG: settings YAML (default config/default.yaml)
#   bash docker/cluster.sh stop [--services] # stop the roles (and Kafka + PostgreSQL)
#   bash docker/cluster.sh status            # exit 0 when every role runs
#
# Environment:
#   URBAN_MONITOR_CLUSTER_DIR       pid files and logs (default <repo>/var/cluster)
#   URBAN_MONITOR_CLUSTER_WORKERS   inference worker processes (default 3)
#   URBAN_MONITOR_BUS__BOOTSTRAP_SERVERS, URBAN_MONITOR_DATABASE__URL
#                                   when set, used as they are (Kafka / PostgreSQL are then
#                                   not started by this script); otherwise the addresses
#                                   that docker/kafka.sh and docker/postgres.sh print
# Any other URBAN_MONITOR_* variable reaches every role (e.g. URBAN_MONITOR_API__PORT).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_DIR="${URBAN_MONITOR_CLUSTER_DIR:-$REPO_ROOT/var/cluster}"
WORKERS="${URBAN_MONITOR_CLUSTER_WORKERS:-3}"
READY_TIMEOUT="${URBAN_MONITOR_CLUSTER_READY_TIMEOUT:-120}"

log() { echo "[cluster.sh] $*" >&2; }
fail() { log "ERROR: $*"; exit 1; }

urban_monitor() {
    if [[ -x "$REPO_ROOT/.venv/bin/urban-monitor" ]]; then
        echo "$REPO_ROOT/.venv/bin/urban-monitor"
    elif command -v urban-monitor >/dev/null 2>&1; then
        command -v urban-monitor
    else
        fail "urban-monitor is not installed (pip install -e . in the repository's venv)"
    fi
}

roles() {
    echo scheduler
    local i
    for ((i = 1; i <= WORKERS; i++)); do echo "inference-$i"; done
    echo alerting
    echo api
}

role_pid() {
    # Prints the pid of a running role; a stale pid file is removed.
    local file="$CLUSTER_DIR/$1.pid" pid
    [[ -f "$file" ]] || return 1
    pid="$(cat "$file" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q ' serve '; then
        echo "$pid"
        return 0
    fi
    rm -f "$file"
    return 1
}

launch() {
    # launch ROLE COMMAND...: detached (setsid), its own log, the pid of the program itself.
    local role="$1"
    shift
    local pid_file="$CLUSTER_DIR/$role.pid"
    rm -f "$pid_file"
    # shellcheck disable=SC2016
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pid_file" "$@" \
        >>"$CLUSTER_DIR/$role.log" 2>&1 </dev/null 9>&- &
    local waited=0
    while [[ ! -s "$pid_file" ]] && ((waited < 50)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    [[ -s "$pid_file" ]] || fail "$role did not start (no pid in $pid_file)"
    log "$role started (pid $(cat "$pid_file"), log $CLUSTER_DIR/$role.log)"
}

wait_for_log() {
    # wait_for_log ROLE PATTERN: until the role's log shows PATTERN (or it dies).
    local role="$1" pattern="$2" deadline=$((SECONDS + READY_TIMEOUT))
    while ((SECONDS < deadline)); do
        grep -q "$pattern" "$CLUSTER_DIR/$role.log" 2>/dev/null && return 0
        role_pid "$role" >/dev/null || { tail -n 30 "$CLUSTER_DIR/$role.log" >&2 || true
            fail "$role exited during start-up (log above)"; }
        sleep 0.5
    done
    fail "$role did not report '$pattern' within ${READY_TIMEOUT}s; see $CLUSTER_DIR/$role.log"
}

cmd_start() {
    local config="${1:-$REPO_ROOT/config/default.yaml}"
    [[ -f "$config" ]] || fail "settings file $config does not exist"
    config="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"
    local running=0 role
    for role in $(roles); do
        role_pid "$role" >/dev/null && running=1
    done
    ((running == 0)) || fail "a cluster already runs from $CLUSTER_DIR; run 'bash docker/cluster.sh stop' first"
    if [[ -z "${URBAN_MONITOR_BUS__BOOTSTRAP_SERVERS:-}" ]]; then
        URBAN_MONITOR_BUS__BOOTSTRAP_SERVERS="$(bash "$REPO_ROOT/docker/kafka.sh" start | tail -n 1)"
    fi
    if [[ -z "${URBAN_MONITOR_DATABASE__URL:-}" ]]; then
        URBAN_MONITOR_DATABASE__URL="$(bash "$REPO_ROOT/docker/postgres.sh" start | tail -n 1)"
    fi
    export URBAN_MONITOR_BUS__KIND=kafka URBAN_MONITOR_BUS__BOOTSTRAP_SERVERS URBAN_MONITOR_DATABASE__URL
    local um
    um="$(urban_monitor)"
    echo "$config" >"$CLUSTER_DIR/config.path"
    log "config $config; Kafka $URBAN_MONITOR_BUS__BOOTSTRAP_SERVERS; database ${URBAN_MONITOR_DATABASE__URL%%@*}@..."
    # The API first: it creates the schema and the topics once, so the other roles do not
    # race to create them (and it consumes nothing). Then the consumers, each until it has
    # joined its group; the scheduler last, so the first scenes find every worker in the
    # group instead of the first one to start taking all of them.
    launch api "$um" --config "$config" serve api
    wait_for_log api "runtime ready"
    local i
    for ((i = 1; i <= WORKERS; i++)); do
        launch "inference-$i" "$um" --config "$config" serve inference
    done
    launch alerting "$um" --config "$config" serve alerting
    for ((i = 1; i <= WORKERS; i++)); do
        wait_for_log "inference-$i" "Setting newly assigned partitions"
    done
    wait_for_log alerting "alerting started"
    wait_for_log api "Uvicorn running"
    launch scheduler "$um" --config "$config" serve scheduler
    wait_for_log scheduler "scheduled discover"
    log "cluster running: $(roles | tr '\n' ' ')"
    echo "$CLUSTER_DIR"
}

stop_role() {
    local role="$1" pid
    pid="$(role_pid "$role")" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$role (pid $pid) did not stop within 30 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$CLUSTER_DIR/$role.pid"
    log "$role stopped"
}

cmd_stop() {
    local role pids=()
    # Every role at once (SIGTERM: each finishes the record in hand and commits), then wait.
    for role in $(roles) $(ls "$CLUSTER_DIR" 2>/dev/null | sed -n 's/\.pid$//p'); do
        stop_role "$role" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done
    if [[ "${1:-}" == "--services" ]]; then
        bash "$REPO_ROOT/docker/kafka.sh" stop
        bash "$REPO_ROOT/docker/postgres.sh" stop
    fi
}

cmd_status() {
    local role pid all=0
    for role in $(roles); do
        if pid="$(role_pid "$role")"; then
            echo "$role running (pid $pid)"
        else
            echo "$role stopped"
            all=3
        fi
    done
    return "$all"
}

main() {
    local action="${1:-}"
    shift || true
    case "$action" in
        start | stop | status) ;;
        *)
            echo "usage: $0 {start [CONFIG]|stop [--services]|status}" >&2
            exit 2
            ;;
    esac
    mkdir -p "$CLUSTER_DIR"
    exec 9>"$CLUSTER_DIR/.script.lock"
    flock 9
    "cmd_$action" "$@"
}

main "$@"
