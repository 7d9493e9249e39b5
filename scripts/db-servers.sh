#!/usr/bin/env bash
# Start local Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432) when nothing listens
# there yet. Idempotent: a port already answering is left alone. Prints what it did and the
# env vars the exporter tests read (LOOKOUT_TEST_REDIS_ADDR, LOOKOUT_TEST_PG_DSN).
# Data lives under ${DB_SERVERS_DIR:-/tmp/lookout-db-servers}. `db-servers.sh stop` stops
# only what this script started (by the PIDs it recorded).
set -euo pipefail

DIR="${DB_SERVERS_DIR:-/tmp/lookout-db-servers}"
REDIS_PORT="${REDIS_PORT:-6379}"
PG_PORT="${PG_PORT:-5432}"
mkdir -p "$DIR"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

need() {
  if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "$1" ]; then
    echo "db-servers: installing $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  fi
}

stop() {
  for f in "$DIR/redis.pid" "$DIR/pg/data/postmaster.pid"; do
    [ -f "$f" ] || continue
    pid=$(head -n1 "$f")
    if kill -0 "$pid" 2>/dev/null; then
      echo "db-servers: stopping pid $pid ($f)"
      kill "$pid"
    fi
  done
}

if [ "${1:-start}" = "stop" ]; then
  stop
  exit 0
fi

if listening "$REDIS_PORT"; then
  echo "db-servers: redis already listening on 127.0.0.1:$REDIS_PORT (left alone)"
else
  need redis-server redis-server
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --dir "$DIR" \
    --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
  for _ in $(seq 100); do listening "$REDIS_PORT" && break; sleep 0.1; done
  echo "db-servers: started redis on 127.0.0.1:$REDIS_PORT (pid $(cat "$DIR/redis.pid"))"
fi

if listening "$PG_PORT"; then
  echo "db-servers: postgresql already listening on 127.0.0.1:$PG_PORT (left alone)"
else
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "db-servers: installing postgresql"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  RUN=()
  if [ "$(id -u)" = 0 ]; then RUN=(runuser -u postgres --); chown postgres "$DIR"; mkdir -p "$DIR/pg"; chown postgres "$DIR/pg"; fi
  mkdir -p "$DIR/pg" 2>/dev/null || true
  if [ ! -f "$DIR/pg/data/PG_VERSION" ]; then
    "${RUN[@]}" "$BIN/initdb" -D "$DIR/pg/data" -A trust -U postgres >/dev/null
    echo "db-servers: initialised a PostgreSQL cluster in $DIR/pg/data"
  fi
  "${RUN[@]}" "$BIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/log" -w \
    -o "-p $PG_PORT -k $DIR/pg -c listen_addresses=127.0.0.1" start >/dev/null
  echo "db-servers: started postgresql on 127.0.0.1:$PG_PORT ($DIR/pg/data)"
fi

echo "export LOOKOUT_TEST_REDIS_ADDR=127.0.0.1:$REDIS_PORT"
echo "export LOOKOUT_TEST_PG_DSN='postgresql://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable'"
