#!/usr/bin/env bash
# Overload: a backend of fixed capacity C = N / S (N workers, S seconds per call)
# offered about 0.25×, 2× and 4× C by wrk on 127.0.0.1, for bare, the Palisade stack
# and tower's stack, modes interleaved over several rounds. Prints a Markdown table of
# medians: goodput (2xx per second) and its share of C, p99 of successes (timed by the
# server), the share of requests refused fast (429/503) and how fast, and timeouts
# (504s and wrk's own 2 s socket timeouts).
#
# Usage: benches/overload.sh    (ROUNDS=2 DURATION=8 WORKERS=16 SERVICE_MS=20 THINK_MS=200)
#        OUT=file benches/overload.sh
#
# How the offered load is set. wrk is closed-loop: a connection sends its next request
# only after the previous answer, and wrk2's open-loop `--rate` is not in Debian. Each
# connection therefore pauses THINK_MS before every request (wrk_status.lua's
# `delay`), and offers at most 1 / (THINK + latency) requests per second; K connections
# offer K / (THINK + latency). K is chosen so that, at the unloaded latency S,
# K / (THINK + S) is the wanted multiple of C. Limits, stated plainly:
# - the offer falls as latency rises: a server that answers slowly (bare, queueing
#   without bound) sees less than the nominal offer (K / (THINK + L)), and its
#   throughput cannot fall below C while its queue absorbs the rest, so bare's goodput
#   stays near C and what overload costs it shows up as latency, not lost goodput;
# - a server that refuses fast sees nearly the full nominal offer;
# - the answered rate (all statuses) is printed next to the nominal one.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-8}"
WORKERS="${WORKERS:-16}"
SERVICE_MS="${SERVICE_MS:-20}"
THINK_MS="${THINK_MS:-200}"
MODES=(bare palisade tower)
LOADS=(0.25 2 4)

capacity=$((WORKERS * 1000 / SERVICE_MS))
rate=$((capacity * 3 / 2))
common=(--threads 1 --workers "$WORKERS" --service-ms "$SERVICE_MS" --stats)
args_bare=()
# Admit at most 1.5 C per second (429 beyond), N calls at once, N/2 waiting at most
# S/2 each (503 beyond), 1 s deadline (504).
args_palisade=(--rate "$rate" --max-queue $((WORKERS / 2)) --max-wait-ms $((SERVICE_MS / 2)) --deadline-ms 1000)
# tower: RateLimit delays (it cannot refuse), LoadShed refuses when N calls run.
args_tower=(--rate "$rate" --deadline-ms 1000)

ensure_wrk
build_server
results="$SERVER_LOG_DIR/overload.tsv"
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
    for load in "${LOADS[@]}"; do
        conns="$(python3 -c "print(max(1, round($load * $capacity * ($THINK_MS + $SERVICE_MS) / 1000)))")"
        for i in "${!MODES[@]}"; do
            mode="${MODES[$(((i + round) % ${#MODES[@]}))]}"
            extra="args_${mode}[@]"
            start_server "$mode" "${common[@]}" "${!extra}"
            export WRK_THINK_MS="$THINK_MS"
            run_wrk -t1 -c"$conns" -d2s --timeout 2s "$SERVER_URL/" >/dev/null
            curl -fsS "$SERVER_URL/stats?reset" >/dev/null
            line="$(run_wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 2s "$SERVER_URL/")"
            stats="$(curl -fsS "$SERVER_URL/stats")"
            stop_server
            echo "round $round load ${load}x $mode c=$conns: $line | $stats" >&2
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$load" "$mode" "$conns" "$line" "$stats" >>"$results"
        done
    done
done

python3 - "$results" "$capacity" "$WORKERS" "$SERVICE_MS" "$THINK_MS" <<'PY' | tee "${OUT:-/dev/null}"
import statistics, sys
path, cap, workers, service_ms, think_ms = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
runs = {}
for raw in open(path):
    rnd, load, mode, conns, line, stats = raw.rstrip("\n").split("\t")
    kv = dict(p.split("=") for p in line.split()[1:])
    kv.update(dict(p.split("=") for p in stats.split()))
    secs = int(kv["duration_us"]) / 1e6
    n = int(kv["requests"])
    fast = int(kv["s429"]) + int(kv["s503"])
    timeouts = int(kv["s504"]) + int(kv["timeouts"])
    runs.setdefault((load, mode), []).append({
        "conns": int(conns),
        "answered": n / secs,
        "goodput": int(kv["s2xx"]) / secs,
        "ok_p99": int(kv["ok_p99_us"]) / 1000,
        "fast": fast / max(n + int(kv["timeouts"]), 1),
        "refused_p99": int(kv["refused_p99_us"]) / 1000 if fast else None,
        "timeouts": timeouts / max(n + int(kv["timeouts"]), 1),
        "hold_us": int(kv["backend_mean_us"]),
    })
med = lambda rs, k: statistics.median(r[k] for r in rs)
hold = statistics.median(r["hold_us"] for rs in runs.values() for r in rs if r["hold_us"])
eff = int(workers) * 1e6 / hold
print(f"Nominal capacity C = {workers} workers / {service_ms} ms = {cap}/s. Measured: a backend call "
      f"holds its worker {hold / 1000:.2f} ms (tokio's timer rounds sleeps up to its 1 ms tick), so "
      f"the real capacity is C' = {eff:,.0f}/s; goodput is shown against C'. "
      f"Think time: exponential, mean {think_ms} ms.")
print()
print("| offered | mode | connections | answered/s | goodput/s | goodput / C' | p99 of successes | vs unloaded | refused fast (429/503) | p99 of refusals | timeouts (504 + socket) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for load in ["0.25", "2", "4"]:
    for mode in ["bare", "palisade", "tower"]:
        rs = runs.get((load, mode))
        if not rs:
            continue
        base = runs.get(("0.25", mode))
        p99 = med(rs, "ok_p99")
        rel = f"{p99 / med(base, 'ok_p99'):.2f}×" if base else "—"
        rp = [r["refused_p99"] for r in rs if r["refused_p99"] is not None]
        rp = f"{statistics.median(rp):.2f} ms" if rp else "—"
        print(f"| {load}× C | {mode} | {rs[0]['conns']} | {med(rs, 'answered'):,.0f} | {med(rs, 'goodput'):,.0f} "
              f"| {med(rs, 'goodput') / eff:.1%} | {p99:.1f} ms | {rel} | {med(rs, 'fast'):.1%} | {rp} | {med(rs, 'timeouts'):.1%} |")
print()
print(f"Medians of {len(next(iter(runs.values())))} rounds; p99s timed by the server (handler entry to answer), "
      "shares of all requests wrk sent.")
PY
