#!/usr/bin/env bash
# `make run`: jessy-core and jessy-api on loopback, no Docker. Ctrl-C stops both.
# Settings come from the environment (see .env.example); the defaults are the contract's.
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

"$JESSY" serve &
pids+=($!)
for _ in $(seq 1 100); do
    if curl -fsS "http://$JESSY_ADDR/health" >/dev/null 2>&1; then break; fi
    if ! kill -0 "${pids[0]}" 2>/dev/null; then echo "jessy-core did not start" >&2; exit 2; fi
    sleep 0.1
done
"$JESSY_API" &
pids+=($!)
echo "jessy-core  http://$JESSY_ADDR      (data: $MMAP_BASE_PATH)" >&2
echo "jessy-api   http://$JESSY_API_ADDR/api/health    Ctrl-C stops both" >&2
wait -n "${pids[@]}"
