#!/usr/bin/env bash
# HTTP end to end: bench_server bare vs the Palisade stack vs tower's equivalent stack,
# each driven on 127.0.0.1 by wrk for a bounded time, the modes interleaved (and their
# order rotated) over several rounds; prints a Markdown table of the medians:
# throughput, its ratio to bare (paired per round), wrk's p50/p99 latency.
#
# Usage: benches/http.sh            (ROUNDS=5 DURATION=5 CONNS=32 by default)
#        OUT=file benches/http.sh   (also writes the table to file)
#        SERVER_ARGS=--json benches/http.sh   (extra bench_server flags, every mode:
#                                   --json answers the demo's JSON quote)
#        THREADS=2 benches/http.sh  (the server's runtime threads; default 1)
#
# The server gets one runtime thread and wrk one thread, each pinned to a core of its
# own (lib.sh; `PIN=0` leaves placement to the scheduler). With THREADS=2 nothing is
# pinned: the server's threads share the two cores with wrk, as a default tokio
# runtime would.
set -euo pipefail
THREADS="${THREADS:-1}"
[ "$THREADS" -gt 1 ] && PIN=0
source "$(dirname "$0")/lib.sh"

ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-5}"
CONNS="${CONNS:-32}"
MODES=(bare palisade tower)

ensure_wrk
build_server
results="$SERVER_LOG_DIR/http.tsv"
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
    for i in "${!MODES[@]}"; do
        mode="${MODES[$(((i + round) % ${#MODES[@]}))]}"
        # shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
        start_server "$mode" --threads "$THREADS" ${SERVER_ARGS:-}
        # Warm up (connections, allocator, branch predictors), then measure.
        run_wrk -t1 -c"$CONNS" -d1s "$SERVER_URL/" >/dev/null
        line="$(run_wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 2s "$SERVER_URL/")"
        stop_server
        echo "round $round $mode: $line" >&2
        printf '%s\t%s\t%s\n' "$round" "$mode" "$line" >>"$results"
    done
done

python3 - "$results" <<'PY' | tee "${OUT:-/dev/null}"
import statistics, sys
rows = {}
for raw in open(sys.argv[1]):
    rnd, mode, line = raw.rstrip("\n").split("\t")
    kv = dict(p.split("=") for p in line.split()[1:])
    rps = int(kv["requests"]) / (int(kv["duration_us"]) / 1e6)
    bad = int(kv["requests"]) - int(kv["s2xx"])
    rows.setdefault(mode, {})[rnd] = (rps, int(kv["p50_us"]), int(kv["p99_us"]), bad)
bare = rows["bare"]
print("| mode | requests/s (median) | ratio to bare (median of rounds) | p50 | p99 | non-2xx |")
print("|---|---|---|---|---|---|")
for mode in ["bare", "palisade", "tower"]:
    r = rows[mode]
    rps = statistics.median(v[0] for v in r.values())
    ratio = statistics.median(r[k][0] / bare[k][0] for k in r if k in bare)
    p50 = statistics.median(v[1] for v in r.values()) / 1000
    p99 = statistics.median(v[2] for v in r.values()) / 1000
    bad = sum(v[3] for v in r.values())
    print(f"| {mode} | {rps:,.0f} | {ratio:.3f} | {p50:.2f} ms | {p99:.2f} ms | {bad} |")
print()
for mode in ["palisade", "tower"]:
    r = [rows[mode][k][0] / bare[k][0] for k in rows[mode] if k in bare]
    if len(r) > 1:
        se = statistics.stdev(r) / len(r) ** 0.5
        print(f"{mode}: per-round ratios {min(r):.3f}–{max(r):.3f}, mean {statistics.mean(r):.3f} "
              f"with a standard error of {se:.3f}.")
print()
print(f"{len(bare)} rounds, modes interleaved; every round: "
      + ", ".join(f"{m} " + "/".join(f"{rows[m][k][0]:,.0f}" for k in sorted(rows[m])) for m in rows))
PY
