#!/usr/bin/env bash
# Fuzzes jessy-core against its own OpenAPI description (GET /openapi.json) with Schemathesis:
# no generated request may get a 5xx; every response must be documented (status, content type,
# headers, schema); requests that break the schema, or lack or fake the bearer token, must be
# refused; a deleted resource must be gone and a created one there; an undocumented method
# must get 405. The server runs with JESSY_API_TOKEN set, so that the token is checked too.
#
# One check is left out, positive_data_acceptance: a request that fits the schema may still be
# refused for what the store holds or what it names (412 for an If-Match that names another
# version, 422 for a value that is not UTF-8 in a utf8 scan, 400 for a made-up scan cursor).
#
#   server/tests/schemathesis.sh [MAX_EXAMPLES]     # default 20 per operation
#
# Installs Schemathesis into target/schemathesis-venv on first use (PyPI), builds the jessy
# binary (debug), serves a fresh temporary store on a free loopback port, runs, stops the
# server with SIGTERM (which must exit 0) and exits with Schemathesis's status.
set -euo pipefail

MAX_EXAMPLES="${1:-20}"
SCHEMATHESIS_VERSION="4.32.5"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/target/schemathesis-venv"
JESSY="$ROOT/target/debug/jessy"

if [ ! -x "$VENV/bin/schemathesis" ] || ! "$VENV/bin/schemathesis" --version | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "schemathesis.sh: installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

(cd "$ROOT" && cargo test --workspace --locked --no-run --quiet) # leaves target/debug/jessy, as make test builds it

WORK="$(mktemp -d)"
LOG="$WORK/jessy.log"
TOKEN="schemathesis-$$"
# Small regions keep generated bodies cheap; durability none keeps the run fast.
MMAP_INITIAL_SIZE=65536 MMAP_MAX_SIZE=1048576 JESSY_DURABILITY=none RUST_LOG=warn,jessy_server::server=info \
  JESSY_API_TOKEN="$TOKEN" "$JESSY" serve --addr 127.0.0.1:0 --data "$WORK/data" >"$LOG" 2>&1 &
PID=$!
stop() {
  if kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" || true; fi
  rm -rf "$WORK"
}
trap stop EXIT

ADDR=""
for _ in $(seq 1 100); do
  ADDR="$(grep -o '"addr":"[^"]*"' "$LOG" | head -n1 | cut -d'"' -f4 || true)"
  [ -n "$ADDR" ] && break
  kill -0 "$PID" 2>/dev/null || { echo "schemathesis.sh: jessy serve died:"; cat "$LOG"; exit 2; }
  sleep 0.1
done
[ -n "$ADDR" ] || { echo "schemathesis.sh: jessy serve did not start:"; cat "$LOG"; exit 2; }
echo "schemathesis.sh: jessy serve on $ADDR (pid $PID), $MAX_EXAMPLES examples per operation"

set +e
# Run from the scratch directory: Schemathesis keeps its example database in ./.schemathesis.
cd "$WORK"
"$VENV/bin/schemathesis" run "http://$ADDR/openapi.json" \
  --header "Authorization: Bearer $TOKEN" \
  --checks all --exclude-checks positive_data_acceptance \
  --max-examples "$MAX_EXAMPLES" \
  --request-timeout 30 \
  --no-color
STATUS=$?
set -e

kill -TERM "$PID"
if ! wait "$PID"; then
  echo "schemathesis.sh: jessy serve did not exit cleanly on SIGTERM; its log:"
  cat "$LOG"
  STATUS=1
fi
if grep -q '"level":"ERROR"' "$LOG"; then
  echo "schemathesis.sh: the server logged errors:"
  grep '"level":"ERROR"' "$LOG" | head -n 20
fi
exit "$STATUS"
