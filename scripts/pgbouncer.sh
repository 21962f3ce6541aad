#!/usr/bin/env bash
# PgBouncer in transaction mode on loopback, in front of the test PostgreSQL: installed from Debian's package when
# missing, configured here (nothing under /etc is used), started if its port is closed. Safe to run again.
# PGBOUNCER_PORT (default 6543, away from the packaged service's 6432) and PGBOUNCER_STATE_DIR choose where.
set -euo pipefail
port="${PGBOUNCER_PORT:-6543}"
pg_host="${PGHOST_TEST:-127.0.0.1}"
pg_port="${PGPORT_TEST:-5432}"
state="${PGBOUNCER_STATE_DIR:-/tmp/umzug-zero-downtime-pgbouncer-$port}"
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_open "$port" && exit 0

if ! command -v pgbouncer >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq pgbouncer || { apt-get update -qq && apt-get install -y -qq pgbouncer; }; } >"/tmp/pgbouncer-install.log" 2>&1 ||
    { echo "pgbouncer: could not install Debian's pgbouncer; see /tmp/pgbouncer-install.log" >&2; tail -5 /tmp/pgbouncer-install.log >&2; exit 1; }
fi

mkdir -p "$state"
cat >"$state/userlist.txt" <<USERS
"postgres" ""
USERS
# Transaction pooling, as most production PgBouncers run: a server session serves a client only for one
# transaction (or one statement outside a transaction), so nothing may rest on session state.
cat >"$state/pgbouncer.ini" <<INI
[databases]
* = host=$pg_host port=$pg_port
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $state/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = $state/pgbouncer.log
pidfile = $state/pgbouncer.pid
INI
# PgBouncer will not run as root: it drops to the postgres user, who must own its files.
run_as=()
if [ "$(id -u)" = 0 ]; then
  chown -R postgres "$state"
  run_as=(-u postgres)
fi
pgbouncer -d "${run_as[@]}" "$state/pgbouncer.ini" >"$state/start.log" 2>&1 ||
  { echo "pgbouncer: did not start; see $state/start.log and $state/pgbouncer.log" >&2; tail -5 "$state/start.log" "$state/pgbouncer.log" >&2 || true; exit 1; }
for _ in $(seq 1 50); do port_open "$port" && exit 0; sleep 0.1; done
echo "pgbouncer: not listening on 127.0.0.1:$port; see $state/pgbouncer.log" >&2
tail -5 "$state/pgbouncer.log" >&2 || true
exit 1
