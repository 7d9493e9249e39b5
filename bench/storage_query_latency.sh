#!/usr/bin/env bash
# Dashboard-query latency, Lookout vs VictoriaMetrics on the same imported data: the seed's
# three queries as range queries over 24 h at a 1-minute step, through each HTTP API.
# Usage: bench/storage_query_latency.sh [--compare OLD_LOOKOUT] [SERIES=1000] [HOURS=24] [REPS=15]
# Needs python3, curl; as root installs victoria-metrics with apt. LOOKOUT=path skips the
# release build. Everything listens on 127.0.0.1; all servers are stopped by PID on exit.
# --compare also serves a copy of the same data with OLD_LOOKOUT (e.g. a build of the previous
# commit), fails unless both answer a set of range and instant queries with byte-identical
# JSON, and times old, new and VictoriaMetrics interleaved.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=
if [ "${1:-}" = --compare ]; then
  OLD=$(realpath "$2")
  shift 2
fi
SERIES=${1:-1000}
HOURS=${2:-24}
REPS=${3:-15}
LK_PORT=${LK_PORT:-19490}
VM_PORT=${VM_PORT:-19428}
OLD_PORT=${OLD_PORT:-19491}
# QL_WORK=dir keeps the generated data there for the next run (the servers' copies are
# made fresh each time).
W=${QL_WORK:-$(mktemp -d)}
mkdir -p "$W"
cleanup() {
  for p in "${LK_PID:-}" "${VM_PID:-}" "${OLD_PID:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${LK_PID:-}" "${VM_PID:-}" "${OLD_PID:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  if [ -n "${QL_WORK:-}" ]; then rm -rf "$W/lookout" "$W/lookout-old" "$W/vm"; else rm -rf "$W"; fi
}
trap cleanup EXIT
for port in "$LK_PORT" "$VM_PORT" ${OLD:+"$OLD_PORT"}; do
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
if [ ! -s "$W/data.om" ] || [ "$(cat "$W/data.args" 2>/dev/null)" != "$SERIES $HOURS" ]; then
  OM_SERVICE_LABEL=job OM_STATUSES=200,200,200,404,500,503 \
    python3 bench/storage_gen_openmetrics.py "$W/data.om" "$SERIES" "$HOURS" 15
  echo "$SERIES $HOURS" > "$W/data.args"
fi
rm -rf "$W/lookout" "$W/lookout-old" "$W/vm"
START=1700000000
END=$((START + HOURS * 3600))

# `serve` keeps metrics under <data-dir>/metrics.
"$LOOKOUT" tsdb import openmetrics "$W/data.om" "$W/lookout/metrics" >/dev/null
printf 'global:\n  scrape_interval: 15s\nscrape_configs: []\n' > "$W/prometheus.yml"
# The old binary imports its own copy: it may not read blocks in a newer format.
[ -n "$OLD" ] && "$OLD" tsdb import openmetrics "$W/data.om" "$W/lookout-old/metrics" >/dev/null
"$LOOKOUT" serve --config "$W/prometheus.yml" --data-dir "$W/lookout" \
  --prom-addr "127.0.0.1:$LK_PORT" --ui-addr off --loki-addr off --retention 100000d \
  >"$W/lookout.log" 2>&1 &
LK_PID=$!
if [ -n "$OLD" ]; then
  "$OLD" serve --config "$W/prometheus.yml" --data-dir "$W/lookout-old" \
    --prom-addr "127.0.0.1:$OLD_PORT" --ui-addr off --loki-addr off --retention 100000d \
    >"$W/lookout-old.log" 2>&1 &
  OLD_PID=$!
