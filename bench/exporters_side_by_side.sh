#!/usr/bin/env bash
# Scrape latency (p50/p99) and CPU per scrape: Lookout's exporters vs the real
# redis_exporter / postgres_exporter, same servers, same run. Reports ratios.
#
#   bench/exporters_side_by_side.sh [N]     (N scrapes per exporter, default 300)
#
# Servers: REDIS_ADDR (host:port) and PG_DSN, or the defaults scripts/db-servers.sh starts.
# LOOKOUT_BIN defaults to target/release/lookout (built with `cargo build --release -p lookout`).
set -euo pipefail
N="${1:-300}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LOOKOUT_BIN="${LOOKOUT_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/lookout}"
REDIS_ADDR="${REDIS_ADDR:-127.0.0.1:6379}"
PG_DSN="${PG_DSN:-postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
[ -x "$LOOKOUT_BIN" ] || { echo "build first: cargo build --release -p lookout ($LOOKOUT_BIN missing)"; exit 1; }
for b in prometheus-redis-exporter prometheus-postgres-exporter curl python3; do
  command -v "$b" >/dev/null || { echo "missing $b"; exit 1; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_http() { for _ in $(seq 200); do curl -fs "http://127.0.0.1:$1/metrics" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "no answer on $1"; exit 1; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# measure NAME PID PORT -> prints "p50_ms p99_ms cpu_ms_per_scrape"
measure() {
  local pid=$2 port=$3 t0 t1
  for _ in $(seq 5); do curl -fs -o /dev/null "http://127.0.0.1:$port/metrics"; done
  t0=$(cpu_ticks "$pid")
  for _ in $(seq "$N"); do
    curl -fs -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port/metrics"
  done > "$TMP/$1.lat"
  t1=$(cpu_ticks "$pid")
  python3 - "$TMP/$1.lat" "$((t1 - t0))" "$N" "$(getconf CLK_TCK)" <<'PY'
import sys
xs = sorted(float(l) * 1000 for l in open(sys.argv[1]) if l.strip())
ticks, n, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]
print(f"{q(0.50):.3f} {q(0.99):.3f} {ticks * 1000.0 / hz / n:.3f}")
PY
}

TMP=$(mktemp -d)
run_pair() {
  local kind=$1 rp op
  rp=$(free_port); op=$(free_port)
  if [ "$kind" = redis ]; then
    prometheus-redis-exporter -redis.addr "redis://$REDIS_ADDR" -web.listen-address "127.0.0.1:$rp" >/dev/null 2>&1 & PIDS+=($!); local rpid=$!
    LOOKOUT_LOG=warn "$LOOKOUT_BIN" exporter redis --addr "127.0.0.1:$op" --redis-addr "redis://$REDIS_ADDR" >/dev/null 2>&1 & PIDS+=($!); local opid=$!
  else
    DATA_SOURCE_NAME="$PG_DSN" prometheus-postgres-exporter --web.listen-address="127.0.0.1:$rp" >/dev/null 2>&1 & PIDS+=($!); local rpid=$!
    DATA_SOURCE_NAME="$PG_DSN" LOOKOUT_LOG=warn "$LOOKOUT_BIN" exporter postgres --addr "127.0.0.1:$op" >/dev/null 2>&1 & PIDS+=($!); local opid=$!
  fi
  wait_http "$rp"; wait_http "$op"
  read -r r50 r99 rcpu < <(measure "real-$kind" "$rpid" "$rp")
  read -r o50 o99 ocpu < <(measure "lookout-$kind" "$opid" "$op")
  python3 - "$kind" "$N" "$r50" "$r99" "$rcpu" "$o50" "$o99" "$ocpu" <<'PY'
import sys
k, n = sys.argv[1], sys.argv[2]
r50, r99, rcpu, o50, o99, ocpu = map(float, sys.argv[3:])
ratio = lambda a, b: f"{a / b:.2f}x" if b > 0 else "n/a"
print(f"{k:8} real     p50 {r50:7.3f} ms  p99 {r99:7.3f} ms  cpu {rcpu:6.3f} ms/scrape  ({n} scrapes)")
print(f"{k:8} lookout  p50 {o50:7.3f} ms  p99 {o99:7.3f} ms  cpu {ocpu:6.3f} ms/scrape")
print(f"{k:8} lookout/real: p50 {ratio(o50, r50)}  p99 {ratio(o99, r99)}  cpu {ratio(ocpu, rcpu)}")
PY
}
run_pair redis
run_pair postgres
rm -rf "$TMP"
