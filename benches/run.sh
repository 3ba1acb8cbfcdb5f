#!/usr/bin/env bash
# Runs the whole benchmark suite and rewrites the tables between `<!-- run.sh:NAME -->`
# and `<!-- /run.sh:NAME -->` in BENCHMARKS.md (nothing else in the file is touched):
#
#   stack      benches/stack.rs: bare vs the six-layer Palisade stack vs tower's stack
#   clones     benches/stack.rs: the stack cloned per call (as axum does), counted vs leaked
#   layers     benches/stack.rs: each layer vs tower's built-in, one and two threads
#   criterion  every criterion figure of this run (root benches and each crate's)
#   http       benches/http.sh: wrk, bare vs palisade vs tower
#   overload   benches/overload.sh: 0.25×, 2×, 4× a fixed capacity
#   callgrind  benches/callgrind.sh: instructions per call
#
# Criterion runs short (WARMUP=1 s, MEASURE=3 s per benchmark) so the whole suite stays
# within about 22 minutes on a 2-core machine, builds included. Skip parts with
# SKIP="http overload" (any of: criterion http overload callgrind). With
# CRITERION_SINCE="2026-11-25 00:00" (any date `touch -d` reads) the criterion benches
# are not run again; the tables are made from the figures they wrote since then.
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
WARMUP="${WARMUP:-1}"
MEASURE="${MEASURE:-3}"
SKIP="${SKIP:-}"
# The tables of the last run stay in $TARGET_DIR/bench-results (one file per table).
out="$TARGET_DIR/bench-results"
rm -rf "$out"
mkdir -p "$out"
cd "$REPO_DIR"
skip() { [[ " $SKIP " == *" $1 "* ]]; }
crit=(-- --warm-up-time "$WARMUP" --measurement-time "$MEASURE")

if [ -n "${CRITERION_SINCE:-}" ]; then
    touch -d "$CRITERION_SINCE" "$out/start"
elif ! skip criterion; then
    touch "$out/start"
    sleep 1
    echo "== criterion: root benches" >&2
    cargo bench --quiet --features full --bench stack --bench breaker --bench core --bench request_metrics "${crit[@]}" >&2
    for pair in retry:retry deadline:deadline bulkhead:bulkhead ratelimit:ratelimit slo:slo health:probe; do
        echo "== criterion: palisade-${pair%%:*}" >&2
        cargo bench --quiet -p "palisade-${pair%%:*}" --bench "${pair##*:}" "${crit[@]}" >&2
    done
fi
if [ -e "$out/start" ]; then
    python3 - "$TARGET_DIR/criterion" "$out/start" "$out" <<'PY'
import json, os, sys
root, since = sys.argv[1], os.path.getmtime(sys.argv[2])
out = sys.argv[3]
est = {}
for dirpath, _, files in os.walk(root):
    if os.path.basename(dirpath) == "new" and "estimates.json" in files:
        f = os.path.join(dirpath, "estimates.json")
        if os.path.getmtime(f) < since:
            continue
        bench = json.load(open(os.path.join(dirpath, "benchmark.json")))
        e = json.load(open(f))
        est[bench["full_id"]] = (e["median"]["point_estimate"], bench["group_id"])
fmt = lambda ns: f"{ns / 1000:.2f} µs" if ns >= 10_000 else f"{ns:.1f} ns"
with open(os.path.join(out, "criterion.md"), "w") as w:
    w.write("| benchmark | median time |\n|---|---|\n")
    for k in sorted(est):
        w.write(f"| `{k}` | {fmt(est[k][0])} |\n")
rows = []
for group, suffix, label in [("stack_1_thread", "", "1 thread"), ("stack_2_threads", "/per call", "2 threads, per call per thread")]:
    get = lambda m: est.get(f"{group}/{m}{suffix}", (None,))[0]
    bare, pal, tow = get("bare"), get("palisade"), get("tower")
    if None in (bare, pal, tow):
        continue
    rows.append(f"| {label} | {fmt(bare)} | {fmt(pal)} (+{fmt(pal - bare)}) | {fmt(tow)} (+{fmt(tow - bare)}) | {(pal - bare) / (tow - bare):.2f}× |")
