#!/usr/bin/env bash
# benches/http/cpu.sh: server CPU time per request, which a busy machine disturbs far less than
# requests per second. Starts one server per argument on a free 127.0.0.1 port, preloads KEYS
# keys into each jessy-core, then for ROUNDS rounds runs wrk against each server in turn and
# reads the server's utime+stime from /proc/PID/stat before and after. Prints, per server and
# round, req/s and CPU microseconds per request, then the median per server.
#
#   benches/http/cpu.sh NAME=SPEC ...
#     SPEC: baseline                the minimal axum handler (benches/http/baseline; GET only)
#           BINARY[:RUST_LOG]       `BINARY serve` (jessy), RUST_LOG default info
#   e.g. benches/http/cpu.sh base=baseline old=/tmp/jessy-old new=target/release/jessy new-warn=target/release/jessy:warn
#
# Settings (environment): MODE=get|scan (wrk script mode), ROUNDS=3, DURATION=4s, CONNS=64,
# THREADS=2, KEYS=100000, NICE=-10 (as root).

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/benches/http
MODE=${MODE:-get}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
KEYS=${KEYS:-100000}
NICE=${NICE:--10}
BASELINE=$HERE/baseline/target/release/jessy-http-baseline
[ $# -gt 0 ] || { sed -n '2,15p' "$0"; exit 2; }

if [ "$NICE" != 0 ] && [ "$(id -u)" = 0 ] && [ -z "${CPU_SH_NICED:-}" ]; then
  export CPU_SH_NICED=1
  exec nice -n "$NICE" bash "$0" "$@"
fi

PREFIX_NAME=jessy-bench-cpu
# shellcheck source=benches/http/common.sh
source "$HERE/common.sh"
wait_for() {
  for _ in $(seq 300); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "cpu.sh: $1 did not come up" >&2
  exit 2
}

NAMES=(); PORTS=(); SPIDS=()
for arg in "$@"; do
  name=${arg%%=*}; spec=${arg#*=}; port=$(free_port)
  if [ "$spec" = baseline ]; then
    "$BASELINE" "127.0.0.1:$port" >"$TMP/$name.log" 2>&1 &
    pid=$!
    wait_for "http://127.0.0.1:$port/v1/dimensions/default/keys/x"
  else
    bin=${spec%%:*}; log=info
    [ "$bin" != "$spec" ] && log=${spec#*:}
    MMAP_BASE_PATH=$TMP/$name JESSY_ADDR=127.0.0.1:$port JESSY_DURABILITY=immediate RUST_LOG=$log \
      "$bin" serve >"$TMP/$name.log" 2>&1 &
    pid=$!
    wait_for "http://127.0.0.1:$port/health"
    python3 "$HERE/preload.py" jessy "http://127.0.0.1:$port" "$KEYS"
  fi
  PIDS+=("$pid"); NAMES+=("$name"); PORTS+=("$port"); SPIDS+=("$pid")
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
OUT=$TMP/out.tsv
: >"$OUT"
for round in warmup $(seq "$ROUNDS"); do
  for i in "${!NAMES[@]}"; do
    d=$DURATION; [ "$round" = warmup ] && d=2s
    before=$(ticks "${SPIDS[$i]}")
    out=$(MODE=$MODE PREFIX=/v1 KEYS=$KEYS wrk -t"$THREADS" -c"$CONNS" -d"$d" --timeout 10s \
      -s "$HERE/bench.lua" "http://127.0.0.1:${PORTS[$i]}")
    after=$(ticks "${SPIDS[$i]}")
    [ "$round" = warmup ] && continue
    line=$(grep '^RESULT ' <<<"$out")
    python3 - "${NAMES[$i]}" "$round" "$before" "$after" "$HZ" "$line" "$(cut -d' ' -f1 /proc/loadavg)" <<'EOF' | tee -a "$OUT"
import sys
name, rnd, before, after, hz, line, load = sys.argv[1:]
f = dict(kv.split("=") for kv in line.split()[1:])
us = (int(after) - int(before)) * 1e6 / int(hz) / max(1, int(f["requests"]))
print(f"{name}\t{rnd}\t{float(f['rps']):.0f}\t{us:.1f}\t{f['non2xx']}\t{f['errors']}\t{load}")
EOF
  done
done
echo "== median per server: req/s, CPU us per request (name, round, rps, us/req, non2xx, errors, load1 above)"
python3 - "$OUT" <<'EOF'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
for name in dict.fromkeys(r[0] for r in rows):
    rps = [float(r[2]) for r in rows if r[0] == name]
    us = [float(r[3]) for r in rows if r[0] == name]
    print(f"{name:14} rps {statistics.median(rps):8.0f} ({min(rps):.0f}-{max(rps):.0f})   "
          f"cpu/req {statistics.median(us):6.1f} us ({min(us):.1f}-{max(us):.1f})")
EOF
