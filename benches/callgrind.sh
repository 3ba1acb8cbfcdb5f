#!/usr/bin/env bash
# Instruction counts per call (valgrind's callgrind) for each layer's hot path, the
# full Palisade stack and tower's built-ins: steady on a noisy machine, so a regression
# shows even where wall-clock figures wander.
#
# Each case of examples/callgrind_harness.rs runs twice, with N1 and N2 calls; the
# difference divided by N2 - N1 is the instructions per call (start-up, recorder and
# runtime set-up cancel out); minus bare's, the layer's overhead. Only instructions run
# inside `run_case` on the calling thread count (`--toggle-collect`): the recorder's
# upkeep thread and anything else that runs while a busy machine slows valgrind down
# do not.
#
# Then a whole HTTP request, in process: `bench_server MODE --in-process N` sends N
# `GET /` requests straight into the bench server's axum router (request built, routed,
# answered, body read; no socket), for bare, the Palisade stack and tower's; only
# `run_requests` counts, at two request counts.
#
# Last, a whole HTTP request over loopback: `bench_server MODE` itself runs under
# callgrind (every thread, user space: hyper, axum, the stack; the kernel is not
# counted), and wrk drives it on 127.0.0.1 for D1 and then D2 seconds (8
# connections); the difference in instructions over the difference in requests wrk
# counted is the figure. It moves by about 1 % (±100 instructions) from run to run,
# with wrk's batching.
#
# Usage: benches/callgrind.sh        (N1=2000 N2=12000, D1=2 D2=8)
#        OUT=file benches/callgrind.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
N1="${N1:-2000}"
N2="${N2:-12000}"
D1="${D1:-2}"
D2="${D2:-8}"
CASES=(bare ratelimit error_budget deadline bulkhead retry breaker palisade
    tower_ratelimit tower_timeout tower_concurrency tower_retry tower)

command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }
ensure_wrk
(cd "$REPO_DIR" && cargo build --quiet --release --features full --example callgrind_harness --example bench_server)
HARNESS="$TARGET_DIR/release/examples/callgrind_harness"
SERVER="$TARGET_DIR/release/examples/bench_server"
mkdir -p "$TARGET_DIR"
tmp="$(mktemp -d "$TARGET_DIR/bench-callgrind.XXXXXX")"
trap 'cleanup_servers; rm -rf "$tmp"' EXIT

count() { # case calls → instructions collected
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out" --toggle-collect='callgrind_harness::stacks::run_case' \
        "$HARNESS" "$1" "$2" 2>"$tmp/err" ||
        { cat "$tmp/err" >&2; exit 1; }
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/err"
}

: >"$tmp/results"
for case in "${CASES[@]}"; do
    a="$(count "$case" "$N1")"
    b="$(count "$case" "$N2")"
    echo "$case: $a @ $N1, $b @ $N2" >&2
    printf '%s %s %s\n' "$case" "$a" "$b" >>"$tmp/results"
done

whole() { # mode requests → instructions per run of run_requests
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out" --toggle-collect='bench_server::run_requests' \
        "$SERVER" "$1" --in-process "$2" 2>"$tmp/err" ||
        { cat "$tmp/err" >&2; exit 1; }
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/err"
}
: >"$tmp/http"
for mode in bare palisade tower; do
    a="$(whole "$mode" "$N1")"
    b="$(whole "$mode" "$N2")"
    echo "http $mode: $a @ $N1, $b @ $N2" >&2
    printf '%s %s %s\n' "$mode" "$a" "$b" >>"$tmp/http"
done

