#!/usr/bin/env bash
# benches/http/run.sh (`make bench-http`): HTTP throughput of jessy-core and the jessy-api
# gateway on loopback, next to a minimal axum handler, a minimal Go net/http handler, Redis and
# etcd, all in one run.
#
# It builds what it needs, starts every service on a free 127.0.0.1 port with a fresh data
# directory under a temporary folder, preloads KEYS keys with 150-byte values, measures each
# workload RUNS times (the rounds interleave the workloads, so a burst of outside load hits
# them alike), stops everything it started and prints a Markdown table (also written to
# benches/http/results/last.md). Nothing is left running, even on Ctrl-C.
#
# Settings (environment):
#   DURATION=10s   length of each measurement (wrk -d; redis-benchmark gets a matching -n)
#   RUNS=3         measurements per workload; the table shows the median and min-max
#   CONNS=64       concurrent connections          THREADS=2  wrk threads
#   KEYS=100000    preloaded keys                  SKIP_BUILD=1  use the binaries as built
#   ONLY=a,b       only these workloads (names as in the table, e.g. ONLY=core-get,baseline-get)
#   JESSY_LOG=info RUST_LOG of jessy-core (its JSON lines go to a file in the temp folder); a
#                  second jessy-core with RUST_LOG=warn (no access log) serves `core-get-warn`
#   NICE=-10       as root, run the services and load generators at this nice level, so that
#                  other work on the machine (builds) disturbs the numbers less; NICE=0: don't
#   JESSY_BIN, JESSY_API_BIN   other binaries to measure (e.g. an older build), with SKIP_BUILD=1
#   SETTLE=1       `sync` before each measurement, so that one workload's writes (jessy-core's
#                  access log above all) are flushed before the next starts, not by its first
#                  fdatasync; SETTLE=0: don't (docs/BENCHMARKS.md, eighteenth session, says why)
#
# Needs: cargo, go, python3, curl, wrk, redis-server + redis-benchmark (skipped if absent),
# etcd (skipped if absent). On Debian: apt-get install -y wrk redis-server etcd-server

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/benches/http
DURATION=${DURATION:-10s}
RUNS=${RUNS:-3}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
KEYS=${KEYS:-100000}
SKIP_BUILD=${SKIP_BUILD:-0}
ONLY=${ONLY:-}
JESSY_LOG=${JESSY_LOG:-info}
SETTLE=${SETTLE:-1}

JESSY=${JESSY_BIN:-$ROOT/target/release/jessy}
JESSY_API=${JESSY_API_BIN:-$ROOT/api/bin/jessy-api}
NICE=${NICE:--10}
BASELINE=$HERE/baseline/target/release/jessy-http-baseline
BASELINE_GO=$HERE/baseline-go/bin/jessy-http-baseline-go

say() { printf '%s\n' "$*" >&2; }
die() { say "bench-http: $*"; exit 2; }
has() { command -v "$1" >/dev/null 2>&1; }

has wrk || die "wrk is not installed (Debian: apt-get install -y wrk)"
has curl || die "curl is not installed"
has python3 || die "python3 is not installed"
HAVE_REDIS=0; has redis-server && has redis-benchmark && HAVE_REDIS=1
HAVE_ETCD=0; has etcd && HAVE_ETCD=1

if [ "$SKIP_BUILD" != 1 ]; then
  say "== building (release): jessy, jessy-api, the axum and net/http baselines"
  (cd "$ROOT" && cargo build --release --locked -p jessy)
  (cd "$ROOT/api" && go build -o bin/jessy-api .)
  (cd "$HERE/baseline" && cargo build --release --locked)
  (cd "$HERE/baseline-go" && go build -o bin/jessy-http-baseline-go .)
fi
for bin in "$JESSY" "$JESSY_API" "$BASELINE" "$BASELINE_GO"; do [ -x "$bin" ] || die "$bin is missing; run without SKIP_BUILD=1"; done

# Measure at a higher priority than the rest of the machine (the build above ran at the usual one).
if [ "$NICE" != 0 ] && [ "$(id -u)" = 0 ] && [ -z "${BENCH_HTTP_NICED:-}" ]; then
  export BENCH_HTTP_NICED=$NICE SKIP_BUILD=1
  exec nice -n "$NICE" bash "$0" "$@"
fi
NICED=${BENCH_HTTP_NICED:-0}

PREFIX_NAME=jessy-bench-http
# shellcheck source=benches/http/common.sh
source "$HERE/common.sh"

# wait_for NAME COMMAND...: retries COMMAND for up to 30 s.
wait_for() {
  local name=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$name did not come up; its log is in $TMP (kept: see below)"
}

wanted() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

