#!/usr/bin/env bash
# DNS benchmark for the filtering resolver (issue 4): builds gatehouse,
# writes a bench config that blocks a 1,000,000-domain list built from
# ../shared/data/blocklists (go run ./bench/cmd/mix1m) and runs the shared
# peer harness (../shared/bench/dns_bench.sh) with Gatehouse as `custom`,
# so that the bare miekg/dns ceiling ("limit") is measured in the same run.
# Everything stays on 127.0.0.1; the harness's upstream is 127.0.0.1:5399.
#
# Needs: apt-get install -y dnsperf bind9-dnsutils bc; in ../shared/bench:
# go build -o /tmp/gatehouse-peers/bin/ ./cmd/limitdns && python3 gen_data.py
# Usage: bench/dns_bench.sh [TARGET...]   (default: limit custom; peers: blocky coredns)
# Env passes through to the harness: DUR, RUNS, QPS_P99. MEMLIMIT sets
# dns.memory_limit_mib in the bench config (default 0: Go's default GC).
set -euo pipefail
[ $# -gt 0 ] || set -- limit custom
cd "$(dirname "$0")/.."
HARNESS=${HARNESS:-$(cd .. && pwd)/shared/bench}
PORT=${DNS_PORT:-5354}
OUT=${OUT:-/tmp/gatehouse-dns-bench}
mkdir -p "$OUT"
go build -o "$OUT/gatehouse" .
LIST=$(go run ./bench/cmd/mix1m)
cat >"$OUT/bench.yaml" <<YAML
database: $OUT/gatehouse.db
log:
  level: warn
admin:
  listen: 127.0.0.1:19153
dns:
  listen: ["127.0.0.1:$PORT"]
  upstreams: ["127.0.0.1:5399"]
  health_check: 0s
  memory_limit_mib: ${MEMLIMIT:-0}
  # dnsperf sends everything from one address: no per-client limit here.
  rate_limit:
    qps: 0
lists:
  - name: bench-1m
    path: $LIST
    category: pornography
YAML
"$OUT/gatehouse" config check "$OUT/bench.yaml"
TARGET_CMD="$OUT/gatehouse serve --config $OUT/bench.yaml" DNS_PORT=$PORT \
  "$HARNESS/dns_bench.sh" "$@"
