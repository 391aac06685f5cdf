#!/usr/bin/env python3
"""Loads the benchmark's keys into a store: k000000 .. k(N-1), 150-byte values.

    preload.py jessy http://127.0.0.1:PORT N    (POST /v1/dimensions/default/batch, 1000 per batch)
    preload.py etcd  http://127.0.0.1:PORT N    (POST /v3/kv/txn, 1000 puts per transaction)
    preload.py redis PORT N                     (RESP SETs of key:%012d, the names redis-benchmark -r uses)

Standard library only. Exits non-zero if any request fails.
"""

import base64
import json
import socket
import sys
import urllib.request

VALUE = "v" * 150
BATCH = 1000


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        if resp.status != 200:
            raise SystemExit(f"{url}: HTTP {resp.status}")
        return resp.read()


def jessy(base, n):
    for start in range(0, n, BATCH):
        ops = [{"op": "put", "key": f"k{i:06d}", "value": VALUE} for i in range(start, min(n, start + BATCH))]
        post(f"{base}/v1/dimensions/default/batch", {"ops": ops})


def etcd(base, n):
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    value = b64(VALUE)
    for start in range(0, n, BATCH):
        puts = [{"requestPut": {"key": b64(f"k{i:06d}"), "value": value}} for i in range(start, min(n, start + BATCH))]
        post(f"{base}/v3/kv/txn", {"success": puts})


def redis(port, n):
    def cmd(*args):
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            a = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    with socket.create_connection(("127.0.0.1", int(port))) as s:
        s.sendall(b"".join(cmd("SET", f"key:{i:012d}", VALUE) for i in range(n)))
        s.sendall(cmd("DBSIZE"))
        # n "+OK\r\n" replies, then ":<count>\r\n".
        buf = b""
        while not buf.endswith(b"\r\n") or buf.count(b"\r\n") < n + 1:
            chunk = s.recv(1 << 16)
            if not chunk:
                raise SystemExit("redis closed the connection")
            buf += chunk
        if buf.count(b"+OK\r\n") != n:
            raise SystemExit(f"redis: not every SET succeeded: {buf[-200:]!r}")


if __name__ == "__main__":
    kind, where, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    {"jessy": jessy, "etcd": etcd, "redis": redis}[kind](where, n)
