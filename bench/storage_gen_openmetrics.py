#!/usr/bin/env python3
"""Service-like OpenMetrics backfill data: counters with random increments, noisy gauges and
histogram buckets, SERIES series at STEP seconds over HOURS hours. Usage:
storage_gen_openmetrics.py OUT [SERIES=500] [HOURS=24] [STEP=15] [SEED=1]
The service label is called `service` unless OM_SERVICE_LABEL names another (e.g. `job`, so
the seed's `by (job)` dashboard queries group by service). OM_STATUSES=200,404,500,...
cycles the counters' status codes instead of the default 200 + i // 28."""
import os, random, sys

out = sys.argv[1]
series = int(sys.argv[2]) if len(sys.argv) > 2 else 500
hours = float(sys.argv[3]) if len(sys.argv) > 3 else 24
step = int(sys.argv[4]) if len(sys.argv) > 4 else 15
rng = random.Random(int(sys.argv[5]) if len(sys.argv) > 5 else 1)
svc = os.environ.get("OM_SERVICE_LABEL", "service")
statuses = os.environ.get("OM_STATUSES", "").split(",") if os.environ.get("OM_STATUSES") else None
start = 1_700_000_000
n = int(hours * 3600 / step)
buckets = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]
services = ["user", "board", "chat", "noti", "storage", "video", "auth"]
paths = ["/api/a", "/api/b", "/api/c", "/api/d"]
with open(out, "w") as f:
    # ~40% counters, ~20% gauges, ~40% histogram buckets.
    nc, ng = series * 4 // 10, series * 2 // 10
    nh = max(1, (series - nc - ng) // len(buckets))
    f.write("# TYPE http_requests counter\n")
    for i in range(nc):
        v = 0
        lab = f'{svc}="{services[i % 7]}",path="{paths[i // 7 % 4]}",status="{statuses[i % len(statuses)] if statuses else 200 + i // 28}",instance="i{i}"'
        for k in range(n):
            v += rng.randint(0, 40)
            f.write(f"http_requests_total{{{lab}}} {v} {start + k * step}\n")
    f.write("# TYPE process_resident_memory_bytes gauge\n")
    for i in range(ng):
        base = rng.randint(50, 500) * 1_000_000
        for k in range(n):
            v = base + rng.randint(-2_000_000, 2_000_000)
            f.write(f'process_resident_memory_bytes{{{svc}="{services[i % 7]}",instance="g{i}"}} {v} {start + k * step}\n')
    # Histogram series as three untyped families (same samples; the strict OpenMetrics
    # histogram grouping rules would need one metric point per timestamp group).
    hist = {"bucket": [], "count": [], "sum": []}
    for i in range(nh):
        lab = f'{svc}="{services[i % 7]}",instance="h{i}"'
        counts = [0] * len(buckets)
        total = 0
        sums = 0.0
        rows = []
        for k in range(n):
            reqs = rng.randint(0, 30)
            for _ in range(reqs):
                lat = rng.expovariate(8)
                sums += lat
                for b, le in enumerate(buckets):
                    if le == "+Inf" or lat <= float(le):
                        counts[b] += 1
            total += reqs
            rows.append((start + k * step, list(counts), total, round(sums, 3)))
        # One series at a time, as promtool's backfill input is laid out.
        for b, le in enumerate(buckets):
            hist["bucket"].extend(f'http_request_duration_seconds_bucket{{{lab},le="{le}"}} {c[b]} {ts}\n' for ts, c, _, _ in rows)
        hist["count"].extend(f"http_request_duration_seconds_count{{{lab}}} {total} {ts}\n" for ts, _, total, _ in rows)
        hist["sum"].extend(f"http_request_duration_seconds_sum{{{lab}}} {sm} {ts}\n" for ts, _, _, sm in rows)
    for kind, lines in hist.items():
        f.write(f"# TYPE http_request_duration_seconds_{kind} unknown\n")
        f.writelines(lines)
    f.write("# EOF\n")
