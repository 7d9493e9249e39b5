#!/usr/bin/env bash
# Log store benchmark (issue 5): ingest through the Loki push API, bytes on disk against
# `zstd -3`, and search against `zstd -dc | grep -F`, all on the same generated JSON logs.
#   BENCH_MB=1024 bench/logs_bench.sh        (size of the generated raw file; default 1024)
# Writes into ${BENCH_DIR:-/tmp/lookout-logs-bench}; never into the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${BENCH_MB:-1024}
DIR=${BENCH_DIR:-/tmp/lookout-logs-bench}
PORT=${BENCH_PORT:-31100}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-bench}
command -v zstd >/dev/null || apt-get install -y zstd >/dev/null
cargo build --release -p lookout >/dev/null
BIN=$CARGO_TARGET_DIR/release/lookout
rm -rf "$DIR" && mkdir -p "$DIR"
RAW=$DIR/raw.jsonl

echo "== generating ${MB} MB of JSON service logs"
python3 - "$RAW" "$MB" <<'PY'
import os, random, sys, time
path, mb = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
services = ["user-service","board-service","chat-service","noti-service","storage-service","video-service","auth-service"]
paths = ["/api/boards","/api/boards/{id}","/api/users/me","/api/chats/{id}/messages","/api/notifications","/api/files","/api/auth/login"]
msgs = ["request completed","request completed","request completed","cache miss","slow query","payment declined","upstream timeout"]
levels = ["info"]*14 + ["warn","error","debug"]
t = int(time.time()*1000) - 6*3600*1000
target = mb * 1024 * 1024
n = 0
with open(path, "w") as f:
    size = 0
    buf = []
    while size < target:
        t += rnd.randint(0, 3)
        ms = rnd.choice(msgs) if rnd.random() < 0.35 else "request completed"
        status = 500 if ms == "upstream timeout" else (402 if ms == "payment declined" else rnd.choice([200,200,200,201,204,404]))
        s = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1000)) + ".%03dZ" % (t % 1000)
        line = '{"ts":"%s","level":"%s","service":"%s","msg":"%s","method":"%s","path":"%s","status":%d,"latency_ms":%.1f,"trace_id":"%032x","user_id":"u%d"}\n' % (
            s, rnd.choice(levels), rnd.choice(services), ms, rnd.choice(["GET","GET","POST","PUT","DELETE"]),
            rnd.choice(paths).replace("{id}", str(rnd.randint(1, 5000))), status, rnd.expovariate(1/40), rnd.getrandbits(128), rnd.randint(1, 20000))
        buf.append(line); size += len(line); n += 1
        if len(buf) >= 10000:
            f.write("".join(buf)); buf = []
    f.write("".join(buf))
print(n)
PY
RAW_BYTES=$(stat -c %s "$RAW")
LINES=$(wc -l < "$RAW")
NEEDLE=$(sed -n "$((LINES / 2 + 7))p" "$RAW" | sed 's/.*"trace_id":"\([0-9a-f]*\)".*/\1/')
PHRASE="payment declined"

echo "== zstd -3 baseline"
/usr/bin/time -f "%e s" -o "$DIR/zstd.time" zstd -3 -q -T1 "$RAW" -o "$RAW.zst"
ZSTD_BYTES=$(stat -c %s "$RAW.zst")

echo "== ingest through POST /loki/api/v1/push"
"$BIN" serve --data-dir "$DIR/data" --prom-addr off --ui-addr off --loki-addr 127.0.0.1:$PORT \
  --log-ingestion-rate-mb 100000 --log-ingestion-burst-mb 100000 --log-out-of-order-window 24h \
  --log-max-query-length 30d >"$DIR/serve.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:$PORT/ready >/dev/null && break; sleep 0.1; done
cpu() { awk '{print ($14+$15)/100}' /proc/$PID/stat; }
CPU0=$(cpu)
START=$(date +%s.%N)
python3 - "$RAW" "$PORT" <<'PY'
import http.client, json, sys
raw, port = sys.argv[1], int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)
def push(streams):
    body = json.dumps({"streams": [{"stream": {"job": "bench", "service": s}, "values": v} for s, v in streams.items()]})
    conn.request("POST", "/loki/api/v1/push", body, {"Content-Type": "application/json"})
    r = conn.getresponse(); r.read()
    if r.status != 204: sys.exit(f"push: {r.status}")
