#!/usr/bin/env bash
# postgres.sh: a throw-away PostgreSQL server on 127.0.0.1 for tests and benchmarks.
#
#   scripts/postgres.sh run CMD [ARGS...]  start a server, run CMD with DB_TEST_PG_URI
#                                          exported, stop the server on exit.
#                                          If DB_TEST_PG_URI is already set, just run CMD.
#   scripts/postgres.sh up                 start a server that outlives this script
#                                          (state in $REFLEX_PG_DIR, default
#                                          /tmp/reflex-postgres) and print the
#                                          export line for DB_TEST_PG_URI.
#   scripts/postgres.sh down               stop the server started by "up".
#
# The server binaries (initdb, pg_ctl) are taken from the newest
# /usr/lib/postgresql/*/bin; the postgresql package is installed with apt-get
# when none is found (needs root). As root the server runs as the postgres
# user. DB_TEST_PG_URI is a pgx DSN of the server's "postgres" database;
# tests create and drop their own databases on that server.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

ensure_installed() {
  if [ -n "$(bindir)" ] && [ -x "$(bindir)/initdb" ]; then
    return
  fi
  log "PostgreSQL server binaries not found; installing postgresql with apt-get"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
}

# as_owner CMD: runs CMD as the postgres user when root (initdb refuses root).
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    su postgres -s /bin/sh -c "$*"
  else
    sh -c "$*"
  fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# random_port prints a random port below the kernel's ephemeral range: a
# client whose own ephemeral port equals the port it dials while nothing
# listens there connects to itself (TCP simultaneous open) and waits
# forever for the server's greeting.
random_port() {
  local low=32768
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  [ "$low" -gt 11000 ] || low=32768
  echo $(( 10000 + RANDOM % (low - 10000) ))
}

# start DIR: initialise DIR and start a server on a free port; prints the port.
start() {
  local dir=$1 bin port
  bin=$(bindir)
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
  as_owner "'$bin/initdb' -D '$dir/data' -A trust -U postgres --no-sync >'$dir/initdb.log' 2>&1" || {
    log "initdb failed:"; cat "$dir/initdb.log" >&2; return 1; }
  for _ in $(seq 1 20); do
    port=$(random_port)
    port_free "$port" || continue
    if as_owner "'$bin/pg_ctl' -D '$dir/data' -l '$dir/log' -w -t 30 -o \"-p $port -k '$dir' -c listen_addresses=127.0.0.1 -c max_connections=500 -c fsync=${REFLEX_PG_FSYNC:-off} -c synchronous_commit=${REFLEX_PG_SYNC:-off} -c shared_buffers=256MB ${REFLEX_PG_ARGS:-}\" start >/dev/null 2>&1"; then
      echo "$port" >"$dir/port"
      echo "$port"
      return 0
    fi
    log "server on port $port did not start; retrying"; tail -5 "$dir/log" >&2 || true
  done
  log "could not start PostgreSQL"; return 1
}

stop() {
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] || return 0
  as_owner "'$(bindir)/pg_ctl' -D '$dir/data' -m immediate -w -t 30 stop >/dev/null 2>&1" || true
}

cmd=${1:-}
shift || true
case "$cmd" in
  run)
    if [ -n "${DB_TEST_PG_URI:-}" ]; then exec "$@"; fi
    ensure_installed
    dir=$(mktemp -d /tmp/reflex-postgres.XXXXXX)
    chmod 755 "$dir"
    trap 'stop "$dir"; rm -rf "$dir"' EXIT
    port=$(start "$dir")
    export DB_TEST_PG_URI="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
    log "$("$(bindir)/postgres" --version) on 127.0.0.1:$port"
    "$@"
    ;;
  up)
    ensure_installed
    dir=${REFLEX_PG_DIR:-/tmp/reflex-postgres}
    if [ -f "$dir/port" ] && [ -f "$dir/data/postmaster.pid" ] &&
      as_owner "'$(bindir)/pg_ctl' -D '$dir/data' status >/dev/null 2>&1"; then
      port=$(cat "$dir/port")
    else
      rm -rf "$dir"; port=$(start "$dir")
    fi
    echo "export DB_TEST_PG_URI='postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable'"
    ;;
  down)
    dir=${REFLEX_PG_DIR:-/tmp/reflex-postgres}
    stop "$dir"; rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 run CMD... | up | down" >&2; exit 2 ;;
esac
