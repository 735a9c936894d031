#!/usr/bin/env bash
# Start, stop or inspect a real single-node Apache Kafka broker (KRaft, combined
# broker+controller) for tests and CI, without Docker.
#
#   bash docker/kafka.sh start    # resolve jars (cached), format storage once, start, wait until ready
#   bash docker/kafka.sh stop
#   bash docker/kafka.sh status
#
# The broker and its runtime dependencies come from Maven Central through Maven
# (docker/kafka/pom.xml); they are cached under $URBAN_MONITOR_CACHE so reruns are
# fast. Data and logs live under <repo>/var/services/kafka/. Listeners bind to
# 127.0.0.1 only.
#
# Environment:
#   URBAN_MONITOR_KAFKA_PORT             broker port (default 19092)
#   URBAN_MONITOR_KAFKA_CONTROLLER_PORT  KRaft controller port (default 19093)
#   URBAN_MONITOR_KAFKA_VERSION          org.apache.kafka:kafka_2.13 version (default 4.4.0)
#   URBAN_MONITOR_CACHE                  jar cache (default ~/.cache/urban-monitor)
#   URBAN_MONITOR_KAFKA_HEAP_OPTS        JVM heap (default -Xms256m -Xmx512m)
#   URBAN_MONITOR_KAFKA_READY_TIMEOUT    seconds to wait for readiness (default 120)
#   URBAN_MONITOR_KAFKA_VAR_DIR          data/log folder (default <repo>/var/services/kafka): a
#                                        second broker (other ports) needs its own folder
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_VERSION="${URBAN_MONITOR_KAFKA_VERSION:-4.4.0}"
PORT="${URBAN_MONITOR_KAFKA_PORT:-19092}"
CONTROLLER_PORT="${URBAN_MONITOR_KAFKA_CONTROLLER_PORT:-19093}"
CACHE_ROOT="${URBAN_MONITOR_CACHE:-$HOME/.cache/urban-monitor}"
LIBS_DIR="$CACHE_ROOT/kafka-$KAFKA_VERSION/libs"
READY_TIMEOUT="${URBAN_MONITOR_KAFKA_READY_TIMEOUT:-120}"
HEAP_OPTS="${URBAN_MONITOR_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"

VAR_DIR="${URBAN_MONITOR_KAFKA_VAR_DIR:-$REPO_ROOT/var/services/kafka}"
DATA_DIR="$VAR_DIR/data"
LOG_DIR="$VAR_DIR/logs"
BROKER_LOG="$LOG_DIR/broker.log"
PID_FILE="$VAR_DIR/kafka.pid"
PORT_FILE="$VAR_DIR/kafka.port"
PROPS_FILE="$VAR_DIR/server.properties"
LOG4J_FILE="$VAR_DIR/log4j2.properties"
LOCK_FILE="$VAR_DIR/.script.lock"
BOOTSTRAP="127.0.0.1:$PORT"

SHOW_LOG_TAIL=0

log() { echo "[kafka.sh] $*" >&2; }

fail() {
    log "ERROR: $*"
    # The log tail only helps once this run has tried to start the server.
    if ((SHOW_LOG_TAIL)) && [[ -f "$BROKER_LOG" ]]; then
        log "last 50 lines of $BROKER_LOG:"
        tail -n 50 "$BROKER_LOG" >&2 || true
    fi
    exit 1
}

