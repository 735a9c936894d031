#!/usr/bin/env bash
# System packages the tests need beyond Python wheels, installed once (Debian/Ubuntu):
#   gdal-bin  - `ogrinfo`, the reference OGC API - Features client that
#               tests/integration/test_gdal_ogcapi.py points at the running API.
# Idempotent and quiet when everything is present. Needs root (or sudo) only when
# something is missing; without apt-get it says so and leaves the tests to skip.
set -euo pipefail

say() { echo "[apt-deps.sh] $*" >&2; }

PACKAGES=(gdal-bin)
missing=()
command -v ogrinfo >/dev/null 2>&1 || missing+=(gdal-bin)

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    say "apt-get not found; install ${missing[*]} by hand (the GDAL client test will skip)"
    exit 0
fi
SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        say "not root and no sudo; install ${missing[*]} by hand (the GDAL client test will skip)"
        exit 0
    fi
fi
say "installing ${missing[*]} (of ${PACKAGES[*]})"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
