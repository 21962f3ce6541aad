#!/usr/bin/env bash
# Brings up what the tests need and is safe to run again: PostgreSQL (started if it is not answering) and
# FerretDB v1.24.2 on loopback with its SQLite backend (built once into a cache, started if its port is closed),
# PgBouncer in transaction mode in front of PostgreSQL (scripts/pgbouncer.sh), and the pg_partman extension
# (scripts/partman.sh, installed from Debian's package when PostgreSQL does not offer it).
# Prints nothing but problems and a one-line summary.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
export PATH="$PATH:/usr/local/go/bin"

pg_host="${PGHOST_TEST:-127.0.0.1}"
pg_port="${PGPORT_TEST:-5432}"
if ! pg_isready -q -h "$pg_host" -p "$pg_port" 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    for v in $(ls /etc/postgresql); do pg_ctlcluster --skip-systemctl-redirect "$v" main start || true; done
  fi
  for _ in $(seq 1 60); do pg_isready -q -h "$pg_host" -p "$pg_port" 2>/dev/null && break; sleep 0.5; done
  pg_isready -q -h "$pg_host" -p "$pg_port" || { echo "services: PostgreSQL is not answering on $pg_host:$pg_port and could not be started" >&2; exit 1; }
fi

ferret_port="${FERRETDB_PORT:-27117}"
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! port_open "$ferret_port"; then
  bin="$("$here/ferretdb-build.sh")"
  # One FerretDB per port on the machine, whichever checkout started it: its data, log and pid live beside the
  # build cache, so a test that restarts it (test/support/mongo.ts) finds them from any checkout.
  state="${FERRETDB_STATE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/umzug-zero-downtime/ferretdb-run-$ferret_port}"
  data="$state/ferretdb-data"
  mkdir -p "$data"
  nohup "$bin" --handler=sqlite --sqlite-url="file:$data/" --listen-addr="127.0.0.1:$ferret_port" \
    --state-dir=- --telemetry=disable --debug-addr=- --log-level=error >"$state/ferretdb.log" 2>&1 &
  echo $! >"$state/ferretdb.pid"
  for _ in $(seq 1 100); do port_open "$ferret_port" && break; sleep 0.1; done
  port_open "$ferret_port" || { echo "services: FerretDB did not start; see $state/ferretdb.log" >&2; tail -20 "$state/ferretdb.log" >&2; exit 1; }
fi
bash "$here/pgbouncer.sh"
bash "$here/partman.sh"
echo "services: PostgreSQL on $pg_host:$pg_port, FerretDB on 127.0.0.1:$ferret_port, PgBouncer (transaction mode) on 127.0.0.1:${PGBOUNCER_PORT:-6543}, pg_partman"
