#!/usr/bin/env bash
# Bytes per sample after compaction, same data for Lookout, Prometheus and VictoriaMetrics.
# Usage: bench/storage_bytes_per_sample.sh [SERIES=500] [HOURS=24]
# Needs python3, curl, and (as root) installs prometheus + victoria-metrics with apt.
# LOOKOUT=path skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
SERIES=${1:-500}
HOURS=${2:-24}
W=$(mktemp -d)
trap 'kill "${VM_PID:-}" 2>/dev/null || true; rm -rf "$W"' EXIT
if ! command -v promtool >/dev/null || ! command -v victoria-metrics >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y prometheus victoria-metrics >/dev/null; else
    echo "SKIP: promtool/victoria-metrics missing"; exit 0; fi
fi
if [ -z "${LOOKOUT:-}" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-bench}
  cargo build -q --release -p lookout
  LOOKOUT=$CARGO_TARGET_DIR/release/lookout
fi
python3 bench/storage_gen_openmetrics.py "$W/data.om" "$SERIES" "$HOURS" 15
"$LOOKOUT" tsdb import openmetrics "$W/data.om" "$W/lookout" >/dev/null 2>&1
SAMPLES=$("$LOOKOUT" tsdb stats "$W/lookout" 2>/dev/null | awk '/^block samples:/{print $3}')
LK=$(du -sb "$W/lookout/blocks" | cut -f1)
promtool tsdb create-blocks-from openmetrics "$W/data.om" "$W/prom" >/dev/null
PR=$(du -sb "$W/prom" | cut -f1)
grep -v '^#' "$W/data.om" | sed 's/ \([0-9]*\)$/ \1000/' > "$W/data.prom"
victoria-metrics -storageDataPath="$W/vm" -httpListenAddr=127.0.0.1:18428 -retentionPeriod=100y >/dev/null 2>&1 &
VM_PID=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:18428/health >/dev/null && break; sleep 0.2; done
curl -sf -X POST --data-binary @"$W/data.prom" http://127.0.0.1:18428/api/v1/import/prometheus
sleep 2; curl -sf http://127.0.0.1:18428/internal/force_flush; curl -sf http://127.0.0.1:18428/internal/force_merge; sleep 20
VM_ROWS=$(curl -s http://127.0.0.1:18428/metrics | awk -F' ' '/^vm_rows\{type="storage\/(small|big)"\}/{s+=$2} END{print s}')
kill "$VM_PID"; wait "$VM_PID" 2>/dev/null || true; VM_PID=
VM=$(du -sb "$W/vm" | cut -f1)
awk -v s="$SAMPLES" -v vr="$VM_ROWS" -v lk="$LK" -v pr="$PR" -v vm="$VM" 'BEGIN{
  printf "samples %d (VictoriaMetrics rows %d)\n", s, vr;
  printf "lookout          %10d bytes  %.3f B/sample\n", lk, lk/s;
  printf "prometheus       %10d bytes  %.3f B/sample  (promtool 2h blocks)\n", pr, pr/s;
  printf "victoria-metrics %10d bytes  %.3f B/sample  (after force_merge)\n", vm, vm/s;
  printf "ratio lookout/vm %.3f   lookout/prometheus %.3f\n", lk/vm, lk/pr }'