served() { # mode seconds → "instructions requests"
    local log="$tmp/served.log" url="" i
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out" --log-file="$tmp/err" \
        "$SERVER" "$1" --threads 1 --port 0 >"$log" 2>&1 &
    local pid=$!
    SERVER_PIDS+=("$pid")
    for i in $(seq 1 300); do
        url="$(sed -n 's/^listening on \(http:\/\/[^ ]*\).*/\1/p' "$log")"
        [ -n "$url" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$url" ] || { echo "bench_server $1 did not start under valgrind:" >&2; cat "$log" "$tmp/err" >&2; exit 1; }
    local line
    line="$(run_wrk -t1 -c8 -d"$2s" "$url/")"
    # SIGTERM: valgrind writes its counts as the server dies.
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    [ "$(field "$line" s2xx)" = "$(field "$line" requests)" ] ||
        { echo "bench_server $1: non-2xx answers under valgrind: $line" >&2; exit 1; }
    echo "$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/err") $(field "$line" requests)"
}
: >"$tmp/served"
for mode in bare palisade tower; do
    # In this shell, not a `$(…)` subshell: the EXIT trap must see the server's pid.
    served "$mode" "$D1" >"$tmp/a"
    served "$mode" "$D2" >"$tmp/b"
    a="$(cat "$tmp/a")"
    b="$(cat "$tmp/b")"
    echo "served $mode: $a @ ${D1}s, $b @ ${D2}s" >&2
    printf '%s %s %s\n' "$mode" "$a" "$b" >>"$tmp/served"
done

python3 - "$tmp/results" "$N1" "$N2" "$tmp/http" "$tmp/served" <<'PY' | tee "${OUT:-/dev/null}"
import sys
path, n1, n2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
per = {}
for line in open(path):
    case, a, b = line.split()
    per[case] = (int(b) - int(a)) / (n2 - n1)
bare = per["bare"]
peer = {"ratelimit": "tower_ratelimit", "deadline": "tower_timeout", "bulkhead": "tower_concurrency",
        "retry": "tower_retry", "palisade": "tower"}
print("| case | instructions per call | over bare | tower's equivalent (over bare) | ratio |")
print("|---|---|---|---|---|")
for case, v in per.items():
    if case.startswith("tower"):
        continue
    over = v - bare
    if case in peer and peer[case] in per:
        t = per[peer[case]] - bare
        cmp = f"`{peer[case]}` {t:,.0f} | {over / t:.2f}×" if t > 0 else f"`{peer[case]}` {t:,.0f} | —"
    else:
        cmp = "— | —"
    name = "**palisade** (six layers)" if case == "palisade" else f"`{case}`" if case != "bare" else "bare"
    print(f"| {name} | {v:,.0f} | {over:,.0f} | {cmp} |")
print()
print(f"(instructions at {n2} calls − at {n1}) / {n2 - n1}; tower's stack has four layers "
      "(no breaker, no error budget).")
print()
http = {}
for line in open(sys.argv[4]):
    mode, a, b = line.split()
    http[mode] = (int(b) - int(a)) / (n2 - n1)
print("| HTTP request in process (`bench_server --in-process`) | instructions per request | over bare |")
print("|---|---|---|")
for mode in ["bare", "palisade", "tower"]:
    v = http[mode]
    over = v - http["bare"]
    print(f"| {mode} | {v:,.0f} | {'—' if mode == 'bare' else f'{over:,.0f}'} |")
print()
print("A whole request through the bench server's router: request built (with a `Host` "
      "header, as wrk sends), routed through the stack, handler, response body read. No "
      "socket: hyper and the kernel are left out.")
print()
served = {}
for line in open(sys.argv[5]):
    mode, a, ra, b, rb = line.split()
    served[mode] = (int(b) - int(a)) / (int(rb) - int(ra))
print("| HTTP request over loopback (`bench_server` under callgrind, wrk) | instructions per request | over bare | of bare |")
print("|---|---|---|---|")
for mode in ["bare", "palisade", "tower"]:
    v = served[mode]
    over = v - served["bare"]
    if mode == "bare":
        print(f"| {mode} | {v:,.0f} | — | — |")
    else:
        print(f"| {mode} | {v:,.0f} | {over:,.0f} | +{over / served['bare']:.1%} |")
print()
print("The server's user-space instructions (every thread: hyper, axum, the stack) per "
      "request wrk counted, between a short and a long run. The kernel's share of a "
      "request (loopback TCP, about 70 % of the server's CPU time) is not counted.")
PY
