#!/usr/bin/env bash
# Runs every benchmark in docs/BENCHMARKS.md against the local PostgreSQL and prints the tables.
# Traffic goes to 127.0.0.1 only. Takes a few minutes on 2 cores (plus set-up on a first run).
#
#   scripts/bench.sh                    # B1–B5 at 1,000 tenants, then 10,000-tenant operations
#   TENANTS=200 DURATION=5 scripts/bench.sh read
#   SCALE_TENANTS=2000 scripts/bench.sh scale
set -euo pipefail
cd "$(dirname "$0")/.."

PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
TENANTS=${TENANTS:-1000}
DURATION=${DURATION:-10}
SCALE_TENANTS=${SCALE_TENANTS:-10000}
JOBS=${JOBS:-8}
what=${1:-all}

command -v pgbench >/dev/null || { echo "pgbench is missing: apt-get install postgresql-client" >&2; exit 1; }
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/tenantry

machine() {
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  commit: $(git rev-parse --short HEAD)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)  nproc: $(nproc)  ram: $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "postgres: $(psql "$PGURL/postgres" -Atc 'show server_version') max_connections=$(psql "$PGURL/postgres" -Atc 'show max_connections')"
}

# A database of its own per benchmark; the read bench keeps its tenants between runs.
ensure_db() { psql "$PGURL/postgres" -qAtc "select 1 from pg_database where datname = '$1'" | grep -q 1 \
  || psql "$PGURL/postgres" -qc "create database $1"; }

# Autovacuum still digesting a previous run's 10,000 schemas steals CPU from the measurements.
quiet_postgres() {
  for _ in $(seq 120); do
    [ "$(psql "$PGURL/postgres" -Atc "select count(*) from pg_stat_activity where backend_type = 'autovacuum worker'")" = 0 ] && return
    sleep 1
  done
  echo "warning: autovacuum still busy; figures may be low" >&2
}

machine
export RUST_LOG=${RUST_LOG:-warn} LOG_FORMAT=json
if [ "$what" = all ] || [ "$what" = read ]; then
  ensure_db tenantry_bench
  quiet_postgres
  echo "\$ DATABASE_URL=$PGURL/tenantry_bench $bin bench read --tenants $TENANTS --duration $DURATION"
  DATABASE_URL=$PGURL/tenantry_bench "$bin" bench read --tenants "$TENANTS" --duration "$DURATION"
fi
if [ "$what" = all ] || [ "$what" = cache ]; then
  ensure_db tenantry_cache
  echo "\$ DATABASE_URL=$PGURL/tenantry_cache $bin bench cache"
  DATABASE_URL=$PGURL/tenantry_cache "$bin" bench cache
fi
if [ "$what" = all ] || [ "$what" = scale ]; then
  # Provisioning is what is measured, so this one starts empty every time.
  psql "$PGURL/postgres" -qc "drop database if exists tenantry_scale with (force)" -c "create database tenantry_scale"
  echo "\$ DATABASE_URL=$PGURL/tenantry_scale $bin bench scale --tenants $SCALE_TENANTS --jobs $JOBS"
  DATABASE_URL=$PGURL/tenantry_scale "$bin" bench scale --tenants "$SCALE_TENANTS" --jobs "$JOBS"
fi
