#!/usr/bin/env bash
# Log agent throughput: tail + docker stage + json stage + push to a local Lookout
# (`lookout serve` with its Loki API), on demo-style Docker json-file logs.
# Reports lines/s, MB/s, and MB per CPU-second (per core) of the agent, its peak RSS, the
# server's CPU, and the floor `cat FILES | wc -l` over the same files in the same run.
#
#   bench/agent_throughput.sh [--mb N] [--files N] [--no-build] [--keep]
#
# Everything binds to 127.0.0.1; processes started here are stopped by PID on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MB=400
FILES=7
BUILD=1
KEEP=0
LOKI_PORT=${LOKI_PORT:-13100}
AGENT_PORT=${AGENT_PORT:-13180}
while [ $# -gt 0 ]; do
  case "$1" in
    --mb) MB="$2"; shift 2 ;;
    --files) FILES="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-bench}"
BIN="$CARGO_TARGET_DIR/release/lookout"
if [ "$BUILD" = 1 ]; then
  (cd "$ROOT" && cargo build --release -p lookout)
fi
[ -x "$BIN" ] || { echo "no $BIN (build with cargo build --release -p lookout)" >&2; exit 1; }

WORK="${WORK_DIR:-$(mktemp -d /tmp/agent-bench.XXXXXX)}"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT

for port in "$LOKI_PORT" "$AGENT_PORT"; do
  if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is taken" >&2; exit 1
  fi
done

echo "generating ~${MB} MB of demo-style json-file logs in $FILES containers under $WORK/data/containers"
python3 - "$WORK/data/containers" "$MB" "$FILES" <<'PY'
import datetime, json, os, random, sys, time
root, mb, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# Timestamps over the last 30 minutes, so the store accepts them (not too old, not future).
base = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=30)
def stamp(i):
    t = base + datetime.timedelta(microseconds=i)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "%03dZ" % (i % 1000)
services = ["user-service", "auth-service", "board-service", "chat-service", "noti-service",
            "storage-service", "video-service"]
rng = random.Random(1)
per_file = mb * 1_000_000 // files
paths = ["/api/users/{}", "/api/boards/{}/items", "/api/chat/rooms/{}", "/api/auth/login", "/health"]
for f in range(files):
    svc = services[f % len(services)] + ("" if f < len(services) else f"-{f}")
    cid = f"{f:02d}" * 32
    d = os.path.join(root, cid)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.v2.json"), "w") as c:
        json.dump({"ID": cid, "Name": f"/wealist-{svc}", "Config": {"Image": f"wealist/{svc}:demo",
                   "Labels": {"com.docker.compose.project": "wealist", "com.docker.compose.service": svc}}}, c)
    out, size, i = [], 0, 0
    with open(os.path.join(d, f"{cid}-json.log"), "w") as w:
        while size < per_file:
            level = "error" if rng.random() < 0.05 else ("warn" if rng.random() < 0.1 else "info")
            inner = json.dumps({"ts": stamp(i)[:23] + "Z", "level": level,
                                "service": svc, "msg": "request completed", "method": rng.choice(["GET", "POST"]),
                                "path": rng.choice(paths).format(rng.randrange(10000)), "status": rng.choice([200, 200, 200, 201, 404, 500]),
                                "duration_ms": rng.randrange(1, 900), "trace_id": "%032x" % rng.getrandbits(128)},
                               separators=(",", ":"))
            line = json.dumps({"log": inner + "\n", "stream": "stdout",
                               "time": stamp(i)}, separators=(",", ":")) + "\n"
            out.append(line); size += len(line); i += 1
            if len(out) >= 10000:
                w.write("".join(out)); out = []
        w.write("".join(out))
