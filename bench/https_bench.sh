#!/usr/bin/env bash
# Decrypted HTTPS benchmark (issue 15): how fast each proxy serves HTTPS it
# decrypts with the school's CA. Gatehouse (a group with `decrypt: all`, its
# CA from `gatehouse ca init`), squid with `ssl_bump bump all` (Debian's
# squid-openssl, caching off, the SAME CA certificate and key) and, as the
# floor, a bare goproxy MITM with the same CA (bench/cmd/baremitm) run side
# by side. The origin is bench/cmd/tlsorigin on loopback: a 1 KiB page over
# HTTP/2 or HTTP/1.1 with a certificate from a throwaway origin CA that every
# proxy is told to trust (proxy.upstream_ca_file, tls_outgoing_options
# cafile=, -upstream-ca); it also answers the proxies' DNS (A 127.0.0.1).
# bench/cmd/blockload drives one proxy at a time with C clients trusting the
# school's CA, counting only 200s, in two modes:
#   keepalive: each client keeps its decrypted connection (CONNECT once, then
#              GET after GET over it);
#   newconn:   every request on a new connection (CONNECT + TLS handshake with
#              a leaf the proxy already holds: one warm-up request per proxy
#              before the rounds mints it). The client closes the connection
#              after the answer, as a browser does, without sending
#              "Connection: close".
# Runs alternate between targets and modes (RUNS rounds of DUR seconds), so
# a busy machine weighs on all alike; each row is the median-rps run, RSS is
# the largest once-a-second sample under load, CPU is the proxy process's
# user+system time per counted request (squid's certificate helpers are
# separate processes, idle once the leaf is cached).
#
# Needs: apt-get install -y squid-openssl bc curl (squid -v shows
# --with-openssl). Usage: bench/https_bench.sh [TARGET...] (gatehouse
# squid-bump bare-mitm, the default). Env: C (50), DUR (10), RUNS (3),
# MODES ("keepalive newconn"), GATEHOUSE_BIN (a prebuilt binary instead of
# building this tree). Results: CSV in $OUT (/tmp/gatehouse-https-bench).
set -euo pipefail
[ $# -gt 0 ] || set -- gatehouse squid-bump bare-mitm
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gatehouse-https-bench}
C=${C:-50} DUR=${DUR:-10} RUNS=${RUNS:-3} MODES=${MODES:-keepalive newconn}
GH_PORT=3147 SQUID_PORT=3148 BARE_PORT=3149 ORIGIN_PORT=18444 ORIGIN_DNS=127.0.0.1:15398
NAME=origin.bench.example
URL="https://$NAME:$ORIGIN_PORT/"
rm -rf "$OUT" && mkdir -p "$OUT"
go build -o "$OUT/blockload" ./bench/cmd/blockload
go build -o "$OUT/tlsorigin" ./bench/cmd/tlsorigin
go build -o "$OUT/baremitm" ./bench/cmd/baremitm
GH=${GATEHOUSE_BIN:-}
if [ -z "$GH" ]; then go build -o "$OUT/gatehouse" . && GH=$OUT/gatehouse; fi

PIDS=()
trap 'for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null; done' EXIT
"$OUT/tlsorigin" -addr 127.0.0.1:$ORIGIN_PORT -name $NAME -ca "$OUT/origin-ca.pem" -dns $ORIGIN_DNS 2>"$OUT/origin.log" &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$OUT/origin-ca.pem" ] && break; sleep 0.1; done

# Gatehouse: every connection from loopback decrypted; its CA made by
# `gatehouse ca init` is the one every proxy uses.
cat >"$OUT/bench.yaml" <<YAML
database: $OUT/gatehouse.db
log:
  level: warn
admin:
  listen: 127.0.0.1:19166
dns:
  listen: ["127.0.0.1:15366"]
  # tlsorigin answers A 127.0.0.1 for the origin's name.
  upstreams: ["$ORIGIN_DNS"]
  health_check: 0s
proxy:
  listen: 127.0.0.1:$GH_PORT
  connect:
    # The origin is on loopback: refused unless listed (benchmarks only).
    ports: [443, $ORIGIN_PORT]
    ip_networks: [127.0.0.0/8]
  upstream_ca_file: $OUT/origin-ca.pem
groups:
  bench:
    description: benchmark clients on loopback
    networks: [127.0.0.0/8]
    block: []
    decrypt: all
YAML
"$GH" ca init --config "$OUT/bench.yaml" >/dev/null
CA=$OUT/ca/ca.pem KEY=$OUT/ca/ca.key
"$GH" config check "$OUT/bench.yaml" >"$OUT/config-check.txt"

# squid-openssl with ssl_bump, the same CA, caching off.
squid -v | grep -q -- --with-openssl || { echo "squid lacks --with-openssl: apt-get install -y squid-openssl" >&2; exit 1; }
SQ=$OUT/squid && mkdir -p "$SQ"
cp "$CA" "$SQ/ca.pem" && cp "$KEY" "$SQ/ca.key"
echo "127.0.0.1 $NAME" >"$SQ/hosts"
/usr/lib/squid/security_file_certgen -c -s "$SQ/ssl_db" -M 16MB >/dev/null
chown -R proxy:proxy "$SQ" 2>/dev/null || true
cat >"$SQ/squid.conf" <<C
http_port 127.0.0.1:$SQUID_PORT ssl-bump tls-cert=$SQ/ca.pem tls-key=$SQ/ca.key generate-host-certificates=on dynamic_cert_mem_cache_size=16MB
sslcrtd_program /usr/lib/squid/security_file_certgen -s $SQ/ssl_db -M 16MB
sslcrtd_children 5 startup=1 idle=1
ssl_bump bump all
tls_outgoing_options cafile=$OUT/origin-ca.pem
hosts_file $SQ/hosts
acl lo src 127.0.0.0/8
http_access allow lo
http_access deny all
cache deny all
cache_mem 8 MB
access_log none
cache_log $SQ/cache.log
pid_filename $SQ/squid.pid
coredump_dir /tmp
max_filedescriptors 16384
shutdown_lifetime 1 seconds
C