with open(os.path.join(out, "stack.md"), "w") as w:
    w.write("| threads | bare | **palisade**, six layers (overhead) | tower, four layers (overhead) | palisade's overhead / tower's |\n|---|---|---|---|---|\n")
    w.write("\n".join(rows) + "\n")
rows = []
for group, suffix, label in [("stack_clone_per_call", "", "1"), ("stack_clone_per_call_2_threads", "/per call", "2")]:
    get = lambda m: est.get(f"{group}/{m}{suffix}", (None,))[0]
    bare, pal, leak, tow = get("bare"), get("palisade"), get("palisade_leaked"), get("tower_clonable")
    if None in (bare, pal, leak, tow):
        continue
    rows.append(f"| {label} | {fmt(bare)} | {fmt(pal)} (+{fmt(pal - bare)}) | {fmt(leak)} (+{fmt(leak - bare)}) | {fmt(tow)} (+{fmt(tow - bare)}) | {(leak - bare) / (pal - bare):.2f}× |")
if rows:
    with open(os.path.join(out, "clones.md"), "w") as w:
        w.write("| threads | bare | palisade, six counted layers (overhead) | **palisade, leaked** (overhead) | tower, three `Clone` layers (overhead) | leaked / counted overhead |\n|---|---|---|---|---|---|\n")
        w.write("\n".join(rows) + "\n")
pairs = [("ratelimit", "tower_ratelimit"), ("error_budget", None), ("deadline", "tower_timeout"),
         ("bulkhead", "tower_concurrency"), ("retry", "tower_retry"), ("breaker", None)]
rows = []
for group, suffix, label in [("layers_1_thread", "", "1"), ("layers_2_threads", "/per call", "2")]:
    get = lambda m: est.get(f"{group}/{m}{suffix}", (None,))[0]
    bare = get("bare")
    if bare is None:
        continue
    for ours, theirs in pairs:
        p, t = get(ours), get(theirs) if theirs else None
        if p is None:
            continue
        peer = f"`{theirs}` {fmt(t)} (+{fmt(t - bare)})" if t is not None else "—"
        ratio = f"{(p - bare) / (t - bare):.2f}×" if t is not None and t > bare else "—"
        rows.append(f"| `{ours}` | {label} | {fmt(bare)} | {fmt(p)} (+{fmt(p - bare)}) | {peer} | {ratio} |")
if rows:
    with open(os.path.join(out, "layers.md"), "w") as w:
        w.write("| layer | threads | bare | **palisade** (overhead) | tower's built-in (overhead) | palisade's overhead / tower's |\n|---|---|---|---|---|---|\n")
        w.write("\n".join(rows) + "\n")
PY
fi

if ! skip http; then
    echo "== http" >&2
    OUT="$out/http.md" "$BENCH_DIR/http.sh" >/dev/null
fi
if ! skip overload; then
    echo "== overload" >&2
    OUT="$out/overload.md" "$BENCH_DIR/overload.sh" >/dev/null
fi
if ! skip callgrind; then
    echo "== callgrind" >&2
    OUT="$out/callgrind.md" "$BENCH_DIR/callgrind.sh" >/dev/null
fi

python3 - "$REPO_DIR/BENCHMARKS.md" "$out" "$(date -u +%Y-%m-%d)" <<'PY'
import os, re, sys
path, out, day = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(path).read()
for name in ["stack", "clones", "layers", "criterion", "http", "overload", "callgrind"]:
    f = os.path.join(out, f"{name}.md")
    if not os.path.exists(f):
        continue
    body = open(f).read().strip()
    pat = re.compile(rf"(<!-- run\.sh:{name} -->\n)(?:.*?\n)?(<!-- /run\.sh:{name} -->)", re.S)
    if not pat.search(text):
        print(f"BENCHMARKS.md has no run.sh:{name} markers; left alone", file=sys.stderr)
        continue
    text = pat.sub(lambda m: m.group(1) + f"_Last run: {day}, `benches/run.sh`._\n\n" + body + "\n" + m.group(2), text)
    print(f"rewrote the {name} table", file=sys.stderr)
open(path, "w").write(text)
PY
