#!/usr/bin/env bash
# Lints the operations kit with promtool:
#   - promtool check rules ops/prometheus/alerts.yml
#   - promtool test rules ops/prometheus/alerts_test.yml (every alert firing and not)
#   - with a file argument, promtool check metrics < FILE (a scrape of /metrics, e.g.
#     `cargo run --features full --example scrape > scrape.txt`)
#   - the Grafana dashboard parses as JSON
#
# Usage: bash ops/check.sh [SCRAPE_FILE]
# Needs promtool (Debian: `apt-get install prometheus`) and python3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v promtool >/dev/null 2>&1; then
    echo "ops/check.sh: promtool not found; install it with 'apt-get install prometheus'" >&2
    exit 1
fi

promtool check rules "$here/prometheus/alerts.yml"
# Relative rule_files in the test resolve from the test file's directory.
(cd "$here/prometheus" && promtool test rules alerts_test.yml)

python3 -m json.tool "$here/grafana/palisade.json" >/dev/null
echo "grafana/palisade.json: valid JSON"

# Every metric name the dashboard and the alerts use must be one the code registers:
# `palisade_*` names quoted in the crates' sources, `process_*` names listed in
# src/metrics.rs (the metrics-process collector's). Histograms add _bucket/_sum/_count.
python3 - "$here/.." <<'PY'
import pathlib, re, sys
root = pathlib.Path(sys.argv[1])
known = set()
for f in list(root.glob("crates/*/src/**/*.rs")) + list(root.glob("src/**/*.rs")):
    known |= set(re.findall(r'"(palisade_[a-z_]+)"', f.read_text()))
known |= set(re.findall(r'`(process_[a-z_]+)`', (root / "src/metrics.rs").read_text()))
name = re.compile(r'\b(?:palisade|process)_[a-z_]+(?![a-z_:])')
bad = []
for f in ["ops/grafana/palisade.json", "ops/prometheus/alerts.yml", "ops/prometheus/alerts_test.yml"]:
    for used in sorted(set(name.findall((root / f).read_text()))):
        if used.endswith("_"):
            continue  # a prefix in a title: palisade_breaker_*
        base = re.sub(r'_(bucket|sum|count)$', '', used)
        if used not in known and base not in known:
            bad.append(f"{f}: {used}")
if bad:
    sys.exit("metric names no code registers:\n  " + "\n  ".join(bad))
print(f"metric names: all {len(known)} known names checked against the dashboard and alerts")
PY

if [[ $# -ge 1 ]]; then
    scrape="$1"
    if [[ ! -r "$scrape" ]]; then
        echo "ops/check.sh: cannot read $scrape" >&2
        exit 1
    fi
    # promtool prints lint findings and exits non-zero when it has any.
    promtool check metrics < "$scrape"
    echo "$scrape: no lint findings"
fi
