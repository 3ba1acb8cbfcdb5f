#!/usr/bin/env bash
# Scrapes /metrics of a real demo server: starts the demo (debug build, all features:
# what `cargo test --workspace --all-features` already compiled) on a free
# loopback port without its load driver, sends it a few requests (one client over its
# rate limit, so refusals show too), saves the /metrics text to FILE and stops the demo.
#
# Usage: bash ops/scrape-demo.sh FILE      (then: bash ops/check.sh FILE)
# Needs curl. The demo is killed when this script exits, whatever happens.
set -euo pipefail
out="${1:?usage: ops/scrape-demo.sh FILE}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --all-features --example demo
log="$(mktemp)"
PORT=0 "${CARGO_TARGET_DIR:-target}/debug/examples/demo" --no-load --duration 0 >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT

addr=""
for _ in $(seq 1 300); do
    addr="$(sed -n 's/^listening on \(http:\/\/[0-9.:]*\).*/\1/p' "$log" | head -n 1)"
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "the demo exited early" >&2; exit 1; }
    sleep 0.1
done
[ -n "$addr" ] || { cat "$log" >&2; echo "the demo did not announce its address in 30 s" >&2; exit 1; }

for i in $(seq 1 40); do
    curl -s -o /dev/null --max-time 5 -H "x-client-id: scrape-$((i % 2))" "$addr/api/quote"
done
curl -s -o /dev/null --max-time 5 "$addr/health/ready" || true
curl -sf --max-time 10 "$addr/metrics" >"$out"
echo "scraped $(grep -c '^palisade_' "$out") palisade_ samples from $addr/metrics into $out"
