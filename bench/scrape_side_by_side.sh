#!/usr/bin/env bash
# Side-by-side scrape benchmark: Lookout, Prometheus and VictoriaMetrics scrape the same
# synthetic targets (lookout-targetsim) with the same config at the same time; at the end
# the script compares CPU seconds and peak RSS. See bench/README.md.
set -euo pipefail

TARGETS=20
SERIES=800
CHURN=8
DURATION=600
INTERVAL=5s
BASE_PORT=19100
LOOKOUT_PORT=19090
PROM_PORT=19091
VM_PORT=19428
SEED=1
KEEP=0
BUILD=1
INSTALL=1
WITH_LOOKOUT=1

usage() {
    cat <<EOF
usage: $0 [options]
  --targets N            synthetic targets (default $TARGETS)
  --series N             series per target (default $SERIES)
  --churn N              churning series per target (default $CHURN)
  --duration D           measured scrape window, e.g. 600, 10m, 90s (default ${DURATION}s)
  --interval D           scrape interval (default $INTERVAL)
  --base-port P          first target port (default $BASE_PORT)
  --lookout-port P       Lookout Prometheus API port (default $LOOKOUT_PORT)
  --prom-port P          Prometheus port (default $PROM_PORT)
  --vm-port P            VictoriaMetrics port (default $VM_PORT)
  --seed N               simulator seed (default $SEED)
  --no-build             use already-built release binaries
  --no-install           never apt-get install missing peers
  --without-lookout      compare the peers only (no ratios)
  --keep                 keep the work directory (configs, data, logs)
Env: CARGO_TARGET_DIR (default <repo>/target-bench), WORK_DIR (default mktemp -d).
EOF
}

to_secs() {
    case "$1" in
        *m) echo $(( ${1%m} * 60 )) ;;
        *s) echo "${1%s}" ;;
        *h) echo $(( ${1%h} * 3600 )) ;;
        *) echo "$1" ;;
    esac
}

while [ $# -gt 0 ]; do
    case "$1" in
        --targets) TARGETS=$2; shift 2 ;;
        --series) SERIES=$2; shift 2 ;;
        --churn) CHURN=$2; shift 2 ;;
        --duration) DURATION=$(to_secs "$2"); shift 2 ;;
        --interval) INTERVAL=$2; shift 2 ;;
        --base-port) BASE_PORT=$2; shift 2 ;;
        --lookout-port) LOOKOUT_PORT=$2; shift 2 ;;
        --prom-port) PROM_PORT=$2; shift 2 ;;
        --vm-port) VM_PORT=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-install) INSTALL=0; shift ;;
        --without-lookout) WITH_LOOKOUT=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done

for v in TARGETS SERIES CHURN DURATION BASE_PORT LOOKOUT_PORT PROM_PORT VM_PORT SEED; do
    if ! [[ ${!v} =~ ^[0-9]+$ ]]; then
        echo "--${v,,} must be a non-negative integer (got '${!v}')" >&2
        exit 2
    fi
