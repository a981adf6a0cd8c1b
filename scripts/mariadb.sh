#!/usr/bin/env bash
# mariadb.sh: a throw-away MariaDB server on 127.0.0.1 for tests and benchmarks.
#
#   scripts/mariadb.sh run CMD [ARGS...]  start a server, run CMD with DB_TEST_URI
#                                         exported, stop the server on exit.
#                                         If DB_TEST_URI is already set, just run CMD.
#   scripts/mariadb.sh up                 start a server that outlives this script
#                                         (state in $REFLEX_DB_DIR, default
#                                         /tmp/reflex-mariadb) and print the
#                                         export line for DB_TEST_URI.
#   scripts/mariadb.sh down               stop the server started by "up".
#
# mariadbd is installed with apt-get when it is missing (needs root).
# DB_TEST_URI is a go-sql-driver/mysql DSN ending in "/"; tests create and
# drop their own databases under it.
set -euo pipefail

log() { echo "mariadb.sh: $*" >&2; }

ensure_installed() {
  if command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; then
    return
  fi
  log "mariadbd not found; installing mariadb-server with apt-get"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mariadb-server >/dev/null
}

mariadbd_bin() { command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd; }

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
  local dir=$1 port
  mkdir -p "$dir"
  mariadb-install-db --no-defaults --datadir="$dir/data" --user="$(id -un)" \
    --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 || {
    log "mariadb-install-db failed:"; cat "$dir/install.log" >&2; return 1; }
  for _ in $(seq 1 20); do
    port=$(random_port)
    port_free "$port" || continue
    "$(mariadbd_bin)" --no-defaults --datadir="$dir/data" --socket="$dir/sock" \
      --port="$port" --bind-address=127.0.0.1 --user="$(id -un)" \
      --pid-file="$dir/pid" --log-error="$dir/err.log" \
      --max-connections=1000 --innodb-buffer-pool-size=512M \
      --innodb-flush-log-at-trx-commit="${REFLEX_DB_FLUSH:-2}" \
      --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
      ${REFLEX_DB_ARGS:-} >/dev/null 2>&1 &
    echo $! >"$dir/mariadbd.pid"
    for _ in $(seq 1 150); do
      # Through the socket, bounded: never a TCP connection to a port
      # nothing listens on yet.
      if timeout 10 mariadb-admin --no-defaults --socket="$dir/sock" --connect-timeout=2 -uroot ping >/dev/null 2>&1; then
        echo "$port" >"$dir/port"
        echo "$port"
        return 0
      fi
      kill -0 "$(cat "$dir/mariadbd.pid")" 2>/dev/null || break
      sleep 0.1
    done
    log "server on port $port did not start; retrying"; tail -5 "$dir/err.log" >&2 || true
    stop "$dir"
  done
  log "could not start mariadbd"; return 1
}

stop() {
  local dir=$1 pid
  [ -f "$dir/mariadbd.pid" ] || return 0
  pid=$(cat "$dir/mariadbd.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/mariadbd.pid"
}

cmd=${1:-}
shift || true
case "$cmd" in
  run)
    if [ -n "${DB_TEST_URI:-}" ]; then exec "$@"; fi
    ensure_installed
    dir=$(mktemp -d /tmp/reflex-mariadb.XXXXXX)
    trap 'stop "$dir"; rm -rf "$dir"' EXIT
    port=$(start "$dir")
    export DB_TEST_URI="root@tcp(127.0.0.1:$port)/"
    log "MariaDB $(mariadb --no-defaults -h127.0.0.1 -P"$port" -uroot -N -e 'select version()') on 127.0.0.1:$port"
    "$@"
    ;;
  up)
    ensure_installed
    dir=${REFLEX_DB_DIR:-/tmp/reflex-mariadb}
    if [ -f "$dir/port" ] && [ -f "$dir/mariadbd.pid" ] && kill -0 "$(cat "$dir/mariadbd.pid")" 2>/dev/null; then
      port=$(cat "$dir/port")
    else
      rm -rf "$dir"; port=$(start "$dir")
    fi
    echo "export DB_TEST_URI='root@tcp(127.0.0.1:$port)/'"
    ;;
  down)
    dir=${REFLEX_DB_DIR:-/tmp/reflex-mariadb}
    stop "$dir"; rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 run CMD... | up | down" >&2; exit 2 ;;
esac
