#!/usr/bin/env bash
# THE demo command (see README): on a fresh machine with Python 3.11 it creates the
# venv, installs the package (runtime only: no torch), and runs the embedded demo:
# a synthetic city is generated (cached), served by a local STAC API, and replayed
# through the whole pipeline; it ends with a summary and an HTML report.
#
#   bash docker/demo.sh                 # default demo (config/demo.yaml)
#   bash docker/demo.sh --fast          # extra arguments go to `urban-monitor demo`
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
say() { echo "[demo.sh] $*" >&2; }

PYTHON="${URBAN_MONITOR_PYTHON_BOOTSTRAP:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [[ ! -x .venv/bin/python ]]; then
    say "creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip >&2
fi
# shellcheck disable=SC1091
. .venv/bin/activate
say "installing urban-monitor"
python -m pip install -q -e . >&2
exec urban-monitor --config config/demo.yaml demo "$@"
