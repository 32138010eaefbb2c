#!/usr/bin/env bash
# A two-node Citus cluster on this machine, for the opt-in Citus suite (docs/SCALING.md,
# "Running the Citus suite"). Needs the Citus extension installed for the PostgreSQL whose
# initdb/pg_ctl are found (`pg_config --pkglibdir` holds citus.so); `build` makes and installs it.
#
#   scripts/citus-cluster.sh build SRC[@REF]  # build Citus from source and install it (see below)
#   scripts/citus-cluster.sh start   # coordinator on 127.0.0.1:55432, worker on 127.0.0.1:55433
#   scripts/citus-cluster.sh test    # start, then run the suite against it
#   scripts/citus-cluster.sh stop
#
# `build`: SRC is a Citus source directory or a git repository of Citus (bare or not); from a
# repository it builds REF (default: the newest v13.* tag). The source is copied to
# target/tmp/citus-build and built there (SRC is never written to), without LLVM bitcode (no clang
# needed), then installed with `make install` into that PostgreSQL's directories (run it as root,
# or as a user who may write there). As root on Debian/Ubuntu it first apt-installs the missing
# build dependencies. It does nothing when the same Citus version is installed already.
#
# Data lives in target/tmp/citus (removed by `stop`). Trust auth on loopback only.
set -euo pipefail
CALLER_DIR=$PWD
cd "$(dirname "$0")/.."

COORDINATOR_PORT=${CITUS_COORDINATOR_PORT:-55432}
WORKER_PORT=${CITUS_WORKER_PORT:-55433}
ROOT=$PWD/target/tmp/citus
DB=tenantry

bin_dir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
  else
    dirname "$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)"
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

# Debian/Ubuntu packages Citus's configure and build need for PostgreSQL major version $1: the
# server headers, a compiler, Citus's own libraries (curl, lz4, zstd), and the libraries
# `pg_config --libs` names, which configure links its test programs against.
build_deps() {
  echo "postgresql-server-dev-$1 build-essential libcurl4-openssl-dev liblz4-dev libzstd-dev" \
    "libkrb5-dev libssl-dev libselinux1-dev libxslt1-dev libxml2-dev libpam0g-dev libreadline-dev" \
    "zlib1g-dev libicu-dev"
}

install_build_deps() {
  local major=$1 missing=() pkg
  command -v dpkg-query >/dev/null 2>&1 || return 0
  for pkg in $(build_deps "$major"); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$pkg")
  done
  [ ${#missing[@]} = 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "missing build dependencies; as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "installing build dependencies: ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
  local arg=${1:-} src ref="" pg_config=$BIN/pg_config out=$PWD/target/tmp/citus-build version major
  if [ -z "$arg" ]; then
    echo "usage: $0 build SRC[@REF] (a Citus source directory, or a git repository and a ref)" >&2
    exit 2
  fi
  if [[ $arg != /* ]]; then arg=$CALLER_DIR/$arg; fi
  if [ -d "$arg" ]; then src=$arg; else src=${arg%@*} ref=${arg##*@}; fi
  [ -d "$src" ] || { echo "no such directory: $src" >&2; exit 2; }
  major=$("$pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
  rm -rf "$out"
  if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    ref=${ref:-$(git -C "$src" tag -l 'v13.*' | sort -V | tail -n 1)}
    [ -n "$ref" ] || { echo "$src has no v13.* tag: name a ref, $0 build $src@REF" >&2; exit 2; }
    if ! git -C "$src" rev-parse -q --verify "$ref^{commit}" >/dev/null; then
      echo "$src has no tag or commit $ref" >&2
      exit 2
    fi
    mkdir -p "$out"
    git -C "$src" archive --format=tar "$ref" | tar -x -C "$out"
  elif [ -n "$ref" ]; then
    echo "$src is not a git repository: it has no ref $ref" >&2
    exit 2
  else
    mkdir -p "$out"
    cp -a "$src/." "$out"
  fi
  version=$(sed -nE "s/^PACKAGE_VERSION='([^']+)'.*/\1/p" "$out/configure" 2>/dev/null || true)
  [ -n "$version" ] || { echo "$src${ref:+@$ref} does not look like Citus's source (no configure)" >&2; exit 2; }
  if grep -qaF "Citus $version on" "$("$pg_config" --pkglibdir)/citus.so" 2>/dev/null; then
    echo "Citus $version is installed for $("$pg_config" --version) already"
    rm -rf "$out"
    return 0
  fi
  install_build_deps "$major"
  # PostgreSQL 15.20 declares have_createdb_privilege() in its headers, and Citus 13 keeps a static
  # function of that name for PostgreSQL before 16: "static declaration follows non-static".
  # Rename Citus's copy, in the build tree only.
  if grep -qs 'have_createdb_privilege' "$("$pg_config" --includedir-server)/commands/dbcommands.h"; then
    sed -i 's/^have_createdb_privilege(void)$/#define have_createdb_privilege citus_compat_have_createdb_privilege\n&/' \
      "$out/src/include/pg_version_compat.h"
  fi
  echo "building Citus $version for $("$pg_config" --version) in $out"
  (
    cd "$out"
    ./configure PG_CONFIG="$pg_config" >configure.log
    make -j2 with_llvm=no >make.log
    make install with_llvm=no >install.log
  )
  rm -rf "$out"
  echo "installed Citus $version into $("$pg_config" --pkglibdir)"
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
build) build "${2:-}" ;;
start) start ;;
stop) stop ;;
test)
  start
  CITUS_URL="postgres://postgres@127.0.0.1:$COORDINATOR_PORT/$DB" cargo test --test api citus -- --nocapture
  ;;
*)
  echo "usage: $0 build SRC[@REF]|start|test|stop" >&2
  exit 2
  ;;
esac
