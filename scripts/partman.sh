#!/usr/bin/env bash
# pg_partman for the tests (test/partman.test.ts): Debian's postgresql-<major>-partman, installed when the test
# PostgreSQL does not offer the extension (pg_available_extensions). Safe to run again; prints nothing on success.
# The package only adds files under the server's share and lib directories; no restart is needed (pg_partman's
# background worker is not used: the tests call run_maintenance() themselves).
set -euo pipefail
pg_host="${PGHOST_TEST:-127.0.0.1}"
pg_port="${PGPORT_TEST:-5432}"
q() { psql -X -q -At -h "$pg_host" -p "$pg_port" -U postgres -d postgres -c "$1"; }
[ "$(q "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_partman'")" = 1 ] && exit 0

major="$(q "SELECT current_setting('server_version_num')::int / 10000")"
pkg="postgresql-$major-partman"
log=/tmp/partman-install.log
export DEBIAN_FRONTEND=noninteractive
# A fresh CI image has no package lists: update once, only when the install fails without them.
{ apt-get install -y -qq "$pkg" || { apt-get update -qq && apt-get install -y -qq "$pkg"; }; } >"$log" 2>&1 ||
  { echo "partman: could not install Debian's $pkg; see $log" >&2; tail -5 "$log" >&2; exit 1; }
[ "$(q "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_partman'")" = 1 ] ||
  { echo "partman: $pkg is installed but PostgreSQL on $pg_host:$pg_port does not offer pg_partman (is it another installation than Debian's?)" >&2; exit 1; }
