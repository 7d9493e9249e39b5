#!/usr/bin/env bash
# Dashboard-query latency, Lookout vs VictoriaMetrics on the same imported data: the seed's
# three queries as range queries over 24 h at a 1-minute step, through each HTTP API.
# Usage: bench/storage_query_latency.sh [SERIES=1000] [HOURS=24] [REPS=15]
# Needs python3, curl; as root installs victoria-metrics with apt. LOOKOUT=path skips the
# release build. Everything listens on 127.0.0.1; both servers are stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
SERIES=${1:-1000}
HOURS=${2:-24}
REPS=${3:-15}
LK_PORT=${LK_PORT:-19490}
VM_PORT=${VM_PORT:-19428}
W=$(mktemp -d)
cleanup() {
  for p in "${LK_PID:-}" "${VM_PID:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${LK_PID:-}" "${VM_PID:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
for port in "$LK_PORT" "$VM_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port is taken" >&2; exit 1; fi
done
if ! command -v victoria-metrics >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y victoria-metrics >/dev/null; else
    echo "SKIP: victoria-metrics missing"; exit 0; fi
fi
if [ -z "${LOOKOUT:-}" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-bench}
  cargo build -q --release -p lookout
  LOOKOUT=$CARGO_TARGET_DIR/release/lookout
fi

# Data: service label named `job` and some 5xx statuses, so all three queries have work.
OM_SERVICE_LABEL=job OM_STATUSES=200,200,200,404,500,503 \
  python3 bench/storage_gen_openmetrics.py "$W/data.om" "$SERIES" "$HOURS" 15
START=1700000000
END=$((START + HOURS * 3600))

# `serve` keeps metrics under <data-dir>/metrics.
"$LOOKOUT" tsdb import openmetrics "$W/data.om" "$W/lookout/metrics" >/dev/null
printf 'global:\n  scrape_interval: 15s\nscrape_configs: []\n' > "$W/prometheus.yml"
"$LOOKOUT" serve --config "$W/prometheus.yml" --data-dir "$W/lookout" \
  --prom-addr "127.0.0.1:$LK_PORT" --ui-addr off --loki-addr off --retention 100000d \
  >"$W/lookout.log" 2>&1 &
LK_PID=$!

grep -v '^#' "$W/data.om" | sed 's/ \([0-9]*\)$/ \1000/' > "$W/data.prom"
victoria-metrics -storageDataPath="$W/vm" -httpListenAddr="127.0.0.1:$VM_PORT" \
  -retentionPeriod=100y -search.latencyOffset=0s -search.disableCache \
  >"$W/vm.log" 2>&1 &
VM_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$VM_PORT/health" >/dev/null && break; sleep 0.2; done
curl -sf -X POST --data-binary @"$W/data.prom" "http://127.0.0.1:$VM_PORT/api/v1/import/prometheus"
sleep 2
curl -sf "http://127.0.0.1:$VM_PORT/internal/force_flush"
curl -sf "http://127.0.0.1:$VM_PORT/internal/force_merge"
sleep 10
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$LK_PORT/-/ready" >/dev/null && break; sleep 0.2; done
# `serve` compacts the imported 6 h blocks further in the background: time queries only once
# the block count has stayed the same for three polls (at most 2 minutes).
blocks() { curl -sf "http://127.0.0.1:$LK_PORT/metrics" | awk '$1=="lookout_tsdb_blocks_loaded"{print $2}'; }
prev=$(blocks); same=0
for _ in $(seq 60); do
  sleep 2; cur=$(blocks)
  if [ "$cur" = "$prev" ]; then same=$((same + 1)); [ "$same" -ge 3 ] && break; else same=0; prev=$cur; fi
done

Q1='sum(rate(http_requests_total[5m])) by (job)'
Q2='histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket[5m])) by (le, job))'
Q3='sum(rate(http_requests_total{status=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))'

# One timed range query; prints seconds, or fails when the answer is not a success.
run() { # base query
  local out t
  out=$(curl -s -w '\n%{time_total}' --get "$1/api/v1/query_range" \
    --data-urlencode "query=$2" --data-urlencode "start=$START" \
    --data-urlencode "end=$END" --data-urlencode "step=60" \
    --data-urlencode "nocache=1")
  t=${out##*$'\n'}
  case "${out%$'\n'*}" in *'"status":"success"'*) echo "$t" ;; *) echo "query failed on $1: ${out:0:300}" >&2; return 1 ;; esac
}
series_points() { # base query -> "series points"
  curl -s --get "$1/api/v1/query_range" --data-urlencode "query=$2" \
    --data-urlencode "start=$START" --data-urlencode "end=$END" --data-urlencode "step=60" \
    --data-urlencode "nocache=1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(len(r), sum(len(s["values"]) for s in r))'
}
median() { sort -g | awk '{a[NR]=$1} END{m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m*1000}'; }

LK="http://127.0.0.1:$LK_PORT"
VM="http://127.0.0.1:$VM_PORT"
echo "data: $SERIES series x ${HOURS}h at 15s; range ${HOURS}h, step 60s; median of $REPS runs (ms), interleaved"
printf '%-4s %10s %10s %8s  %s\n' query lookout_ms vm_ms ratio 'series/points (lookout | vm)'
i=0
for q in "$Q1" "$Q2" "$Q3"; do
  i=$((i + 1))
  run "$LK" "$q" >/dev/null; run "$VM" "$q" >/dev/null # warm-up
  : > "$W/lk.t"; : > "$W/vm.t"
  for _ in $(seq "$REPS"); do
    run "$LK" "$q" >> "$W/lk.t"
    run "$VM" "$q" >> "$W/vm.t"
  done
  lk=$(median < "$W/lk.t"); vm=$(median < "$W/vm.t")
  printf 'Q%-3s %10s %10s %8.2f  %s | %s\n' "$i" "$lk" "$vm" "$(echo "$lk $vm" | awk '{print $1/$2}')" \
    "$(series_points "$LK" "$q")" "$(series_points "$VM" "$q")"
done