# ---- start everything ------------------------------------------------------------------------
P_BASE=$(free_port); P_BASE_GO=$(free_port); P_CORE=$(free_port); P_QUIET=$(free_port); P_API=$(free_port)
say "== starting services in $TMP"
"$BASELINE" "127.0.0.1:$P_BASE" >"$TMP/baseline.log" 2>&1 &
PIDS+=($!)
"$BASELINE_GO" "127.0.0.1:$P_BASE_GO" >"$TMP/baseline-go.log" 2>&1 &
PIDS+=($!)
MMAP_BASE_PATH=$TMP/jessy JESSY_ADDR=127.0.0.1:$P_CORE JESSY_DURABILITY=immediate RUST_LOG=$JESSY_LOG \
  "$JESSY" serve >"$TMP/jessy.log" 2>&1 &
PIDS+=($!)
MMAP_BASE_PATH=$TMP/jessy-quiet JESSY_ADDR=127.0.0.1:$P_QUIET JESSY_DURABILITY=immediate RUST_LOG=warn \
  "$JESSY" serve >"$TMP/jessy-quiet.log" 2>&1 &
PIDS+=($!)
JESSY_API_ADDR=127.0.0.1:$P_API JESSY_CORE_URL=http://127.0.0.1:$P_CORE \
  "$JESSY_API" >"$TMP/jessy-api.log" 2>&1 &
PIDS+=($!)
wait_for baseline curl -sf "http://127.0.0.1:$P_BASE/v1/dimensions/default/keys/x"
wait_for baseline-go curl -sf "http://127.0.0.1:$P_BASE_GO/v1/dimensions/default/keys/x"
wait_for jessy-core curl -sf "http://127.0.0.1:$P_CORE/health"
wait_for jessy-core-quiet curl -sf "http://127.0.0.1:$P_QUIET/health"
wait_for jessy-api curl -sf "http://127.0.0.1:$P_API/api/health"

if [ "$HAVE_REDIS" = 1 ]; then
  P_REDIS=$(free_port); P_AOF=$(free_port)
  mkdir -p "$TMP/redis" "$TMP/redis-aof"
  redis-server --bind 127.0.0.1 --port "$P_REDIS" --dir "$TMP/redis" --save '' --appendonly no \
    --logfile "$TMP/redis.log" &
  PIDS+=($!)
  redis-server --bind 127.0.0.1 --port "$P_AOF" --dir "$TMP/redis-aof" --save '' --appendonly yes \
    --appendfsync always --logfile "$TMP/redis-aof.log" &
  PIDS+=($!)
  wait_for redis redis-cli -p "$P_REDIS" ping
  wait_for redis-aof redis-cli -p "$P_AOF" ping
fi

if [ "$HAVE_ETCD" = 1 ]; then
  P_ETCD=$(free_port); P_PEER=$(free_port)
  etcd --name bench --data-dir "$TMP/etcd" \
    --listen-client-urls "http://127.0.0.1:$P_ETCD" --advertise-client-urls "http://127.0.0.1:$P_ETCD" \
    --listen-peer-urls "http://127.0.0.1:$P_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$P_PEER" \
    --initial-cluster "bench=http://127.0.0.1:$P_PEER" --max-txn-ops 1000 --logger zap --log-level warn \
    >"$TMP/etcd.log" 2>&1 &
  PIDS+=($!)
  wait_for etcd curl -sf "http://127.0.0.1:$P_ETCD/health"
fi

say "== preloading $KEYS keys (150-byte values)"
python3 "$HERE/preload.py" jessy "http://127.0.0.1:$P_CORE" "$KEYS"
python3 "$HERE/preload.py" jessy "http://127.0.0.1:$P_QUIET" "$KEYS"
[ "$HAVE_REDIS" = 1 ] && python3 "$HERE/preload.py" redis "$P_REDIS" "$KEYS"
[ "$HAVE_ETCD" = 1 ] && python3 "$HERE/preload.py" etcd "http://127.0.0.1:$P_ETCD" "$KEYS"
sync

# ---- measuring -------------------------------------------------------------------------------
RESULTS=$TMP/results.tsv
printf 'name\trun\trps\tp50_ms\tp99_ms\tnon2xx\terrors\tload1\n' >"$RESULTS"
load1() { cut -d' ' -f1 /proc/loadavg; }
# Forty seconds of reads leave 100 MB and more of access log in the disk's write cache; without
# this the first durable write of the next workload waited for all of it (a 300 ms stall).
settle() { if [ "$SETTLE" = 1 ]; then sync; fi; }

# wrk_run NAME RUN URL MODE PREFIX [DURATION [CONNECTIONS]]
wrk_run() {
  local name=$1 run=$2 url=$3 mode=$4 prefix=$5 duration=${6:-$DURATION} conns=${7:-$CONNS} load out line threads
  threads=$((THREADS < conns ? THREADS : conns))
  settle
  load=$(load1)
  out=$(MODE=$mode PREFIX=$prefix KEYS=$KEYS wrk -t"$threads" -c"$conns" -d"$duration" --timeout 10s \
    -s "$HERE/bench.lua" "$url") || die "wrk failed for $name: $out"
  line=$(grep '^RESULT ' <<<"$out") || die "no RESULT line from wrk for $name: $out"
  [ "$run" = warmup ] && return 0
  # RESULT requests=N seconds=S rps=R p50_ms=A p99_ms=B non2xx=C errors=D
  python3 - "$name" "$run" "$load" "$line" >>"$RESULTS" <<'EOF'
import sys
name, run, load, line = sys.argv[1:]
f = dict(kv.split("=") for kv in line.split()[1:])
print("\t".join([name, run, f["rps"], f["p50_ms"], f["p99_ms"], f["non2xx"], f["errors"], load]))
EOF
  say "  $(printf '%-22s' "$name") run $run: $(cut -d' ' -f4-9 <<<"$line")"
}

