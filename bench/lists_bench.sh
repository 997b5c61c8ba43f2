#!/usr/bin/env bash
# Load + index benchmark for the foundation (issue 3): loads a 1,000,000-domain
# list built from ../shared/data/blocklists and reports load time, index heap
# and process RSS, as `gatehouse lists stats --json` measures them, then runs the
# Go benchmarks for the load and the policy decision.
# Usage: bench/lists_bench.sh [RUNS]   (default 5 runs; prints the median)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
go build -o "$OUT/gatehouse" .
# Build the 1M mix once (same recipe as shared/bench/gen_data.py).
LIST=$(go run ./bench/cmd/mix1m)
cat >"$OUT/bench.yaml" <<YAML
database: $OUT/gatehouse.db
lists:
  - name: bench-1m
    path: $LIST
    category: pornography
YAML
echo "list: $LIST ($(wc -l <"$LIST") lines)"
printf 'run\tload_s\tindex_heap_mib\trss_mib\tdomains\n'
for i in $(seq 1 "$RUNS"); do
  "$OUT/gatehouse" lists stats --json --config "$OUT/bench.yaml" >"$OUT/stats.json"
  python3 - "$OUT/stats.json" "$i" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]}\t{s['load_seconds']:.3f}\t{s['index_heap_bytes']/2**20:.1f}\t{s['rss_bytes']/2**20:.1f}\t{s['domains']}")
PY
done | tee "$OUT/runs.tsv"
python3 - "$OUT/runs.tsv" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l.strip()]
print("median\t" + "\t".join(f"{statistics.median(float(r[i]) for r in rows):.3f}" for i in (1, 2, 3)))
PY
echo
go test -run '^$' -bench 'Load1M|Decide|Lookup|Baseline' -benchmem -count 3 ./blocklists/ ./policy/
