#!/usr/bin/env bash
# HTTP proxy benchmark (issue 8): builds gatehouse, writes a bench config
# that blocks a 1,000,000-domain list built from ../shared/data/blocklists
# (go run ./bench/cmd/mix1m) and runs the shared peer harness
# (../shared/bench/http_bench.sh) with Gatehouse as `custom`, so that bare
# goproxy ("bare") and squid ("squid") are measured in the same run on the
# same workload: keep-alive GETs of a 1 KiB page and new CONNECT+TLS tunnels
# at 50 clients, tunnel throughput, and RSS with 5,000 idle client
# connections. Everything stays on 127.0.0.1 (origin on 18080/18443).
#
# Needs: apt-get install -y squid bc curl; in ../shared/bench:
# go build -o /tmp/gatehouse-peers/bin/ ./cmd/...
# Usage: bench/http_bench.sh [TARGET...]   (default: squid bare custom)
# Env passes through to the harness: C, DUR, RUNS, IDLE.
set -euo pipefail
[ $# -gt 0 ] || set -- squid bare custom
cd "$(dirname "$0")/.."
HARNESS=${HARNESS:-$(cd .. && pwd)/shared/bench}
PORT=${PROXY_PORT:-3132}
OUT=${OUT:-/tmp/gatehouse-http-bench}
mkdir -p "$OUT"
go build -o "$OUT/gatehouse" .
LIST=$(go run ./bench/cmd/mix1m)
cat >"$OUT/bench.yaml" <<YAML
database: $OUT/gatehouse.db
log:
  level: warn
admin:
  listen: 127.0.0.1:19154
dns:
  # The resolver starts too; nothing in this benchmark asks it.
  listen: ["127.0.0.1:15354"]
  upstreams: ["127.0.0.1:5399"]
  health_check: 0s
proxy:
  listen: 127.0.0.1:$PORT
  limits:
    # The harness opens 5,000 idle connections from one address.
    connections: 20000
    per_client: 20000
  connect:
    # The harness's HTTPS origin is 127.0.0.1:18443; loopback is refused
    # unless listed here (for benchmarks only).
    ports: [443, 18443]
    ip_networks: [127.0.0.0/8]
  http:
    # The harness's plain origin is 127.0.0.1:18080.
    ports: [80, 8080, 443, 18080]
    ip_networks: [127.0.0.0/8]
lists:
  - name: bench-1m
    path: $LIST
    category: pornography
YAML
"$OUT/gatehouse" config check "$OUT/bench.yaml"
TARGET_CMD="$OUT/gatehouse serve --config $OUT/bench.yaml" PROXY_PORT=$PORT \
  "$HARNESS/http_bench.sh" "$@"
