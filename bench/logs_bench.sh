#!/usr/bin/env bash
# Log store benchmark (issue 5): ingest through the Loki push API, bytes on disk against
# `zstd -3`, and search against `zstd -dc | grep -F`, all on the same generated JSON logs.
#   BENCH_MB=1024 bench/logs_bench.sh        (size of the generated raw file; default 1024)
#   BENCH_RUNS=3                             (query repetitions; the fastest run is reported)
# Writes into ${BENCH_DIR:-/tmp/lookout-logs-bench} and deletes it at the end unless
# BENCH_KEEP=1; never writes into the repository. Times are wall seconds and CPU seconds
# (user+sys) of the process doing the work: the machine may be shared, so compare CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${BENCH_MB:-1024}
DIR=${BENCH_DIR:-/tmp/lookout-logs-bench}
PORT=${BENCH_PORT:-31100}
RUNS=${BENCH_RUNS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-bench}
command -v zstd >/dev/null || apt-get install -y zstd >/dev/null
command -v bc >/dev/null || apt-get install -y bc >/dev/null
# BENCH_BIN=path/to/lookout skips the build.
BIN=${BENCH_BIN:-$CARGO_TARGET_DIR/release/lookout}
[ -n "${BENCH_BIN:-}" ] || cargo build --release -p lookout >/dev/null
RAW=$DIR/raw.jsonl
# With BENCH_KEEP=1 a previous run's raw file and .zst are reused (same data, faster re-runs).
[ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$DIR"
rm -rf "$DIR/data" "$DIR/serve.log" && mkdir -p "$DIR"
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$DIR"
}
trap cleanup EXIT

if [ ! -s "$RAW" ]; then
  echo "== generating ${MB} MB of JSON service logs" >&2
  python3 bench/logs_gen.py "$RAW.tmp" "$MB" && mv "$RAW.tmp" "$RAW"
fi
RAW_BYTES=$(stat -c %s "$RAW")
LINES=$(wc -l < "$RAW")
NEEDLE=$(sed -n "$((LINES / 2 + 7))p" "$RAW" | sed 's/.*"trace_id":"\([0-9a-f]*\)".*/\1/')
PHRASE="payment declined"
FIRST_NS=$(head -1 "$RAW" | python3 -c 'import sys,json,calendar,time;t=json.loads(sys.stdin.read())["ts"];print((calendar.timegm(time.strptime(t[:19],"%Y-%m-%dT%H:%M:%S"))*1000+int(t[20:23]))*1000000)')
LAST_NS=$(tail -1 "$RAW" | python3 -c 'import sys,json,calendar,time;t=json.loads(sys.stdin.read())["ts"];print((calendar.timegm(time.strptime(t[:19],"%Y-%m-%dT%H:%M:%S"))*1000+int(t[20:23]))*1000000)')

echo "== zstd -3 baseline" >&2
[ -s "$DIR/zstd.time" ] && [ -s "$RAW.zst" ] ||
  /usr/bin/time -f "%e %U %S" -o "$DIR/zstd.time" zstd -3 -q -f -T1 "$RAW" -o "$RAW.zst"
ZSTD_BYTES=$(stat -c %s "$RAW.zst")

serve() { # extra flags...
  "$BIN" serve --data-dir "$DIR/data" --prom-addr off --ui-addr off --loki-addr 127.0.0.1:$PORT \
    --log-ingestion-rate-mb 100000 --log-ingestion-burst-mb 100000 --log-out-of-order-window 24h \
    --log-max-query-length 30d "$@" >>"$DIR/serve.log" 2>&1 &
  PID=$!
  for _ in $(seq 600); do curl -sf http://127.0.0.1:$PORT/ready >/dev/null && return; sleep 0.1; done
  echo "server did not become ready" >&2; exit 1
}
cpu() { awk '{printf "%.2f", ($14+$15)/100}' /proc/$PID/stat; }
stop() { kill -TERM "$PID"; wait "$PID" || true; PID=; }

echo "== ingest through POST /loki/api/v1/push" >&2
serve
CPU0=$(cpu)
START=$(date +%s.%N)
python3 bench/logs_push.py "$RAW" "$PORT"
END=$(date +%s.%N)
CPU1=$(cpu)
RSS=$(awk '/VmHWM/{print $2}' /proc/$PID/status)
stop # flushes every head into chunks and trims the WAL
STORE=$DIR/data/logs/fake
CHUNKS=$(du -sb "$STORE/chunks" | cut -f1)
INDEX=$(stat -c %s "$STORE/index.log")
WAL=$(du -sb "$STORE/wal" | cut -f1)
DISK=$((CHUNKS + INDEX + WAL))

