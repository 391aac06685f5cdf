#!/usr/bin/env bash
# `make run`: jessy-core and jessy-api on loopback, no Docker. Ctrl-C stops both.
# Settings come from the environment (see .env.example); the defaults are the contract's.
#
# A service counts as started only when its health URL answers while the process this script
# launched is still running, on an address nothing else was listening on before: otherwise an
# older `make run` (or any server on that port) would answer for a process that has already
# failed. The banner is printed only once both are up; any failure exits 2 with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."

JESSY=${JESSY:-target/release/jessy}
JESSY_API=${JESSY_API:-api/bin/jessy-api}
export MMAP_BASE_PATH=${MMAP_BASE_PATH:-./data/mmap}
export JESSY_ADDR=${JESSY_ADDR:-127.0.0.1:8080}
export JESSY_API_ADDR=${JESSY_API_ADDR:-127.0.0.1:3000}
export JESSY_CORE_URL=${JESSY_CORE_URL:-http://$JESSY_ADDR}

pids=()
stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# True when something accepts connections at the URL's address (curl's status 7: nothing does).
listening() {
    local rc=0
    curl -s -o /dev/null --max-time 2 "$1" 2>/dev/null || rc=$?
    [ "$rc" -ne 7 ]
}

# start NAME ADDR_VAR HEALTH_URL COMMAND...: runs COMMAND in the background and returns once
# HEALTH_URL answers 2xx while it is still running; exits 2 if the address is taken already,
# if the process exits first (its own error is above), or after 30 s.
start() {
    local name=$1 addr_var=$2 url=$3
    shift 3
    if listening "$url"; then
        echo "run-local: something already listens on ${!addr_var} (another \`make run\` or jessy serve?);" \
            "$name was not started. Stop it, or set $addr_var to a free address." >&2
        exit 2
    fi
    "$@" &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            local status=0
            wait "$pid" || status=$?
            echo "run-local: $name exited (status $status) before it was ready; its error is above" >&2
            exit 2
        fi
        if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && kill -0 "$pid" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "run-local: $name (pid $pid) did not answer $url within 30 s" >&2
    exit 2
}

start jessy-core JESSY_ADDR "http://$JESSY_ADDR/health" "$JESSY" serve
start jessy-api JESSY_API_ADDR "http://$JESSY_API_ADDR/api/health" "$JESSY_API"
echo "jessy-core  http://$JESSY_ADDR      (data: $MMAP_BASE_PATH)" >&2
echo "jessy-api   http://$JESSY_API_ADDR/api/health    Ctrl-C stops both" >&2
wait -n "${pids[@]}"
