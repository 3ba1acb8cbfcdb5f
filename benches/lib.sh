# Shared by benches/http.sh and benches/overload.sh (sourced, not run).
#
# - ensure_wrk: installs Debian's wrk when missing (apt-get update only if needed).
# - build_server: builds examples/bench_server in release; sets BENCH_SERVER.
# - start_server ARGS…: starts it on 127.0.0.1 (any free port), waits for its
#   `listening on` line, sets SERVER_PID and SERVER_URL. Every server started is
#   killed on exit, whatever the exit.
# - run_wrk ARGS…: wrk with benches/wrk_status.lua; prints its `WRK …` line.
#
# With two or more cores and `taskset` (util-linux), the server runs on CPU 0 and wrk
# on CPU 1 (`PIN=0` turns this off): otherwise the scheduler now and then puts both
# on one core, and a round's throughput moves with where they landed, not with the
# server's code.

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
SERVER_PIDS=()
SERVER_PIN=()
LOAD_PIN=()
if [ "${PIN:-1}" != 0 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER_PIN=(taskset -c 0)
    LOAD_PIN=(taskset -c 1)
fi
# Under the target dir, not /tmp: a test that tidies /tmp must not pull it away mid-run.
mkdir -p "$TARGET_DIR"
SERVER_LOG_DIR="$(mktemp -d "$TARGET_DIR/bench-servers.XXXXXX")"

cleanup_servers() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SERVER_PIDS=()
    rm -rf "$SERVER_LOG_DIR"
}
trap cleanup_servers EXIT
trap 'exit 130' INT TERM

ensure_wrk() {
    command -v wrk >/dev/null && return 0
    echo "wrk not found: installing Debian's wrk" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get install -y wrk >/dev/null 2>&1 ||
        { $sudo apt-get update >/dev/null && $sudo apt-get install -y wrk >/dev/null; }
    command -v wrk >/dev/null || { echo "could not install wrk" >&2; exit 1; }
}

build_server() {
    (cd "$REPO_DIR" && cargo build --quiet --release --features full --example bench_server)
    BENCH_SERVER="$TARGET_DIR/release/examples/bench_server"
    [ -x "$BENCH_SERVER" ] || { echo "no server binary at $BENCH_SERVER" >&2; exit 1; }
}

start_server() {
    local log="$SERVER_LOG_DIR/server.$RANDOM.log"
    "${SERVER_PIN[@]}" "$BENCH_SERVER" "$@" --port 0 >"$log" 2>&1 &
    SERVER_PID=$!
    SERVER_PIDS+=("$SERVER_PID")
    local i
    for i in $(seq 1 100); do
        SERVER_URL="$(sed -n 's/^listening on \(http:\/\/[^ ]*\).*/\1/p' "$log")"
        [ -n "$SERVER_URL" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "bench_server $* did not start:" >&2
    cat "$log" >&2
    exit 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    local keep=() pid
    for pid in "${SERVER_PIDS[@]}"; do
        [ "$pid" != "$SERVER_PID" ] && keep+=("$pid")
    done
    SERVER_PIDS=("${keep[@]}")
}

run_wrk() {
    "${LOAD_PIN[@]}" wrk -s "$BENCH_DIR/wrk_status.lua" "$@" | grep '^WRK '
}

# The value of KEY in a `key=value …` line.
field() {
    local line="$1" key="$2"
    sed -n "s/.*\b$key=\([^ ]*\).*/\1/p" <<<"$line"
}
