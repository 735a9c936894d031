#!/usr/bin/env bash
# The headless browser that tests/browser/ drives: Debian's chromium (the Playwright
# Python package then drives it through `executable_path`, so no browser download is
# needed at run time). Idempotent and quiet when chromium is already there. Needs root
# (or sudo) only when something is missing; without apt-get it says so and the browser
# tests skip with that reason.
#
#   bash docker/browser-deps.sh          # install if missing; prints nothing otherwise
set -euo pipefail

say() { echo "[browser-deps.sh] $*" >&2; }

PACKAGES=(chromium fonts-dejavu-core)
found=""
for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null 2>&1; then found="$candidate"; break; fi
done
if [[ -n "$found" ]]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    say "apt-get not found; install chromium by hand (the browser tests will skip)"
    exit 0
fi
SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        say "not root and no sudo; install chromium by hand (the browser tests will skip)"
        exit 0
    fi
fi
say "installing ${PACKAGES[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >&2
