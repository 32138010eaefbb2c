#!/usr/bin/env bash
# Runs every benchmark in docs/BENCHMARKS.md against the local PostgreSQL and prints the tables.
# Traffic goes to 127.0.0.1 only. Takes a few minutes on 2 cores (plus set-up on a first run).
#
# The benches are cargo bench targets in benches/ (not part of the tenantry binary); each one
# refuses a database that holds tenants it did not create.
#
#   scripts/bench.sh                    # B1–B5 at 1,000 tenants, cache, 10,000-tenant operations,
#                                       # instructions per request (callgrind)
#   TENANTS=200 DURATION=5 scripts/bench.sh read    # a smoke run: TENANTS=20 DURATION=1 WARMUP=1
#   TRUSTED=1 scripts/bench.sh read     # the GraphQL read by documentId (a trusted document)
#   SCALE_TENANTS=2000 scripts/bench.sh scale
#   scripts/bench.sh cache | scripts/bench.sh instructions | scripts/bench.sh jobs
set -euo pipefail
cd "$(dirname "$0")/.."

PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
TENANTS=${TENANTS:-1000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-15}
SCALE_TENANTS=${SCALE_TENANTS:-10000}
JOBS=${JOBS:-8}
INSTR_TENANTS=${INSTR_TENANTS:-100}
INSTR_REQUESTS=${INSTR_REQUESTS:-500}
what=${1:-all}

command -v pgbench >/dev/null || { echo "pgbench is missing: apt-get install postgresql-client" >&2; exit 1; }
if { [ "$what" = all ] || [ "$what" = instructions ]; } && ! command -v valgrind >/dev/null; then
  echo "installing valgrind (for callgrind)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
# Builds tenantry and every bench target with the release profile.
cargo bench --quiet --no-run
# `cargo bench --bench NAME -- ARGS` runs one bench target with ARGS.
bench() { local name=$1; shift; cargo bench --quiet --bench "$name" -- "$@"; }

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
export RUST_LOG=${RUST_LOG:-warn}
if [ "$what" = all ] || [ "$what" = read ]; then
  ensure_db tenantry_bench
  quiet_postgres
  echo "\$ DATABASE_URL=$PGURL/tenantry_bench cargo bench --bench read -- --tenants $TENANTS --duration $DURATION --warmup $WARMUP"
  DATABASE_URL=$PGURL/tenantry_bench bench read --tenants "$TENANTS" --duration "$DURATION" --warmup "$WARMUP" ${TRUSTED:+--trusted}
fi
if [ "$what" = all ] || [ "$what" = cache ]; then
  ensure_db tenantry_cache
  echo "\$ DATABASE_URL=$PGURL/tenantry_cache cargo bench --bench cache"
  DATABASE_URL=$PGURL/tenantry_cache bench cache ${CACHE_HITS:+--hits "$CACHE_HITS"}
fi
if [ "$what" = all ] || [ "$what" = scale ]; then
  # Provisioning is what is measured, so this one starts empty every time.
  psql "$PGURL/postgres" -qc "drop database if exists tenantry_scale with (force)" -c "create database tenantry_scale"
  echo "\$ DATABASE_URL=$PGURL/tenantry_scale cargo bench --bench scale -- --tenants $SCALE_TENANTS --jobs $JOBS"
  DATABASE_URL=$PGURL/tenantry_scale bench scale --tenants "$SCALE_TENANTS" --jobs "$JOBS"
fi
if [ "$what" = all ] || [ "$what" = instructions ]; then
  # Shares the read bench's database and tenants (the first INSTR_TENANTS of them).
  ensure_db tenantry_bench
  echo "\$ DATABASE_URL=$PGURL/tenantry_bench cargo bench --bench instructions -- --tenants $INSTR_TENANTS --requests $INSTR_REQUESTS"
  DATABASE_URL=$PGURL/tenantry_bench bench instructions --tenants "$INSTR_TENANTS" --requests "$INSTR_REQUESTS"
fi

if [ "$what" = all ] || [ "$what" = jobs ]; then
  # Background jobs: no-op throughput through one worker, enqueue → start latency (own database).
  echo "\$ PGURL=$PGURL cargo bench --bench jobs -- 5000 200 5 4"
  PGURL=$PGURL bench jobs 5000 200 5 4
fi