echo "== search" >&2
serve --log-max-series 5000
QRSS0=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
# $1 = endpoint, rest = curl --data-urlencode args; prints "wall cpu" of the fastest run.
q() {
  local ep=$1; shift
  local best=""
  for _ in $(seq "$RUNS"); do
    local c0 s w c
    c0=$(cpu); s=$(date +%s.%N)
    curl -sf --get "http://127.0.0.1:$PORT/loki/api/v1/$ep" "$@" >"$DIR/q.json"
    w=$(echo "$(date +%s.%N) - $s" | bc); c=$(echo "$(cpu) - $c0" | bc)
    if [ -z "$best" ] || [ "$(echo "$w < ${best% *}" | bc)" = 1 ]; then best="$w $c"; fi
  done
  echo "$best"
}
base() { # prints "wall cpu count" of the fastest run of zstd -dc | grep -cF
  local best="" n
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -f "%e %U %S" -o "$DIR/b.time" sh -c "zstd -dc '$RAW.zst' | grep -cF '$1' > '$DIR/b.count' || true"
    read -r w u s < "$DIR/b.time"; n=$(cat "$DIR/b.count")
    if [ -z "$best" ] || [ "$(echo "$w < ${best%% *}" | bc)" = 1 ]; then best="$w $(echo "$u + $s" | bc) $n"; fi
  done
  echo "$best"
}
val() { python3 -c "import json;r=json.load(open('$DIR/q.json'))['data']['result'];print(r[0]['value'][1] if r else 0)"; }
stat_of() { python3 -c "import json;s=json.load(open('$DIR/q.json'))['data']['stats'];c=s['querier']['store']['chunk'];print(s['querier']['store']['totalChunksRef'], s['querier']['store']['totalChunksDownloaded'], c['decompressedLines'])"; }
T=$(( (LAST_NS / 1000000000) + 1 ))
RANGE="$(( T - FIRST_NS / 1000000000 + 60 ))s"

read -r RARE_B RARE_BC RARE_GN <<<"$(base "$NEEDLE")"
read -r RARE_L RARE_LC <<<"$(q query --data-urlencode "query=sum(count_over_time({job=\"bench\"} |= \"$NEEDLE\" [$RANGE]))" --data-urlencode "time=$T")"
RARE_N=$(val); RARE_S=$(stat_of)
read -r COMMON_B COMMON_BC COMMON_GN <<<"$(base "$PHRASE")"
read -r COMMON_L COMMON_LC <<<"$(q query --data-urlencode "query=sum(count_over_time({job=\"bench\"} |= \"$PHRASE\" [$RANGE]))" --data-urlencode "time=$T")"
COMMON_N=$(val)
read -r LEVEL_L LEVEL_LC <<<"$(q query_range --data-urlencode 'query=sum by (level) (count_over_time({job="bench"} | json [5m]))' \
  --data-urlencode "start=$FIRST_NS" --data-urlencode "end=$LAST_NS" --data-urlencode step=300)"
LEVEL_N=$(python3 -c "import json;r=json.load(open('$DIR/q.json'))['data']['result'];print(len(r), 'series,', sum(len(s['values']) for s in r), 'points')")
QRSS=$(awk '/VmHWM/{print $2}' /proc/$PID/status)
stop

WALL=$(echo "$END - $START" | bc)
CPU=$(echo "$CPU1 - $CPU0" | bc)
read -r ZW ZU ZS < "$DIR/zstd.time"
r() { echo "scale=3; $1" | bc; }
cat <<REPORT
raw: $RAW_BYTES bytes, $LINES lines ($(r "$RAW_BYTES/$LINES") bytes/line)
ingest (JSON push, 5000 lines/request): wall ${WALL}s, server CPU ${CPU}s -> $(r "$RAW_BYTES/1048576/$CPU") MB/s and $(echo "scale=0; $LINES/$CPU" | bc) lines/s per CPU-second; $(r "$RAW_BYTES/1048576/$WALL") MB/s wall; peak RSS $((RSS/1024)) MB
disk after flush: chunks $CHUNKS + index $INDEX + WAL $WAL = $DISK bytes -> $(r "$DISK/$RAW_BYTES") bytes per raw byte ($(r "$RAW_BYTES/$DISK")x)
zstd -3: $ZSTD_BYTES bytes -> $(r "$ZSTD_BYTES/$RAW_BYTES") bytes per raw byte ($(r "$RAW_BYTES/$ZSTD_BYTES")x), ${ZW}s wall; lookout/zstd size $(r "$DISK/$ZSTD_BYTES")
rare token $NEEDLE (lookout $RARE_N, grep $RARE_GN; chunks ref/read/lines decoded: $RARE_S):
  lookout ${RARE_L}s wall ${RARE_LC}s CPU vs zstd -dc|grep -F ${RARE_B}s wall ${RARE_BC}s CPU -> wall $(r "$RARE_L/$RARE_B"), CPU $(r "$RARE_LC/$RARE_BC") of baseline
common phrase "$PHRASE" (lookout $COMMON_N, grep $COMMON_GN):
  lookout ${COMMON_L}s wall ${COMMON_LC}s CPU vs ${COMMON_B}s wall ${COMMON_BC}s CPU -> wall $(r "$COMMON_L/$COMMON_B"), CPU $(r "$COMMON_LC/$COMMON_BC") of baseline
sum by (level) (count_over_time({job="bench"} | json [5m])), step 5m over the whole range ($LEVEL_N):
  ${LEVEL_L}s wall ${LEVEL_LC}s CPU
query server: RSS after open $((QRSS0/1024)) MB, peak $((QRSS/1024)) MB
REPORT
