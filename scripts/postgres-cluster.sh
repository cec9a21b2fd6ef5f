#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for the tests: initdb and pg_ctl in DIR, as the
# unprivileged user nobody when run as root (initdb refuses root), listening on
# 127.0.0.1 on a free port with its socket in DIR, password (SCRAM) authentication
# for the superuser pbtest, fsync off (the data is thrown away).
# Usage: scripts/postgres-cluster.sh start DIR   prints the admin URL (with its password)
#        scripts/postgres-cluster.sh stop DIR    stops the server by its PID, removes DIR
set -euo pipefail
bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
cmd=${1:?start or stop}
dir=${2:?a folder}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  mkdir -p "$dir"
  chmod 700 "$dir"
  [ "$(id -u)" -ne 0 ] || chown nobody "$dir"
  password=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  (umask 077 && printf '%s\n' "$password" >"$dir/password")
  [ "$(id -u)" -ne 0 ] || chown nobody "$dir/password"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_owner "$bin/initdb" -D "$dir/data" -U pbtest --pwfile="$dir/password" \
    --auth=scram-sha-256 -E UTF8 --no-locale -N >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=500" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  head -1 "$dir/data/postmaster.pid" >"$dir/pid"
  echo "postgres://pbtest:$password@127.0.0.1:$port/postgres"
  ;;
stop)
  if [ -f "$dir/pid" ]; then
    pid=$(cat "$dir/pid")
    # Fast shutdown: sessions are ended, nothing is kept.
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  rm -rf "$dir"
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2
  exit 2
  ;;
esac