# redis_run NAME RUN PORT TEST: redis-benchmark for about DURATION (its -n is calibrated once).
declare -A REDIS_N=()
redis_run() {
  local name=$1 run=$2 port=$3 test=$4 load n csv secs
  secs=${DURATION%s}
  if [ -z "${REDIS_N[$name]:-}" ]; then
    csv=$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CONNS" -n 20000 -r "$KEYS" -d 150 -t "$test" --csv | tail -1)
    REDIS_N[$name]=$(python3 -c 'import sys; print(max(20000, int(float(sys.argv[1].split(",")[1].strip(chr(34))) * int(sys.argv[2]))))' "$csv" "$secs")
  fi
  n=${REDIS_N[$name]}
  settle
  load=$(load1)
  csv=$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CONNS" -n "$n" -r "$KEYS" -d 150 -t "$test" --csv | tail -1)
  # "SET","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  python3 - "$name" "$run" "$load" "$csv" >>"$RESULTS" <<'EOF'
import sys
name, run, load, csv = sys.argv[1:]
f = [c.strip('"') for c in csv.split(",")]
print("\t".join([name, run, f[1], f[4], f[6], "0", "0", load]))
EOF
  say "  $(printf '%-22s' "$name") run $run: rps=${csv#*,}"
}

CORE=http://127.0.0.1:$P_CORE
# bench RUN [DURATION]: one round of every wanted workload.
bench() {
  local run=$1 d=${2:-$DURATION}
  wanted baseline-get && wrk_run baseline-get "$run" "http://127.0.0.1:$P_BASE" get /v1 "$d"
  # The ceiling of any process built on net/http's server here, the gateway included.
  wanted baseline-go-get && wrk_run baseline-go-get "$run" "http://127.0.0.1:$P_BASE_GO" get /v1 "$d"
  wanted core-get && wrk_run core-get "$run" "$CORE" get /v1 "$d"
  wanted core-get-warn && wrk_run core-get-warn "$run" "http://127.0.0.1:$P_QUIET" get /v1 "$d"
  wanted gateway-get && wrk_run gateway-get "$run" "http://127.0.0.1:$P_API" get /api/v1 "$d"
  # One connection: the latency of the extra hop itself, without queueing.
  wanted core-get-1conn && wrk_run core-get-1conn "$run" "$CORE" get /v1 "$d" 1
  wanted gateway-get-1conn && wrk_run gateway-get-1conn "$run" "http://127.0.0.1:$P_API" get /api/v1 "$d" 1
  wanted core-scan100 && wrk_run core-scan100 "$run" "$CORE" scan /v1 "$d"
  wanted core-put-immediate && wrk_run core-put-immediate "$run" "$CORE" put /v1 "$d"
  if [ "$HAVE_REDIS" = 1 ] && [ "$run" != warmup ]; then
    wanted redis-get && redis_run redis-get "$run" "$P_REDIS" get
    wanted redis-set && redis_run redis-set "$run" "$P_REDIS" set
    wanted redis-set-aof-always && redis_run redis-set-aof-always "$run" "$P_AOF" set
  fi
  if [ "$HAVE_ETCD" = 1 ]; then
    wanted etcd-get && wrk_run etcd-get "$run" "http://127.0.0.1:$P_ETCD" etcd-get '' "$d"
    wanted etcd-range100 && wrk_run etcd-range100 "$run" "http://127.0.0.1:$P_ETCD" etcd-range '' "$d"
    wanted etcd-put && wrk_run etcd-put "$run" "http://127.0.0.1:$P_ETCD" etcd-put '' "$d"
  fi
  return 0
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
say "== load average before: $LOAD_BEFORE ($(nproc) cores); warming up (2 s each)"
bench warmup 2s
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
for run in $(seq "$RUNS"); do
  say "== round $run of $RUNS ($CONNS connections, $DURATION each)"
  bench "$run"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

mkdir -p "$HERE/results"
python3 "$HERE/summarize.py" "$RESULTS" \
  --started "$STARTED" --load-before "$LOAD_BEFORE" --load-after "$LOAD_AFTER" \
  --conns "$CONNS" --threads "$THREADS" --duration "$DURATION" --runs "$RUNS" --keys "$KEYS" \
  --redis "$HAVE_REDIS" --etcd "$HAVE_ETCD" --jessy-log "$JESSY_LOG" --nice "$NICED" --settle "$SETTLE" | tee "$HERE/results/last.md"
cp "$RESULTS" "$HERE/results/last.tsv"
