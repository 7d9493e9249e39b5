#!/usr/bin/env bash
# Scrape latency (p50/p99) and CPU per scrape: Lookout's exporters vs the real
# redis_exporter / postgres_exporter, same servers, same run. Reports ratios.
#
#   bench/exporters_side_by_side.sh [N]     (N scrapes per exporter, default 300)
#   ONLY=postgres bench/exporters_side_by_side.sh 200    (one pair only)
#
# Servers: REDIS_ADDR (host:port) and PG_DSN, or the defaults scripts/db-servers.sh starts.
# LOOKOUT_BIN defaults to target/release/lookout (built with `cargo build --release -p lookout`).
set -euo pipefail
N="${1:-300}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LOOKOUT_BIN="${LOOKOUT_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/lookout}"
REDIS_ADDR="${REDIS_ADDR:-127.0.0.1:6379}"
PG_DSN="${PG_DSN:-postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
QUERIES="${QUERIES:-/usr/share/doc/prometheus-postgres-exporter/examples/queries.yaml}"
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

# measure_pair KIND REAL_PID REAL_PORT OUR_PID OUR_PORT -> "r50 r99 rcpu o50 o99 ocpu"
# (ms; CPU of the exporter process per scrape). Scrapes alternate between the two exporters,
# first one then the other, so load from other processes hits both alike.
measure_pair() {
  local kind=$1 rpid=$2 rp=$3 opid=$4 op=$5 r0 r1 o0 o1 i
  local real="http://127.0.0.1:$rp/metrics" ours="http://127.0.0.1:$op/metrics"
  for _ in $(seq 5); do curl -fs -o /dev/null "$real"; curl -fs -o /dev/null "$ours"; done
  : > "$TMP/$kind.real"; : > "$TMP/$kind.ours"
  r0=$(cpu_ticks "$rpid"); o0=$(cpu_ticks "$opid")
  for i in $(seq "$N"); do
    if (( i % 2 )); then
      curl -fs -o /dev/null -w '%{time_total}\n' "$real" >> "$TMP/$kind.real"
      curl -fs -o /dev/null -w '%{time_total}\n' "$ours" >> "$TMP/$kind.ours"
    else
      curl -fs -o /dev/null -w '%{time_total}\n' "$ours" >> "$TMP/$kind.ours"
      curl -fs -o /dev/null -w '%{time_total}\n' "$real" >> "$TMP/$kind.real"
    fi
  done
  r1=$(cpu_ticks "$rpid"); o1=$(cpu_ticks "$opid")
  python3 - "$TMP/$kind.real" "$TMP/$kind.ours" "$((r1 - r0))" "$((o1 - o0))" "$N" "$(getconf CLK_TCK)" <<'PY'
import sys
def q(path):
    xs = sorted(float(l) * 1000 for l in open(path) if l.strip())
    at = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]
    return at(0.50), at(0.99)
n, hz = int(sys.argv[5]), int(sys.argv[6])
r50, r99 = q(sys.argv[1])
o50, o99 = q(sys.argv[2])
rcpu = int(sys.argv[3]) * 1000.0 / hz / n
ocpu = int(sys.argv[4]) * 1000.0 / hz / n
print(f"{r50:.3f} {r99:.3f} {rcpu:.3f} {o50:.3f} {o99:.3f} {ocpu:.3f}")
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
    # The example queries.yaml gives the real exporter the families Lookout prints on its own
    # (pg_stat_user_tables_*, pg_replication_lag, pg_postmaster_start_time_seconds), so both
    # do the same work.
    local extend=()
    if [ -f "$QUERIES" ]; then
      # Only the three query groups Lookout implements (not statio, pg_stat_statements, ...).
      awk '/^[a-z_]+:/ { keep = ($1 == "pg_replication:" || $1 == "pg_postmaster:" || $1 == "pg_stat_user_tables:") } keep' \
        "$QUERIES" > "$TMP/queries.yaml"
      extend=("--extend.query-path=$TMP/queries.yaml")
    fi
    DATA_SOURCE_NAME="$PG_DSN" prometheus-postgres-exporter --web.listen-address="127.0.0.1:$rp" "${extend[@]}" >/dev/null 2>&1 & PIDS+=($!); local rpid=$!
    DATA_SOURCE_NAME="$PG_DSN" LOOKOUT_LOG=warn "$LOOKOUT_BIN" exporter postgres --addr "127.0.0.1:$op" >/dev/null 2>&1 & PIDS+=($!); local opid=$!
  fi
  wait_http "$rp"; wait_http "$op"
  read -r r50 r99 rcpu o50 o99 ocpu < <(measure_pair "$kind" "$rpid" "$rp" "$opid" "$op")
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
case "${ONLY:-all}" in
  redis) run_pair redis ;;
  postgres) run_pair postgres ;;
  *) run_pair redis; run_pair postgres ;;
esac
rm -rf "$TMP"