streams, n = {}, 0
import calendar, time
with open(raw) as f:
    for line in f:
        line = line.rstrip("\n")
        i = line.index('"ts":"') + 6
        ts = line[i:i+24]
        ns = (calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) * 1000 + int(ts[20:23])) * 1_000_000
        j = line.index('"service":"') + 11
        svc = line[j:line.index('"', j)]
        streams.setdefault(svc, []).append([str(ns), line]); n += 1
        if n % 5000 == 0:
            push(streams); streams = {}
if streams: push(streams)
PY
END=$(date +%s.%N)
CPU1=$(cpu)
RSS=$(awk '/VmHWM/{print $2}' /proc/$PID/status)
kill -TERM $PID; wait $PID || true
CHUNKS=$(du -sb "$DIR/data/logs/fake/chunks" | cut -f1)
INDEX=$(stat -c %s "$DIR/data/logs/fake/index.log")

echo "== search"
"$BIN" serve --data-dir "$DIR/data" --prom-addr off --ui-addr off --loki-addr 127.0.0.1:$PORT \
  --log-max-query-length 30d --log-max-series 5000 >"$DIR/serve2.log" 2>&1 &
PID=$!
for _ in $(seq 300); do curl -sf http://127.0.0.1:$PORT/ready >/dev/null && break; sleep 0.1; done
q() { # $1 = LogQL metric query over the whole range
  local s; s=$(date +%s.%N)
  curl -sf --get http://127.0.0.1:$PORT/loki/api/v1/query --data-urlencode "query=$1" >"$DIR/q.json"
  echo "$(echo "$(date +%s.%N) - $s" | bc)"
}
base() { local s; s=$(date +%s.%N); zstd -dc "$RAW.zst" | grep -cF "$1" >/dev/null || true; echo "$(echo "$(date +%s.%N) - $s" | bc)"; }
RARE_L=$(q "sum(count_over_time({job=\"bench\"} |= \"$NEEDLE\" [7h]))")
RARE_N=$(python3 -c "import json;print(json.load(open('$DIR/q.json'))['data']['result'][0]['value'][1])")
RARE_B=$(base "$NEEDLE")
COMMON_L=$(q "sum(count_over_time({job=\"bench\"} |= \"$PHRASE\" [7h]))")
COMMON_N=$(python3 -c "import json;print(json.load(open('$DIR/q.json'))['data']['result'][0]['value'][1])")
COMMON_B=$(base "$PHRASE")
GREP_N=$(grep -cF "$PHRASE" "$RAW")
LEVEL_L=$(q "sum by (level) (count_over_time({job=\"bench\"} | json [7h]))")
kill -TERM $PID; wait $PID || true

WALL=$(echo "$END - $START" | bc)
CPU=$(echo "$CPU1 - $CPU0" | bc)
cat <<REPORT
raw: $RAW_BYTES bytes, $LINES lines
ingest: wall ${WALL}s, server CPU ${CPU}s -> $(echo "scale=1; $RAW_BYTES/1048576/$CPU" | bc) MB/s per core, $(echo "scale=0; $LINES/$CPU" | bc) lines/s per core; peak RSS $((RSS/1024)) MB
disk: chunks $CHUNKS + index $INDEX = $((CHUNKS+INDEX)) bytes -> ratio $(echo "scale=2; $RAW_BYTES/($CHUNKS+$INDEX)" | bc)x; zstd -3: $ZSTD_BYTES bytes -> $(echo "scale=2; $RAW_BYTES/$ZSTD_BYTES" | bc)x
rare token ($NEEDLE, found $RARE_N): lookout ${RARE_L}s vs zstd -dc|grep -F ${RARE_B}s -> $(echo "scale=3; $RARE_L/$RARE_B" | bc) of baseline
common phrase ("$PHRASE", lookout $COMMON_N, grep $GREP_N): lookout ${COMMON_L}s vs ${COMMON_B}s -> $(echo "scale=3; $COMMON_L/$COMMON_B" | bc) of baseline
sum by (level) (count_over_time(... | json [7h])): ${LEVEL_L}s
REPORT
