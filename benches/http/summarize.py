#!/usr/bin/env python3
"""Turns benches/http/run.sh's results.tsv into the Markdown of docs/BENCHMARKS.md's `## HTTP`.

Medians over the runs, with the spread (min-max); the ratios behind the targets are taken per
round (the workloads of one round ran back to back, under the same outside load) and their
median reported.
"""

import argparse
import csv
import platform
import statistics
import subprocess
from collections import defaultdict

WHAT = {
    "baseline-get": "minimal axum handler (150-byte body from memory)",
    "baseline-go-get": "minimal Go `net/http` handler (150-byte body from memory; the ceiling of any `net/http` server here)",
    "core-get": "jessy-core GET, random existing key (default `RUST_LOG=info`: a JSON access-log line per request)",
    "core-get-warn": "the same with `RUST_LOG=warn` (no access log)",
    "gateway-get": "jessy-api -> jessy-core GET, random existing key",
    "core-get-1conn": "jessy-core GET, one connection (latency without queueing)",
    "gateway-get-1conn": "jessy-api -> jessy-core GET, one connection",
    "core-scan100": "jessy-core scan, 100 keys with values (`?prefix=k0123&limit=100`)",
    "core-put-immediate": "jessy-core PUT, random key, `JESSY_DURABILITY=immediate`",
    "redis-get": "Redis GET, random existing key",
    "redis-set": "Redis SET, no persistence",
    "redis-set-aof-always": "Redis SET, `appendonly yes`, `appendfsync always`",
    "etcd-get": "etcd `/v3/kv/range`, one key",
    "etcd-range100": "etcd `/v3/kv/range`, 100 keys with values",
    "etcd-put": "etcd `/v3/kv/put`",
}


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
            mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, StopIteration):
        pass
    return f"{cores} vCPU ({cpu}){mem}, Linux {platform.release()}"


def fmt_rps(x):
    return f"{x:,.0f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tsv")
    for opt in ["started", "load-before", "load-after", "conns", "threads", "duration", "runs", "keys", "redis",
                "etcd", "jessy-log", "nice", "settle"]:
        ap.add_argument("--" + opt, default="")
    a = ap.parse_args()

    rows = defaultdict(list)
    with open(a.tsv) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            rows[r["name"]].append(r)

    def col(name, key):
        return [float(r[key]) for r in rows.get(name, [])]

    out = []
    p = out.append
    p(f"Run of {a.started}; {machine()}.")
    p(f"Load average (1, 5, 15 min) before: {a.load_before}; after: {a.load_after}. "
      f"{a.conns} connections, {a.duration} per measurement, {a.runs} rounds, {a.keys} preloaded keys, "
      f"150-byte values; load generator ({a.threads} wrk threads, or redis-benchmark) on the same cores; "
      f"jessy-core with `RUST_LOG={a.jessy_log}`; "
      + (f"everything measured ran at nice {a.nice}" if a.nice not in ("", "0") else "default priority")
      + ("; `sync` before each measurement." if a.settle == "1" else "; no `sync` between measurements."))
    p("")
    p("| workload | what | req/s (median) | min - max | p50 ms | p99 ms | load1 during |")
    p("|---|---|---:|---:|---:|---:|---:|")
    for name in WHAT:
        if name not in rows:
            continue
        rps, p50, p99, load = col(name, "rps"), col(name, "p50_ms"), col(name, "p99_ms"), col(name, "load1")
        bad = sum(col(name, "non2xx")) + sum(col(name, "errors"))
        note = f" ({bad:.0f} errors!)" if bad else ""
        p(f"| `{name}` | {WHAT[name]}{note} | {fmt_rps(statistics.median(rps))} | "
          f"{fmt_rps(min(rps))} - {fmt_rps(max(rps))} | {statistics.median(p50):.2f} | "
          f"{statistics.median(p99):.2f} | {min(load):.1f} - {max(load):.1f} |")
    if a.redis == "0":
        p("| redis | not installed: skipped | | | | | |")
    if a.etcd == "0":
        p("| etcd | not installed: skipped | | | | | |")

    def per_round(num, den, key="rps", op=lambda x, y: x / y):
        pairs = {r["run"]: float(r[key]) for r in rows.get(den, [])}
        vals = [op(float(r[key]), pairs[r["run"]]) for r in rows.get(num, []) if r["run"] in pairs]
        return vals

    p("")
    p("| target | measured (median of rounds; min - max) | holds |")
    p("|---|---|---|")

    def ratio_line(label, num, den, target):
        v = per_round(num, den)
        if not v:
            return
        m = statistics.median(v)
        p(f"| {label} >= {target:.0%} | {m:.0%} ({min(v):.0%} - {max(v):.0%}) | {'yes' if m >= target else 'NO'} |")

    ratio_line("issue 5: `core-get` / `baseline-get`", "core-get", "baseline-get", 0.70)
    ratio_line("issue 5, access log off: `core-get-warn` / `baseline-get`", "core-get-warn", "baseline-get", 0.70)
    ratio_line("issue 5: `core-put-immediate` / `redis-set-aof-always`", "core-put-immediate",
               "redis-set-aof-always", 1.00)
    if "core-scan100" in rows:
        v = col("core-scan100", "rps")
        m = statistics.median(v)
        p(f"| issue 5: `core-scan100` >= 20,000 req/s | {fmt_rps(m)} ({fmt_rps(min(v))} - {fmt_rps(max(v))}) | "
          f"{'yes' if m >= 20000 else 'NO'} |")
    ratio_line("issue 6: `gateway-get` / `core-get`", "gateway-get", "core-get", 0.60)
    v = per_round("baseline-go-get", "core-get")
    if v:
        p(f"| issue 6, for scale: `baseline-go-get` / `core-get` (reported) | {statistics.median(v):.0%} "
          f"({min(v):.0%} - {max(v):.0%}) | - |")
    added = per_round("gateway-get", "core-get", "p99_ms", lambda x, y: x - y)
    added50 = per_round("gateway-get", "core-get", "p50_ms", lambda x, y: x - y)
    if added:
        p(f"| issue 6: p99 the gateway adds at {a.conns} connections (reported) | "
          f"{statistics.median(added):+.2f} ms ({min(added):+.2f} - {max(added):+.2f}); "
          f"p50 {statistics.median(added50):+.2f} ms | - |")
    added1 = per_round("gateway-get-1conn", "core-get-1conn", "p99_ms", lambda x, y: x - y)
    added1_50 = per_round("gateway-get-1conn", "core-get-1conn", "p50_ms", lambda x, y: x - y)
    if added1:
        p(f"| issue 6: p99 the gateway adds at 1 connection (reported) | "
          f"{statistics.median(added1):+.3f} ms ({min(added1):+.3f} - {max(added1):+.3f}); "
          f"p50 {statistics.median(added1_50):+.3f} ms | - |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
