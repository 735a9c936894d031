#!/usr/bin/env bash
# THE test command (see README): on a fresh Debian machine with Python 3.11,
# Java 17 and Maven it creates the venv, installs the package with its dev and
# train extras, starts real Kafka and PostgreSQL (no Docker), and runs pytest.
#
#   bash docker/test.sh                      # whole suite except benchmarks
#   bash docker/test.sh tests/integration -x # extra arguments go to pytest
#
# The services are left running for the next run; stop them with
# `bash docker/kafka.sh stop` and `bash docker/postgres.sh stop`.
# The exit code is pytest's.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

say() { echo "[test.sh] $*" >&2; }

PYTHON="${URBAN_MONITOR_PYTHON_BOOTSTRAP:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [[ ! -x .venv/bin/python ]]; then
    say "creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip >&2
fi
# shellcheck disable=SC1091
. .venv/bin/activate

say "installing the package with its dev and train extras"
python -m pip install -q -e '.[dev,train]' >&2

# System packages some tests use (e.g. GDAL's ogrinfo), when a helper script lists them.
if [[ -f docker/apt-deps.sh ]] && ! bash docker/apt-deps.sh; then
    say "WARNING: docker/apt-deps.sh failed; tests needing those system tools may skip"
fi

# Debian chromium for the browser tests (no browser download: the registries only).
if ! bash docker/browser-deps.sh; then
    say "ERROR: chromium could not be installed (docker/browser-deps.sh); the browser tests need it"
    exit 1
fi

say "starting Kafka"
if ! KAFKA_BOOTSTRAP="$(bash docker/kafka.sh start)"; then
    say "ERROR: Kafka did not start (see the messages above; log: var/services/kafka/logs/broker.log)"
    exit 1
fi
say "starting PostgreSQL"
if ! DATABASE_URL="$(bash docker/postgres.sh start)"; then
    say "ERROR: PostgreSQL did not start (see the messages above; log: var/services/postgres/postgres.log)"
    exit 1
fi
export URBAN_MONITOR_TEST_KAFKA="$KAFKA_BOOTSTRAP"
export URBAN_MONITOR_TEST_DATABASE_URL="$DATABASE_URL"
say "Kafka $URBAN_MONITOR_TEST_KAFKA, PostgreSQL $URBAN_MONITOR_TEST_DATABASE_URL"

# Two CPU cores are shared by the services and the tests: torch stays on one thread.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# Test paths given as arguments replace the default `tests`.
targets=(tests)
for arg in "$@"; do
    if [[ "$arg" != -* && -e "${arg%%::*}" ]]; then
        targets=()
        break
    fi
done

set +e
python -m pytest "${targets[@]}" -m "not benchmark" "$@"
status=$?
set -e
say "pytest exited with $status"
exit "$status"
