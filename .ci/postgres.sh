#!/usr/bin/env bash
# Start a throw-away PostgreSQL server from Debian's packages on 127.0.0.1 and print its URL.
# Usage: eval "$(.ci/postgres.sh)"   (exports BASTION_TEST_POSTGRES_URL)
set -euo pipefail
PORT="${BASTION_PG_PORT:-55432}"
DATA="${BASTION_PG_DATA:-/tmp/bastion-pg-$PORT}"

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing PostgreSQL from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
BIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")"

run_as_postgres() {
  if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if ! run_as_postgres "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  if [ ! -s "$DATA/PG_VERSION" ]; then
    rm -rf "$DATA"
    mkdir -p "$DATA"
    [ "$(id -u)" = "0" ] && chown postgres "$DATA"
    run_as_postgres "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 >&2
  fi
  run_as_postgres "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
    -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >&2
fi
echo "export BASTION_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:$PORT/postgres"
