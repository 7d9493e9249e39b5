#!/usr/bin/env python3
"""Pushes a JSON-lines log file (from logs_gen.py) to a Loki push API as JSON bodies of 5000
lines, one stream per service ({job="bench", service=...}); exits non-zero unless every push
answers 204.
    logs_push.py FILE.jsonl PORT
"""
import calendar
import http.client
import json
import sys
import time

raw, port = sys.argv[1], int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)


def push(streams):
    body = json.dumps({"streams": [{"stream": {"job": "bench", "service": s}, "values": v}
                                   for s, v in streams.items()]})
    conn.request("POST", "/loki/api/v1/push", body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    text = r.read()
    if r.status != 204:
        sys.exit(f"push: {r.status} {text[:500]!r}")


streams, n = {}, 0
sec_prefix, sec_ms = None, 0
with open(raw) as f:
    for line in f:
        line = line.rstrip("\n")
        ts = line[7:31]  # {"ts":"YYYY-MM-DDTHH:MM:SS.mmmZ"
        if ts[:19] != sec_prefix:
            sec_prefix = ts[:19]
            sec_ms = calendar.timegm(time.strptime(sec_prefix, "%Y-%m-%dT%H:%M:%S")) * 1000
        ns = (sec_ms + int(ts[20:23])) * 1_000_000
        j = line.index('"service":"') + 11
        svc = line[j:line.index('"', j)]
        streams.setdefault(svc, []).append([str(ns), line])
        n += 1
        if n % 5000 == 0:
            push(streams)
            streams = {}
if streams:
    push(streams)
print(f"pushed {n} lines", file=sys.stderr)