done
if [ "$TARGETS" -lt 1 ]; then echo "--targets must be at least 1" >&2; exit 2; fi
INTERVAL_S=$(to_secs "$INTERVAL")

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target-bench}
WORK=${WORK_DIR:-$(mktemp -d /tmp/lookout-bench.XXXXXX)}
mkdir -p "$WORK"
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# ---- processes we start, stopped by PID on every exit path -------------------------------
declare -A PIDS=()
cleanup() {
    local rc=$?
    for name in "${!PIDS[@]}"; do
        kill -TERM "${PIDS[$name]}" 2>/dev/null || true
    done
    for name in "${!PIDS[@]}"; do
        local pid=${PIDS[$name]} i
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$KEEP" = 1 ]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- peers ------------------------------------------------------------------------------
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v victoria-metrics >/dev/null || need+=(victoria-metrics)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$INSTALL" = 1 ] && [ "$(id -u)" = 0 ]; then
        log "installing ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "missing: ${need[*]} (run as root or: apt-get install -y ${need[*]})" >&2
        exit 1
    fi
fi

# ---- build ------------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
    pkgs=(-p lookout-targetsim)
    [ "$WITH_LOOKOUT" = 1 ] && pkgs+=(-p lookout)
    log "building ${pkgs[*]} (release) into $CARGO_TARGET_DIR"
    (cd "$REPO" && cargo build --release "${pkgs[@]}")
fi
SIM_BIN=$CARGO_TARGET_DIR/release/lookout-targetsim
LOOKOUT_BIN=$CARGO_TARGET_DIR/release/lookout
[ -x "$SIM_BIN" ] || { echo "missing $SIM_BIN" >&2; exit 1; }
if [ "$WITH_LOOKOUT" = 1 ] && [ ! -x "$LOOKOUT_BIN" ]; then
    echo "missing $LOOKOUT_BIN" >&2
    exit 1
fi

# ---- ports must be free ----------------------------------------------------------------
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ports=("$PROM_PORT" "$VM_PORT")
[ "$WITH_LOOKOUT" = 1 ] && ports+=("$LOOKOUT_PORT")
for i in $(seq 0 $((TARGETS - 1))); do ports+=($((BASE_PORT + i))); done
for p in "${ports[@]}"; do
    if port_in_use "$p"; then
        echo "port 127.0.0.1:$p is in use; pick others with --base-port/--*-port" >&2
        exit 1
    fi
done

# ---- config shared by all three ------------------------------------------------------
CONFIG=$WORK/prometheus.yml
{
    echo "global:"
    echo "  scrape_interval: $INTERVAL"
    echo "  scrape_timeout: $INTERVAL"
    echo "scrape_configs:"
    echo "  - job_name: sim"
    echo "    static_configs:"
    echo "      - targets:"
    for i in $(seq 0 $((TARGETS - 1))); do
        echo "          - 127.0.0.1:$((BASE_PORT + i))"
    done
} >"$CONFIG"

# ---- start -----------------------------------------------------------------------------
SAFETY=$((DURATION + 300))
log "simulator: $TARGETS targets x $SERIES series (+$CHURN churn) on 127.0.0.1:$BASE_PORT.."
"$SIM_BIN" --base-port "$BASE_PORT" --targets "$TARGETS" --series-per-target "$SERIES" \
    --churn-series "$CHURN" --seed "$SEED" --duration-secs "$SAFETY" \
    >"$WORK/sim.log" 2>&1 &
PIDS[sim]=$!

if [ "$WITH_LOOKOUT" = 1 ]; then
    mkdir -p "$WORK/lookout-data"
    "$LOOKOUT_BIN" serve --config "$CONFIG" --data-dir "$WORK/lookout-data" \
        --prom-addr "127.0.0.1:$LOOKOUT_PORT" --ui-addr off --loki-addr off \
        >"$WORK/lookout.log" 2>&1 &
    PIDS[lookout]=$!
fi

mkdir -p "$WORK/prom-data"
prometheus --config.file="$CONFIG" --storage.tsdb.path="$WORK/prom-data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PIDS[prometheus]=$!

mkdir -p "$WORK/vm-data"
victoria-metrics -promscrape.config="$CONFIG" -storageDataPath="$WORK/vm-data" \
    -httpListenAddr="127.0.0.1:$VM_PORT" -retentionPeriod=1d -search.latencyOffset=1s >"$WORK/victoria-metrics.log" 2>&1 &
PIDS[victoria-metrics]=$!

wait_ready() { # name url
    local i
    for i in $(seq 1 120); do
        if ! kill -0 "${PIDS[$1]}" 2>/dev/null; then
            echo "$1 exited early; last log lines:" >&2
            tail -n 20 "$WORK/$1.log" 2>/dev/null | sed 's/^/  /' >&2 || true
            exit 1
        fi
        curl -fsS -o /dev/null --max-time 2 "$2" 2>/dev/null && return 0
        sleep 0.5
    done
    echo "$1 not ready after 60s ($2)" >&2
    exit 1
}
wait_ready sim "http://127.0.0.1:$BASE_PORT/metrics"
[ "$WITH_LOOKOUT" = 1 ] && wait_ready lookout "http://127.0.0.1:$LOOKOUT_PORT/-/ready"
wait_ready prometheus "http://127.0.0.1:$PROM_PORT/-/ready"
wait_ready victoria-metrics "http://127.0.0.1:$VM_PORT/health"

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # pid -> utime+stime in clock ticks (fields 14 and 15 of /proc/PID/stat)
    sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
status_kb() { # pid field
    awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"
}
names=(sim)
[ "$WITH_LOOKOUT" = 1 ] && names+=(lookout)
names+=(prometheus victoria-metrics)
declare -A CPU0=()
for n in "${names[@]}"; do CPU0[$n]=$(cpu_ticks "${PIDS[$n]}"); done

# ---- measured window -------------------------------------------------------------------
# The machine may be shared (other builds): the 1-minute load average is sampled every
# 10 s and summarised in the report, so figures from a busy machine are recognisable.
LOADS=()
sample_load() { LOADS+=("$(cut -d' ' -f1 /proc/loadavg)"); }
log "all ready; scraping every $INTERVAL for ${DURATION}s (work dir $WORK)"
start=$SECONDS
sample_load
while [ $((SECONDS - start)) -lt "$DURATION" ]; do
    for _ in 1 2 3 4 5 6; do
        [ $((SECONDS - start)) -lt "$DURATION" ] || break
        left=$((DURATION - (SECONDS - start)))
        sleep $((left < 10 ? left : 10))
        sample_load
    done
    for n in "${names[@]}"; do
        if ! kill -0 "${PIDS[$n]}" 2>/dev/null; then
            echo "$n died during the run; see $WORK (use --keep)" >&2
            KEEP=1
            exit 1
        fi
    done
    log "$((SECONDS - start))s / ${DURATION}s"
done

declare -A CPU1=() RSS_PEAK=() RSS_NOW=()
for n in "${names[@]}"; do
    CPU1[$n]=$(cpu_ticks "${PIDS[$n]}")
    RSS_PEAK[$n]=$(status_kb "${PIDS[$n]}" VmHWM)
    RSS_NOW[$n]=$(status_kb "${PIDS[$n]}" VmRSS)
done

# ---- did everyone ingest? ----------------------------------------------------------------
query() { # port promql -> first scalar value or "-"
    curl -fsS --max-time 30 "http://127.0.0.1:$1/api/v1/query" --data-urlencode "query=$2" 2>/dev/null |
        jq -r 'if .status == "success" and (.data.result | length) > 0
               then .data.result[0].value[1] else "-" end' 2>/dev/null || echo "-"
}
declare -A PORT=([prometheus]=$PROM_PORT [victoria-metrics]=$VM_PORT)
[ "$WITH_LOOKOUT" = 1 ] && PORT[lookout]=$LOOKOUT_PORT
declare -A UP=() SERIES_SEEN=()
ok=1
for n in "${names[@]}"; do
    [ "$n" = sim ] && continue
    UP[$n]=$(query "${PORT[$n]}" 'count(up == 1)')
    SERIES_SEEN[$n]=$(query "${PORT[$n]}" 'count(http_requests_total)')
    if [ "${UP[$n]}" != "$TARGETS" ]; then
        echo "$n: count(up == 1) = ${UP[$n]}, expected $TARGETS" >&2
        ok=0
    fi
done

# ---- stop the scrapers cleanly, then measure their data directories ----------------------
stop_one() { # name: SIGTERM, wait up to 30s, then SIGKILL
    local pid=${PIDS[$1]} i
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "PIDS[$1]"
}
for n in "${names[@]}"; do
    [ "$n" = sim ] || stop_one "$n"
done

# ---- report ------------------------------------------------------------------------------
disk() { du -sb "$1" 2>/dev/null | awk '{print $1}'; }
declare -A DISK=([prometheus]=$(disk "$WORK/prom-data") [victoria-metrics]=$(disk "$WORK/vm-data"))
[ "$WITH_LOOKOUT" = 1 ] && DISK[lookout]=$(disk "$WORK/lookout-data")
per_series=$((TARGETS * SERIES))
secs() { awk -v t="$1" -v c="$CLK_TCK" 'BEGIN {printf "%.2f", t / c}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

echo
echo "scrape side by side: $TARGETS targets x $SERIES series (+$CHURN churn) = $per_series series, every $INTERVAL for ${DURATION}s ($(nproc) cores, shared machine)"
printf '%-17s %12s %12s %14s %12s %12s %14s %10s\n' process "cpu_s_total" "cpu_s_window" "peak_rss_MiB" "rss_MiB" "disk_MiB" "up==1" "series"
for n in "${names[@]}"; do
    tot=$(secs "${CPU1[$n]}")
    win=$(secs $((CPU1[$n] - CPU0[$n])))
    d=${DISK[$n]:-}
    printf '%-17s %12s %12s %14s %12s %12s %14s %10s\n' "$n" "$tot" "$win" \
        "$(mib "${RSS_PEAK[$n]}")" "$(mib "${RSS_NOW[$n]}")" \
        "$([ -n "$d" ] && awk -v b="$d" 'BEGIN {printf "%.1f", b / 1048576}' || echo -)" \
        "${UP[$n]:--}" "${SERIES_SEEN[$n]:--}"
done
printf '%s\n' "${LOADS[@]}" | awk -v c="$(nproc)" '
    NR == 1 {min = max = $1} {sum += $1; if ($1 < min) min = $1; if ($1 > max) max = $1}
    END {printf "load average (1 min) during the window: min %.2f, mean %.2f, max %.2f on %d cores (%d samples)\n", min, sum / NR, max, c, NR}'
samples=$(awk -v s="$per_series" -v d="$DURATION" -v i="$INTERVAL_S" 'BEGIN {printf "%d", s * d / i}')
echo "(~$samples samples ingested per scraper in the window; disk = data dir after a clean stop, before any"
echo " compaction; simulator CPU is the load generator's own cost)"

if [ "$WITH_LOOKOUT" = 1 ]; then
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else printf "n/a"}'; }
    echo
    printf '%-32s %10s %10s\n' ratio "cpu" "peak_rss"
    for peer in prometheus victoria-metrics; do
        printf '%-32s %10s %10s\n' "lookout/$peer" \
            "$(ratio $((CPU1[lookout] - CPU0[lookout])) $((CPU1[$peer] - CPU0[$peer])))" \
            "$(ratio "${RSS_PEAK[lookout]}" "${RSS_PEAK[$peer]}")"
    done
fi

if [ "$ok" != 1 ]; then
    echo "FAIL: not every scraper ingested all targets" >&2
    KEEP=1
    exit 1
fi
