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
# Usage: benches/callgrind.sh        (N1=2000 N2=12000)
#        OUT=file benches/callgrind.sh
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
N1="${N1:-2000}"
N2="${N2:-12000}"
CASES=(bare ratelimit error_budget deadline bulkhead retry breaker palisade
    tower_ratelimit tower_timeout tower_concurrency tower_retry tower)

command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }
(cd "$REPO_DIR" && cargo build --quiet --release --features full --example callgrind_harness --example bench_server)
HARNESS="$TARGET_DIR/release/examples/callgrind_harness"
SERVER="$TARGET_DIR/release/examples/bench_server"
mkdir -p "$TARGET_DIR"
tmp="$(mktemp -d "$TARGET_DIR/bench-callgrind.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

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

python3 - "$tmp/results" "$N1" "$N2" "$tmp/http" <<'PY' | tee "${OUT:-/dev/null}"
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
print("A whole request through the bench server's router: request built, routed through "
      "the stack, handler, response body read. No socket: hyper and the kernel are left out.")
PY