fi

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
# `serve` compacts the imported 6 h blocks further in the background: time queries only once
# the block count has stayed the same for three polls (at most 2 minutes).
blocks() { curl -sf "http://127.0.0.1:$1/metrics" | awk '$1=="lookout_tsdb_blocks_loaded"{print $2}'; }
settle() { # port
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/-/ready" >/dev/null && break; sleep 0.2; done
  local prev cur same=0
  prev=$(blocks "$1")
  for _ in $(seq 60); do
    sleep 2; cur=$(blocks "$1")
    if [ "$cur" = "$prev" ]; then same=$((same + 1)); [ "$same" -ge 3 ] && break; else same=0; prev=$cur; fi
  done
}
settle "$LK_PORT"
[ -n "$OLD" ] && settle "$OLD_PORT"

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
OLDU="http://127.0.0.1:$OLD_PORT"
if [ -n "$OLD" ]; then
  # Byte-for-byte JSON of old and new: the three queries and others covering increase/avg,
  # *_over_time (decimal values, kept metric name), count, offset, @, odd steps, instant.
  mid=$(((START + END) / 2))
  cmp_n=0
  while IFS='|' read -r kind q qstep qtime; do
    [ -z "$q" ] && continue
    if [ "$kind" = range ]; then
      args=(--get --data-urlencode "query=$q" --data-urlencode "start=$START" --data-urlencode "end=$END" --data-urlencode "step=$qstep")
      path=query_range
    else
      args=(--get --data-urlencode "query=$q" --data-urlencode "time=$qtime")
      path=query
    fi
    curl -sf "${args[@]}" "$LK/api/v1/$path" > "$W/new.json"
    curl -sf "${args[@]}" "$OLDU/api/v1/$path" > "$W/old.json"
    grep -q '"status":"success"' "$W/new.json" || { echo "query failed on new: $q" >&2; exit 1; }
    if ! cmp -s "$W/new.json" "$W/old.json"; then
      echo "DIFFERENT JSON old vs new for $kind $q" >&2; exit 1
    fi
    cmp_n=$((cmp_n + 1))
  done <<EOF_Q
range|$Q1|60|
range|$Q2|60|
range|$Q3|60|
range|avg(increase(http_requests_total[17m])) by (path)|60|
range|max_over_time(process_resident_memory_bytes[10m])|60|
range|count(http_requests_total) by (status)|60|
range|sum(rate(http_requests_total[5m] offset 1h)) by (job)|60|
range|irate(http_requests_total{job="user"}[2m])|37|
range|sum_over_time(http_request_duration_seconds_sum[7m])|300|
range|last_over_time(process_resident_memory_bytes{job="chat"}[1m])|90|
range|rate(http_requests_total{path="/api/a"}[5m] @ $mid)|600|
range|sum by (job) (increase(http_request_duration_seconds_count[1h]))|3600|
instant|sum(rate(http_requests_total[5m])) by (job, status)||$mid
instant|histogram_quantile(0.9, sum(rate(http_request_duration_seconds_bucket[10m])) by (le))||$END
instant|http_requests_total{job="auth",path="/api/b"}[2m]||$END
EOF_Q
  echo "old vs new: $cmp_n queries, byte-identical JSON"
fi
echo "data: $SERIES series x ${HOURS}h at 15s; range ${HOURS}h, step 60s; median of $REPS runs (ms), interleaved"
printf '%-4s %10s %10s %8s  %s\n' query lookout_ms vm_ms ratio 'series/points (lookout | vm)'
i=0
for q in "$Q1" "$Q2" "$Q3"; do
  i=$((i + 1))
  run "$LK" "$q" >/dev/null; run "$VM" "$q" >/dev/null # warm-up
  [ -n "$OLD" ] && run "$OLDU" "$q" >/dev/null
  : > "$W/lk.t"; : > "$W/vm.t"; : > "$W/old.t"
  # Old and new take turns at running first: the one right after VictoriaMetrics can meet
  # its background work (under load that cost the first one up to ~20 %).
  for k in $(seq "$REPS"); do
    if [ -n "$OLD" ] && [ $((k % 2)) = 0 ]; then
      run "$OLDU" "$q" >> "$W/old.t"
      run "$LK" "$q" >> "$W/lk.t"
    else
      run "$LK" "$q" >> "$W/lk.t"
      [ -n "$OLD" ] && run "$OLDU" "$q" >> "$W/old.t"
    fi
    run "$VM" "$q" >> "$W/vm.t"
  done
  lk=$(median < "$W/lk.t"); vm=$(median < "$W/vm.t")
  printf 'Q%-3s %10s %10s %8.2f  %s | %s\n' "$i" "$lk" "$vm" "$(echo "$lk $vm" | awk '{print $1/$2}')" \
    "$(series_points "$LK" "$q")" "$(series_points "$VM" "$q")"
  if [ -n "$OLD" ]; then
    old=$(median < "$W/old.t")
    printf '  old %10s %10s %8.2f  (new/old %.2f)\n' "$old" "$vm" "$(echo "$old $vm" | awk '{print $1/$2}')" \
      "$(echo "$lk $old" | awk '{print $1/$2}')"
  fi
done