pick_python() {
    # A real Kafka client answers the readiness probe: kafka-python from the
    # project's venv when there is one.
    local candidate
    for candidate in "${URBAN_MONITOR_PYTHON:-}" "$REPO_ROOT/.venv/bin/python" python3; do
        [[ -n "$candidate" ]] || continue
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import kafka' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

broker_pid() {
    # Prints the pid of our broker when it is alive; a stale pid file is removed.
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'; then
        echo "$pid"
        return 0
    fi
    rm -f "$PID_FILE"
    return 1
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

kafka_answers() {
    # One probe: does a Kafka broker on $BOOTSTRAP answer a metadata request?
    local python
    if python="$(pick_python)"; then
        "$python" - "$BOOTSTRAP" <<'PY' >/dev/null 2>"$VAR_DIR/readiness.err"
import sys

from kafka.admin import KafkaAdminClient

admin = KafkaAdminClient(
    bootstrap_servers=sys.argv[1],
    request_timeout_ms=5000,
    client_id="urban-monitor-readiness",
)
try:
    cluster = admin.describe_cluster()
    sys.exit(0 if cluster.get("brokers") else 1)
finally:
    admin.close()
PY
    else
        # No Python client available: trust the broker's own "started" line.
        port_open "$PORT" && grep -q 'Kafka Server started' "$BROKER_LOG" 2>/dev/null
    fi
}

resolve_libs() {
    if [[ -f "$LIBS_DIR/.complete" ]]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || fail "Maven (mvn) is not installed; install it (apt-get install maven) to resolve Kafka $KAFKA_VERSION."
    log "resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its runtime dependencies from Maven Central into $LIBS_DIR"
    local tmp="$LIBS_DIR.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    if ! mvn -q -B -Dstyle.color=never -f "$REPO_ROOT/docker/kafka/pom.xml" \
        -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies \
        -DoutputDirectory="$tmp" -DincludeScope=runtime >&2; then
        rm -rf "$tmp"
        fail "Maven could not resolve Kafka $KAFKA_VERSION; check network access to Maven Central or set URBAN_MONITOR_KAFKA_VERSION."
    fi
    touch "$tmp/.complete"
    rm -rf "$LIBS_DIR"
    mv "$tmp" "$LIBS_DIR"
}

write_config() {
    mkdir -p "$DATA_DIR" "$LOG_DIR"
    cat >"$PROPS_FILE" <<EOF
# Written by docker/kafka.sh; edits are overwritten on the next start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA_DIR
num.partitions=6
default.replication.factor=1
auto.create.topics.enable=true
# ChangeEvents carry every region of a city: up to 16 MiB (monitor/adapters/bus_kafka.py)
message.max.bytes=16777216
replica.fetch.max.bytes=16777216
offsets.topic.replication.factor=1
# Fewer offsets partitions than the default 50: the first consumer group of a
# test session then waits far less for __consumer_offsets to be created.
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
num.network.threads=2
num.io.threads=4
log.retention.hours=24
EOF
    cat >"$LOG4J_FILE" <<'EOF'
# Written by docker/kafka.sh: everything at INFO to stdout, which the script
# redirects to var/services/kafka/logs/broker.log.
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
EOF
}

format_storage() {
    if [[ -f "$DATA_DIR/meta.properties" ]]; then
        return 0
    fi
    local cluster_id
    cluster_id="$(java -cp "$LIBS_DIR/*" kafka.tools.StorageTool random-uuid 2>>"$BROKER_LOG" | tail -n 1)" \
        || fail "could not generate a KRaft cluster id with kafka.tools.StorageTool."
    log "formatting KRaft storage in $DATA_DIR (cluster id $cluster_id)"
    java -Dlog4j2.configurationFile="$LOG4J_FILE" -cp "$LIBS_DIR/*" kafka.tools.StorageTool \
        format -t "$cluster_id" -c "$PROPS_FILE" --ignore-formatted >>"$BROKER_LOG" 2>&1 \
        || fail "formatting the KRaft storage in $DATA_DIR failed; delete $VAR_DIR and retry."
}

wait_ready() {
    local pid="$1" deadline=$((SECONDS + READY_TIMEOUT))
    SHOW_LOG_TAIL=1
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            fail "Kafka did not start: the broker process $pid exited during start-up."
        fi
        if kafka_answers; then
            return 0
        fi
        sleep 1
    done
    log "last readiness probe error: $(tail -n 3 "$VAR_DIR/readiness.err" 2>/dev/null || true)"
    fail "Kafka did not start: no answer on $BOOTSTRAP within ${READY_TIMEOUT}s (pid $pid still running; stop it with 'bash docker/kafka.sh stop')."
}

cmd_start() {
    local pid
    if pid="$(broker_pid)"; then
        local running_port
        running_port="$(cat "$PORT_FILE" 2>/dev/null || echo "$PORT")"
        if [[ "$running_port" != "$PORT" ]]; then
            fail "Kafka already runs from $VAR_DIR on port $running_port, not $PORT; run 'bash docker/kafka.sh stop' first."
        fi
        wait_ready "$pid"
        log "already running (pid $pid)"
        echo "$BOOTSTRAP"
        return 0
    fi
    if port_open "$PORT"; then
        if kafka_answers; then
            log "a Kafka broker not started by this script already answers on $BOOTSTRAP; using it"
            echo "$BOOTSTRAP"
            return 0
        fi
        fail "port $PORT is taken by something that is not a Kafka broker; free it or set URBAN_MONITOR_KAFKA_PORT."
    fi
    if port_open "$CONTROLLER_PORT"; then
        fail "controller port $CONTROLLER_PORT is taken; free it or set URBAN_MONITOR_KAFKA_CONTROLLER_PORT."
    fi
    command -v java >/dev/null 2>&1 || fail "Java is not installed; Kafka $KAFKA_VERSION needs Java 17 or newer."

    resolve_libs
    write_config
    SHOW_LOG_TAIL=1
    : >"$BROKER_LOG"
    format_storage

    log "starting Kafka $KAFKA_VERSION on $BOOTSTRAP (controller 127.0.0.1:$CONTROLLER_PORT)"
    # setsid: the broker must outlive this script and must not receive the
    # Ctrl-C meant for a test run started from the same terminal.
    # The child writes its own pid (then execs java) so the pid file names the
    # JVM whatever setsid does; fd 9 (the script lock) must not leak into it.
    rm -f "$PID_FILE"
    echo "$PORT" >"$PORT_FILE"
    # shellcheck disable=SC2016
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" \
        java $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$LOG4J_FILE" -Dkafka.logs.dir="$LOG_DIR" \
        -cp "$LIBS_DIR/*" kafka.Kafka "$PROPS_FILE" >>"$BROKER_LOG" 2>&1 </dev/null 9>&- &
    local waited=0
    while [[ ! -s "$PID_FILE" ]] && ((waited < 50)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ -n "$pid" ]] || fail "Kafka did not start: the launcher wrote no pid to $PID_FILE."
    wait_ready "$pid"
    log "ready (pid $pid, log $BROKER_LOG)"
    echo "$BOOTSTRAP"
}

cmd_stop() {
    local pid
    if ! pid="$(broker_pid)"; then
        log "not running"
        return 0
    fi
    log "stopping Kafka (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "broker did not stop within 30 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_status() {
    local pid
    if pid="$(broker_pid)"; then
        if kafka_answers; then
            echo "running (pid $pid) on $BOOTSTRAP"
            return 0
        fi
        echo "starting or unhealthy (pid $pid): no answer on $BOOTSTRAP"
        return 1
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
