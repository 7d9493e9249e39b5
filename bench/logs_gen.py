#!/usr/bin/env python3
"""Generates JSON service logs shaped like the weAlist demo's (serde field order, millisecond
RFC 3339 `ts`, float `latency_ms` printed shortest-round-trip as serde does, a random 128-bit
`trace_id`), time-ordered over a few hours ending an hour ago.
    logs_gen.py OUT.jsonl MEGABYTES
"""
import random
import sys
import time

path, mb = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
services = ["user-service", "board-service", "chat-service", "noti-service",
            "storage-service", "video-service", "auth-service"]
routes = {
    "user-service": ["/api/users/me", "/api/users/{id}", "/api/users/{id}/profile"],
    "board-service": ["/api/boards", "/api/boards/{id}", "/api/boards/{id}/cards"],
    "chat-service": ["/api/chats/{id}/messages", "/api/chats"],
    "noti-service": ["/api/notifications", "/api/notifications/{id}/read"],
    "storage-service": ["/api/files", "/api/files/{id}"],
    "video-service": ["/api/rooms/{id}/join", "/api/rooms"],
    "auth-service": ["/api/auth/login", "/api/auth/refresh"],
}
# (msg, level, status choices); ~5% "payment declined", ~2% errors.
kinds = ([("request completed", "info", [200, 200, 200, 201, 204, 304, 404])] * 80
         + [("cache miss", "debug", [200])] * 8
         + [("payment declined", "warn", [402])] * 5
         + [("slow query", "warn", [200])] * 5
         + [("upstream timeout", "error", [500, 502, 504])] * 2)
methods = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]
target = mb * 1024 * 1024
t = int(time.time() * 1000) - 3600 * 1000 - (target // 270) * 2  # ~2 ms per line, ends ~1h ago
sec_cache = (None, None)
n = size = 0
with open(path, "w") as f:
    buf = []
    while size < target:
        t += rnd.randint(0, 4)
        s = t // 1000
        if sec_cache[0] != s:
            sec_cache = (s, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)))
        svc = rnd.choice(services)
        msg, level, statuses = rnd.choice(kinds)
        p = rnd.choice(routes[svc])
        if "{id}" in p:
            p = p.replace("{id}", str(rnd.randint(1, 50000)))
        lat = round(rnd.expovariate(1 / 40.0), 3)
        line = ('{"ts":"%s.%03dZ","level":"%s","service":"%s","msg":"%s","method":"%s","path":"%s",'
                '"status":%d,"latency_ms":%r,"trace_id":"%032x","user_id":"u%d"}\n') % (
            sec_cache[1], t % 1000, level, svc, msg, rnd.choice(methods), p,
            rnd.choice(statuses), lat, rnd.getrandbits(128), rnd.randint(1, 20000))
        buf.append(line)
        size += len(line)
        n += 1
        if len(buf) >= 20000:
            f.write("".join(buf))
            buf = []
    f.write("".join(buf))
print(f"{n} lines, {size} bytes", file=sys.stderr)