declare -A PID PORT
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null; }
for t in "$@"; do
  case $t in
    gatehouse) PORT[$t]=$GH_PORT; "$GH" serve --config "$OUT/bench.yaml" 2>"$OUT/gatehouse.log" & PID[$t]=$! ;;
    squid-bump) PORT[$t]=$SQUID_PORT; squid -N -f "$SQ/squid.conf" >"$OUT/squid.out" 2>&1 & PID[$t]=$! ;;
    bare-mitm) PORT[$t]=$BARE_PORT; "$OUT/baremitm" -addr 127.0.0.1:$BARE_PORT -cert "$CA" -key "$KEY" \
      -upstream-ca "$OUT/origin-ca.pem" -resolve 127.0.0.1 2>"$OUT/baremitm.log" & PID[$t]=$! ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
  PIDS+=("${PID[$t]}")
done
for t in "$@"; do  # up, decrypting with the school's CA and the leaf cached
  ok=
  for _ in $(seq 1 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$CA" -x "http://127.0.0.1:${PORT[$t]}" "$URL" --max-time 5 || true)
    [ "$code" = 200 ] && { ok=1; break; }
    sleep 0.2
  done
  [ -n "$ok" ] || { echo "$t never answered 200 for $URL through the school's CA (logs in $OUT)" >&2; exit 1; }
  issuer=$(curl -s -v --cacert "$CA" -x "http://127.0.0.1:${PORT[$t]}" "$URL" -o /dev/null 2>&1 | sed -n 's/^\*  issuer: //p')
  echo "$t: 200 through the proxy, leaf issued by: $issuer" >&2
done
sleep 2
declare -A IDLE ROWS PEAK
for t in "$@"; do IDLE[$t]=$(rss_mib "${PID[$t]}"); for m in $MODES; do ROWS[$t.$m]=; PEAK[$t.$m]=0; done; done
load0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "URL $URL; $C clients, ${RUNS} rounds of ${DUR}s; modes $MODES; load average before: $load0" >&2
for r in $(seq 1 "$RUNS"); do
  for m in $MODES; do
    for t in "$@"; do
      p=${PID[$t]}
      ( for _ in $(seq 1 "$DUR"); do sleep 1; rss_mib "$p"; echo; done ) >"$OUT/rss-$t" & sp=$!
      c0=$(cpu_ticks "$p")
      nc=; [ "$m" = newconn ] && nc=-newconn
      line=$("$OUT/blockload" -proxy "http://127.0.0.1:${PORT[$t]}" -url "$URL" -cafile "$CA" -status 200 $nc \
        -mode "$m" -name "$t" -c "$C" -duration "${DUR}s" 2>"$OUT/stderr-$t")
      c1=$(cpu_ticks "$p"); wait $sp || true
      conns=$(sed -n 's/.* \([0-9]*\) connections opened.*/\1/p' "$OUT/stderr-$t")
      rss=$({ grep -v '^$' "$OUT/rss-$t" || true; } | sort -n | tail -1)
      [ "${rss:-0}" -gt "${PEAK[$t.$m]}" ] && PEAK[$t.$m]=$rss
      IFS=, read -r _ _ rps p50 p99 errs body <<<"$line"
      cpu=$(echo "scale=1; ($c1 - $c0) * 10000 / ($rps * $DUR + 1)" | bc)
      echo "round $r $m $t: $rps req/s, p50 $p50 ms, p99 $p99 ms, $errs errors, $conns connections, ${rss} MiB, $cpu µs CPU/req" >&2
      ROWS[$t.$m]+="$rps,$p50,$p99,$errs,$body,$conns,$cpu"$'\n'
    done
  done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
CSV=/tmp/gatehouse-https-$(date -u +%Y%m%d-%H%M%S).csv
{
  echo "# $(date -u '+%F %H:%M UTC'); $(nproc) cores; load average before $load0, after $load1; URL $URL; C=$C DUR=$DUR RUNS=$RUNS"
  echo "target,mode,rps,p50_ms,p99_ms,errors,body_bytes,conns_opened,rss_idle_mib,rss_load_mib,cpu_us_per_req"
  for m in $MODES; do
    for t in "$@"; do
      best=$(printf '%s' "${ROWS[$t.$m]}" | sort -t, -k1 -n | sed -n "$(( (RUNS + 1) / 2 ))p")
      IFS=, read -r rps p50 p99 errs body conns cpu <<<"$best"
      echo "$t,$m,$rps,$p50,$p99,$errs,$body,$conns,${IDLE[$t]},${PEAK[$t.$m]},$cpu"
    done
  done
} | tee "$CSV"
# README-ready summary.
{
  echo
  echo "| target | mode | req/s | p50 ms | p99 ms | RSS idle/load MiB | CPU µs/req |"
  echo "|---|---|---|---|---|---|---|"
  grep -v '^#' "$CSV" | tail -n +2 | awk -F, '{printf "| %s | %s | %s | %s | %s | %s / %s | %s |\n", $1, $2, $3, $4, $5, $9, $10, $11}'
  echo "results: $CSV"
} >&2
