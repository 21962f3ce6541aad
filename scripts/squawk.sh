#!/usr/bin/env bash
# Installs squawk (squawk-cli, pinned) once into a cache directory outside the repo and prints the binary's path.
# Not a dev dependency: squawk-cli ships its binary as one optional package per platform, and a lock file written
# where the registry serves only this platform's cannot be installed elsewhere (`npm ci` refuses it). The lint corpus
# test and bench/lint.ts call this script; SQUAWK=/path/to/squawk overrides it.
set -euo pipefail
version="2.66.0"
if [ -n "${SQUAWK:-}" ]; then echo "$SQUAWK"; exit 0; fi
cache="${SQUAWK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/umzug-zero-downtime/squawk-$version}"
bin="$cache/node_modules/.bin/squawk"
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then echo "$bin"; exit 0; fi
mkdir -p "$cache"
log="$cache/install.log"
if ! (cd "$cache" && npm init -y >/dev/null && npm install --no-audit --no-fund "squawk-cli@$version") >"$log" 2>&1; then
  tail -20 "$log" >&2
  echo "squawk: could not install squawk-cli@$version into $cache (log above); set SQUAWK=/path/to/squawk to use another" >&2
  exit 1
fi
"$bin" --version >/dev/null 2>&1 || { echo "squawk: $bin does not run on this platform" >&2; exit 1; }
echo "$bin"
