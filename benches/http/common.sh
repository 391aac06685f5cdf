# benches/http/common.sh: sourced by run.sh and cpu.sh. A scratch folder and the processes
# started in it, both cleaned up on any exit (Ctrl-C included), and free loopback ports.
# Set PREFIX_NAME before sourcing: the scratch folder's name prefix.

TMP=$(mktemp -d "${TMPDIR:-/tmp}/${PREFIX_NAME:-jessy-bench}.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    # Give each a few seconds to stop cleanly (jessy syncs its store), then insist.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