PY
LOGS=("$WORK"/data/containers/*/*-json.log)
BYTES=$(cat "${LOGS[@]}" | wc -c)

# Floor: read every byte and count lines.
t0=$(date +%s.%N)
LINES=$(cat "${LOGS[@]}" | wc -l)
t1=$(date +%s.%N)
CAT_S=$(echo "$t1 - $t0" | bc -l)

mkdir -p "$WORK/serve"
# The per-tenant ingestion rate limit is lifted: this measures the agent, not the limiter.
"$BIN" serve --data-dir "$WORK/serve" --prom-addr off --ui-addr off \
  --log-ingestion-rate-mb 100000 --log-ingestion-burst-mb 100000 \
  --loki-addr "127.0.0.1:$LOKI_PORT" >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
PIDS+=("$SERVE_PID")
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$LOKI_PORT/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$LOKI_PORT/ready" >/dev/null || { echo "lookout serve did not start" >&2; cat "$WORK/serve.log" >&2; exit 1; }

cat >"$WORK/promtail.yml" <<EOF
server:
  http_listen_port: $AGENT_PORT
positions:
  filename: $WORK/positions.yaml
clients:
  - url: http://127.0.0.1:$LOKI_PORT/loki/api/v1/push
    batchsize: 1048576
    batchwait: 1s
scrape_configs:
  - job_name: docker
    static_configs:
      - labels:
          __path__: $WORK/data/containers/*/*-json.log
    relabel_configs:
      - source_labels: ['__meta_docker_container_label_com_docker_compose_service']
        target_label: compose_service
    pipeline_stages:
      - docker: {}
      - json:
          expressions:
            level:
      - labels:
          level:
EOF

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
SERVE_T0=$(cpu_ticks "$SERVE_PID")
t0=$(date +%s.%N)
${AGENT_WRAP:-} "$BIN" agent --config "$WORK/promtail.yml" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
sent=0
while :; do
  sleep 0.2
  kill -0 "$AGENT_PID" 2>/dev/null || { echo "agent died" >&2; cat "$WORK/agent.log" >&2; exit 1; }
  m=$(curl -sf "http://127.0.0.1:$AGENT_PORT/metrics" || true)
  sent=$(echo "$m" | awk '/^promtail_sent_entries_total/ {s += $2} END {print s + 0}')
  dropped=$(echo "$m" | awk '/^promtail_dropped_entries_total/ {s += $2} END {print s + 0}')
  [ "$((sent + dropped))" -ge "$LINES" ] && break
done
t1=$(date +%s.%N)
WALL=$(echo "$t1 - $t0" | bc -l)
AGENT_CPU=$(echo "$(cpu_ticks "$AGENT_PID") / $TCK" | bc -l)
AGENT_RSS=$(awk '/VmHWM/ {print $2}' "/proc/$AGENT_PID/status")
SERVE_CPU=$(echo "($(cpu_ticks "$SERVE_PID") - $SERVE_T0) / $TCK" | bc -l)
SERVE_RSS=$(awk '/VmHWM/ {print $2}' "/proc/$SERVE_PID/status")
# Where the wall clock goes: CPU per agent thread (the job's reader thread `agent-<job>` vs the
# tokio workers that batch, encode and push), and how long the reader waited on full client
# queues (delivery-bound) versus the run.
THREADS=$(for t in /proc/"$AGENT_PID"/task/*; do
  awk -v tck="$TCK" '{ c = $0; sub(/^[0-9]+ \(/, "", c); name = substr(c, 1, index(c, ")") - 1);
    split(substr(c, index(c, ")") + 2), f, " "); printf "%s %.2f\n", name, (f[12] + f[13]) / tck }' "$t/stat"
done | awk '{ a[$1] += $2 } END { for (k in a) printf "%s %.2fs  ", k, a[k] }')
# Run-queue wait (runnable, but no CPU free) per thread, from /proc/PID/task/TID/schedstat.
RUNQ=$(for t in /proc/"$AGENT_PID"/task/*; do
  printf '%s %s\n' "$(cat "$t/comm")" "$(cut -d' ' -f2 "$t/schedstat")"
done | awk '{ a[$1] += $2 / 1e9 } END { for (k in a) printf "%s %.2fs  ", k, a[k] }')
BLOCKED=$(echo "$m" | awk '/^lookout_agent_reader_blocked_seconds_total/ {s += $2} END {printf "%.2f", s + 0}')
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
kill -TERM "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null || true

# Check the store has the lines.
STORED=$(curl -sfG "http://127.0.0.1:$LOKI_PORT/loki/api/v1/query" \
  --data-urlencode 'query=sum(count_over_time({compose_service=~".+"}[1d]))' \
  --data-urlencode "time=$(date +%s)" | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)' || echo "?")

MIB=$(echo "$BYTES / 1048576" | bc -l)
printf '\n%-34s %s\n' "input" "$LINES lines, $(printf %.1f "$MIB") MiB in ${#LOGS[@]} files"
printf '%-34s %s\n' "agent lines sent / dropped" "$sent / $dropped (store counts $STORED over 1d)"
printf '%-34s %8.2f s  %10.0f lines/s  %8.1f MiB/s\n' "agent wall" "$WALL" "$(echo "$LINES / $WALL" | bc -l)" "$(echo "$MIB / $WALL" | bc -l)"
printf '%-34s %8.2f s  %10.0f lines/s  %8.1f MiB/s per core\n' "agent CPU (user+sys)" "$AGENT_CPU" "$(echo "$LINES / $AGENT_CPU" | bc -l)" "$(echo "$MIB / $AGENT_CPU" | bc -l)"
printf '%-34s %s\n' "agent CPU by thread" "$THREADS"
printf '%-34s %s\n' "agent waiting for a CPU, by thread" "$RUNQ"
printf '%-34s %8.2f s of %.2f s wall\n' "reader blocked on delivery" "$BLOCKED" "$WALL"
printf '%-34s %s\n' "load average (1/5/15 min)" "$LOAD"
printf '%-34s %8.1f MiB\n' "agent peak RSS" "$(echo "$AGENT_RSS / 1024" | bc -l)"
printf '%-34s %8.2f s  (peak RSS %.1f MiB)\n' "lookout serve CPU while ingesting" "$SERVE_CPU" "$(echo "$SERVE_RSS / 1024" | bc -l)"
printf '%-34s %8.2f s  %10.0f lines/s  %8.1f MiB/s\n' "floor: cat | wc -l" "$CAT_S" "$(echo "$LINES / $CAT_S" | bc -l)" "$(echo "$MIB / $CAT_S" | bc -l)"
printf '%-34s %8.1fx\n' "agent wall / cat wall" "$(echo "$WALL / $CAT_S" | bc -l)"
printf '%-34s %s\n' "Vector file->TCP (published)" "~77 MiB/s"
if [ "$dropped" != 0 ]; then echo "entries were dropped: see $WORK/agent.log" >&2; KEEP=1; exit 1; fi
