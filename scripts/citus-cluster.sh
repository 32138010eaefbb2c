#!/usr/bin/env bash
# A two-node Citus cluster on this machine, for the opt-in Citus suite (docs/SCALING.md,
# "Running the Citus suite"). Needs the Citus extension installed for the PostgreSQL whose
# initdb/pg_ctl are found (`pg_config --pkglibdir` holds citus.so).
#
#   scripts/citus-cluster.sh start   # coordinator on 127.0.0.1:55432, worker on 127.0.0.1:55433
#   scripts/citus-cluster.sh test    # start, then run the suite against it
#   scripts/citus-cluster.sh stop
#
# Data lives in target/tmp/citus (removed by `stop`). Trust auth on loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

COORDINATOR_PORT=${CITUS_COORDINATOR_PORT:-55432}
WORKER_PORT=${CITUS_WORKER_PORT:-55433}
ROOT=$PWD/target/tmp/citus
DB=tenantry

bin_dir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
  else
    dirname "$(ls /usr/lib/postgresql/*/bin/initdb | tail -n 1)"
  fi
}
BIN=$(bin_dir)

# initdb and postgres refuse to run as root: run them as `postgres` then.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

psql_at() {
  local port=$1 db=$2
  shift 2
  "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d "$db" "$@"
}

start_node() {
  local name=$1 port=$2 dir=$ROOT/$1
  if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown -R postgres "$ROOT"
    as_pg "$BIN/initdb" -D "$dir" -U postgres --auth=trust >/dev/null
    cat >>"$dir/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_preload_libraries = 'citus'
wal_level = logical
max_replication_slots = 16
max_wal_senders = 16
max_connections = 200
fsync = off
EOF
  fi
  if ! as_pg "$BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    as_pg "$BIN/pg_ctl" -D "$dir" -l "$dir/log" -w start >/dev/null
  fi
  if ! psql_at "$port" postgres -tAc "select 1 from pg_database where datname = '$DB'" | grep -q 1; then
    psql_at "$port" postgres -c "create database $DB"
    psql_at "$port" "$DB" -c "create extension citus"
  fi
  echo "$name: postgres://postgres@127.0.0.1:$port/$DB"
}

start() {
  if [ ! -f "$("$BIN/pg_config" --pkglibdir 2>/dev/null || echo /nonexistent)/citus.so" ] &&
    ! compgen -G "/usr/lib/postgresql/*/lib/citus.so" >/dev/null; then
    echo "the Citus extension is not installed for $BIN's PostgreSQL (docs/SCALING.md says where it comes from)" >&2
    exit 1
  fi
  start_node coordinator "$COORDINATOR_PORT"
  start_node worker "$WORKER_PORT"
  psql_at "$COORDINATOR_PORT" "$DB" >/dev/null <<EOF
alter database $DB set citus.enable_schema_based_sharding = on;
select citus_set_coordinator_host('127.0.0.1', $COORDINATOR_PORT);
select citus_set_node_property('127.0.0.1', $COORDINATOR_PORT, 'shouldhaveshards', true);
select 1 from citus_add_node('127.0.0.1', $WORKER_PORT)
 where not exists (select 1 from pg_dist_node where nodeport = $WORKER_PORT);
EOF
}

stop() {
  for name in worker coordinator; do
    if [ -f "$ROOT/$name/postmaster.pid" ]; then
      as_pg "$BIN/pg_ctl" -D "$ROOT/$name" -m fast -w stop >/dev/null || true
    fi
  done
  rm -rf "$ROOT"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
test)
  start
  CITUS_URL="postgres://postgres@127.0.0.1:$COORDINATOR_PORT/$DB" cargo test --test api citus -- --nocapture
  ;;
*)
  echo "usage: $0 start|test|stop" >&2
  exit 2
  ;;
esac
