#!/usr/bin/env bash
# benches/http/cpu.sh: CPU time per request of every process on the path, which a busy machine
# disturbs far less than requests per second. Starts one server per argument on a free
# 127.0.0.1 port, preloads KEYS keys into each jessy-core, then for ROUNDS rounds runs wrk
# against each server in turn. Around each run it reads utime+stime from /proc/PID/stat and the
# context switches (voluntary + involuntary, summed over the threads in /proc/PID/task/*/status)
# of the server and, for a gateway, of the jessy-core behind it; wrk's own come from getrusage.
# Prints, per server and round, req/s and CPU microseconds and context switches per request of
# each process, then the median per server.
#
#   benches/http/cpu.sh NAME=SPEC[,VAR=VALUE...] ...
#     SPEC: baseline                the minimal axum handler (benches/http/baseline; GET only)
#           baseline-go             the minimal net/http handler (benches/http/baseline-go; GET only)
#           BINARY[:RUST_LOG]       `BINARY serve` (jessy), RUST_LOG default info
#           BINARY@CORE             a jessy-api gateway BINARY in front of the jessy-core started
#                                   by the earlier argument named CORE; wrk sends /api/v1/...
#     ,VAR=VALUE...                 environment for that process only, e.g. GOMAXPROCS=1,
#                                   GOGC=800 or JESSY_API_* for a gateway, TOKIO_WORKER_THREADS=1
#                                   for jessy-core
#   e.g. benches/http/cpu.sh base=baseline old=/tmp/jessy-old new=target/release/jessy new-warn=target/release/jessy:warn
#        benches/http/cpu.sh core=target/release/jessy gw=api/bin/jessy-api@core gw1=api/bin/jessy-api@core,GOMAXPROCS=1
#
# Columns: wrk, srv (the server wrk talks to), core (the jessy-core behind a gateway), sum (the
# three), box (all CPU time the machine spent, every process and interrupt included: what is
# above sum is other people's work), each in CPU us per request; cs: context switches per
# request of wrk, srv and core.
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
BASELINE_GO=$HERE/baseline-go/bin/jessy-http-baseline-go
[ $# -gt 0 ] || { sed -n '2,29p' "$0"; exit 2; }

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

# NAMES[i], PORTS[i], SPIDS[i]: the server wrk talks to; CPIDS[i]: the jessy-core behind it
# (a gateway) or empty; PREFIXES[i]: /v1 or /api/v1.
NAMES=(); PORTS=(); SPIDS=(); CPIDS=(); PREFIXES=()
declare -A PORT_OF=() PID_OF=() IS_CORE=()
for arg in "$@"; do
  name=${arg%%=*}; rest=${arg#*=}; spec=${rest%%,*}; port=$(free_port)
  envs=(); [ "$spec" != "$rest" ] && IFS=, read -r -a envs <<<"${rest#*,}"
  cpid=; prefix=/v1
  if [ "$spec" = baseline ] || [ "$spec" = baseline-go ]; then
    bin=$BASELINE; [ "$spec" = baseline-go ] && bin=$BASELINE_GO
    [ -x "$bin" ] || { echo "cpu.sh: $bin is missing (see benches/http/run.sh for how it is built)" >&2; exit 2; }
    env ${envs[@]+"${envs[@]}"} "$bin" "127.0.0.1:$port" >"$TMP/$name.log" 2>&1 &
    pid=$!
    wait_for "http://127.0.0.1:$port/v1/dimensions/default/keys/x"
  elif [[ "$spec" == *@* ]]; then
    bin=${spec%@*}; core=${spec##*@}
    [ -n "${IS_CORE[$core]:-}" ] || { echo "cpu.sh: $arg: no jessy-core named $core before it" >&2; exit 2; }
    env JESSY_API_ADDR="127.0.0.1:$port" JESSY_CORE_URL="http://127.0.0.1:${PORT_OF[$core]}" \
      ${envs[@]+"${envs[@]}"} "$bin" >"$TMP/$name.log" 2>&1 &
    pid=$!
    wait_for "http://127.0.0.1:$port/api/health"
    cpid=${PID_OF[$core]}; prefix=/api/v1
  else
    bin=${spec%%:*}; log=info
    [ "$bin" != "$spec" ] && log=${spec#*:}
    env MMAP_BASE_PATH="$TMP/$name" JESSY_ADDR="127.0.0.1:$port" JESSY_DURABILITY=immediate RUST_LOG="$log" \
      ${envs[@]+"${envs[@]}"} "$bin" serve >"$TMP/$name.log" 2>&1 &
    pid=$!
    wait_for "http://127.0.0.1:$port/health"
    python3 "$HERE/preload.py" jessy "http://127.0.0.1:$port" "$KEYS"
    IS_CORE[$name]=1
  fi
  PIDS+=("$pid"); NAMES+=("$name"); PORTS+=("$port"); SPIDS+=("$pid"); CPIDS+=("$cpid"); PREFIXES+=("$prefix")
  PORT_OF[$name]=$port; PID_OF[$name]=$pid
done

# pstat PID: "ticks context-switches" of a process (0 0 without one).
pstat() {
  [ -n "$1" ] || { echo "0 0"; return; }
  local cs
  cs=$(cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/ {n += $2} END {print n + 0}')
  echo "$(awk '{print $14 + $15}' "/proc/$1/stat") $cs"
}
# busy: jiffies all CPUs spent on anything but idle and iowait, summed.
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# wrk_rusage ARGS...: runs wrk, prints its output and then "RUSAGE cpu_seconds context_switches".
wrk_rusage() {
  python3 - "$@" <<'EOF'
import resource, subprocess, sys
p = subprocess.run(["wrk"] + sys.argv[1:], stdout=subprocess.PIPE, text=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stdout.write(p.stdout)
print(f"RUSAGE {r.ru_utime + r.ru_stime:.4f} {r.ru_nvcsw + r.ru_nivcsw}")
sys.exit(p.returncode)
EOF
}

HZ=$(getconf CLK_TCK)
OUT=$TMP/out.tsv
: >"$OUT"
echo "== $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); MODE=$MODE, $CONNS connections, $DURATION per run"
printf 'name\tround\treq/s\tus:wrk\tsrv\tcore\tsum\tbox\tcs:wrk\tsrv\tcore\tnon2xx\terrors\tload1\n'
for round in warmup $(seq "$ROUNDS"); do
  for i in "${!NAMES[@]}"; do
    d=$DURATION; [ "$round" = warmup ] && d=2s
    s0=$(pstat "${SPIDS[$i]}"); c0=$(pstat "${CPIDS[$i]}"); b0=$(busy)
    out=$(MODE=$MODE PREFIX=${PREFIXES[$i]} KEYS=$KEYS wrk_rusage -t"$THREADS" -c"$CONNS" -d"$d" --timeout 10s \
      -s "$HERE/bench.lua" "http://127.0.0.1:${PORTS[$i]}")
    b1=$(busy); s1=$(pstat "${SPIDS[$i]}"); c1=$(pstat "${CPIDS[$i]}")
    [ "$round" = warmup ] && continue
    line=$(grep '^RESULT ' <<<"$out"); ru=$(grep '^RUSAGE ' <<<"$out")
    python3 - "${NAMES[$i]}" "$round" "$HZ" "$line" "$ru" "$s0" "$s1" "$c0" "$c1" "$b0" "$b1" \
      "$([ -n "${CPIDS[$i]}" ] && echo 1 || echo 0)" "$(cut -d' ' -f1 /proc/loadavg)" <<'EOF' | tee -a "$OUT"
import sys
name, rnd, hz, line, ru, s0, s1, c0, c1, b0, b1, gw, load = sys.argv[1:]
hz = int(hz)
f = dict(kv.split("=") for kv in line.split()[1:])
n = max(1, int(f["requests"]))
_, wrk_s, wrk_cs = ru.split()
s0, s1, c0, c1 = (list(map(int, x.split())) for x in (s0, s1, c0, c1))
us = lambda ticks: ticks * 1e6 / hz / n
wrk, srv, core = float(wrk_s) * 1e6 / n, us(s1[0] - s0[0]), us(c1[0] - c0[0])
box = us(int(b1) - int(b0))
cs = [int(wrk_cs) / n, (s1[1] - s0[1]) / n, (c1[1] - c0[1]) / n]
core_s = f"{core:.1f}" if gw == "1" else "-"
core_cs = f"{cs[2]:.2f}" if gw == "1" else "-"
print(f"{name}\t{rnd}\t{float(f['rps']):.0f}\t{wrk:.1f}\t{srv:.1f}\t{core_s}\t{wrk + srv + core:.1f}\t{box:.1f}"
      f"\t{cs[0]:.2f}\t{cs[1]:.2f}\t{core_cs}\t{f['non2xx']}\t{f['errors']}\t{load}")
EOF
  done
done
echo "== median per server (min-max): req/s; CPU us per request of wrk, the server, the jessy-core behind a gateway, their sum, the whole machine; context switches per request"
python3 - "$OUT" <<'EOF'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
def med(vals, fmt):
    if vals[0] == "-":
        return "-"
    v = [float(x) for x in vals]
    return fmt.format(statistics.median(v)) + " (" + fmt.format(min(v)) + "-" + fmt.format(max(v)) + ")"
for name in dict.fromkeys(r[0] for r in rows):
    rs = [r for r in rows if r[0] == name]
    col = lambda k: [r[k] for r in rs]
    bad = sum(int(r[11]) + int(r[12]) for r in rs)
    print(f"{name:12} rps {med(col(2), '{:.0f}')}  us/req wrk {med(col(3), '{:.1f}')} srv {med(col(4), '{:.1f}')} "
          f"core {med(col(5), '{:.1f}')} sum {med(col(6), '{:.1f}')} box {med(col(7), '{:.1f}')}  "
          f"cs/req wrk {med(col(8), '{:.2f}')} srv {med(col(9), '{:.2f}')} core {med(col(10), '{:.2f}')}"
          + (f"  NON-2XX/ERRORS {bad}" if bad else ""))
EOF
