#!/usr/bin/env bash
# Blocked-request benchmark (issue 14): how cheaply each proxy refuses a
# blocked URL. Gatehouse holding the 1,000,000-domain list from
# `go run ./bench/cmd/mix1m`, the shared harness's bare goproxy with the
# million names in a Go map ("bare-list": a 7-byte text/plain 403) and
# squid with the same names as a dstdomain ACL ("squid-list": its HTML
# ERR_ACCESS_DENIED page) run side by side; bench/cmd/blockload drives one
# at a time with C keep-alive clients asking for http://NAME/ (a name on all
# three lists), counting only 403s. Runs alternate between the targets
# (RUNS rounds of DUR seconds each), so a busy machine weighs on all of
# them alike; each target's row is its median-rps run (its median-p99 run
# at a fixed RATE), RSS is the largest of the once-a-second samples taken
# while it was under load. Nothing is resolved or dialled upstream: every
# answer is the proxy's own.
#
# Needs: apt-get install -y squid bc curl; in ../shared/bench:
# go build -o /tmp/gatehouse-peers/bin/ ./cmd/... && python3 gen_data.py
# Usage: bench/http_block_bench.sh [TARGET...]   (gatehouse bare-list squid-list,
# the default; gatehouse-base; squid-list2, a second squid the same in
# every way, for how often squid's p99 is above its own). The run ends with
# each target's p99 over squid-list's, round by round. Env: C (50), DUR (15), RUNS (3),
# BLOCKED_NAME (picked from the lists), GATEHOUSE_BIN (a prebuilt binary
# instead of building this tree), BASE_BIN (another build, run as
# gatehouse-base beside it: a same-run before/after). The target bare-page
# (bench/cmd/barepage) is bare-list answering with a copy of Gatehouse's
# block page and its header fields: the same bytes on the wire, and
# nothing else; it needs the gatehouse target too (its page is copied).
# ACCEPT sets the clients' Accept header: empty (the default) sends none,
# as a tool retrying or an image or script from a page would, and
# Gatehouse answers with its one line of text; ACCEPT=page sends
# Chromium's for a page load, which gets the block page (compare it with
# bare-page). RATE=R fixes the offered load at R requests a second over
# all clients (blockload -rate; latency counted from when each request was
# due): in the default closed loop a faster proxy is asked more, so the
# load tool, which shares the machine with it, is busier and its clients
# wait longer for a CPU; at one RATE every target can sustain, the p99s
# compare the proxies under the same load.
# PIN=1 runs every proxy on CPU 0 and the load tool on CPU 1 (taskset), so
# the load tool's work is not in the proxies' latency: on two cores a
# closed loop otherwise fills both, and the faster proxy's clients wait
# longest for a CPU. (Go sizes GOMAXPROCS from the CPUs it may use: one.)
set -euo pipefail
[ $# -gt 0 ] || set -- gatehouse bare-list squid-list
cd "$(dirname "$0")/.."
BIN=${BIN:-/tmp/gatehouse-peers/bin}
DATA=${DATA:-/tmp/gatehouse-peers/data}
OUT=${OUT:-/tmp/gatehouse-block-bench}
C=${C:-50} DUR=${DUR:-15} RUNS=${RUNS:-3} ACCEPT=${ACCEPT:-} RATE=${RATE:-0} PIN=${PIN:-}
SRV=() LOAD=()
if [ -n "$PIN" ]; then SRV=(taskset -c 0) LOAD=(taskset -c 1); fi
# Ports apart from http_bench.sh's, so both can run on one machine.
GH_PORT=3142 BASE_PORT=3143 BARE_PORT=3139 SQUID_PORT=3140 SQUID2_PORT=3137 PAGE_PORT=3138
mkdir -p "$OUT"
for f in "$BIN/baregoproxy" "$DATA/blocklist-1m.txt.gz" "$DATA/squid-1m.txt"; do
  [ -e "$f" ] || { echo "missing $f: see ../shared/bench/README.md" >&2; exit 1; }
done
go build -o "$OUT/blockload" ./bench/cmd/blockload
go build -o "$OUT/barepage" ./bench/cmd/barepage
GH=${GATEHOUSE_BIN:-}
if [ -z "$GH" ]; then go build -o "$OUT/gatehouse" . && GH=$OUT/gatehouse; fi
LIST=$(go run ./bench/cmd/mix1m)

# A name all three lists block: squid's list keeps only top-most names.
NAME=${BLOCKED_NAME:-}
if [ -z "$NAME" ]; then
  for n in $(head -n 500 "$DATA/blocklist-1m.txt"); do
    if grep -qxF ".$n" "$DATA/squid-1m.txt" && grep -qxF "$n" "$LIST"; then NAME=$n; break; fi
  done
fi
[ -n "$NAME" ] || { echo "no name found on all three lists" >&2; exit 1; }
URL="http://$NAME/"

ghconf() {  # $1 file, $2 proxy port, $3 admin port, $4 DNS port, $5 database
  cat >"$1" <<YAML
database: $5
log:
  level: warn
admin:
  listen: 127.0.0.1:$3
dns:
  # The resolver starts too; nothing in this benchmark asks it.
  listen: ["127.0.0.1:$4"]
  upstreams: ["127.0.0.1:5399"]
  health_check: 0s
proxy:
  listen: 127.0.0.1:$2
lists:
  - name: bench-1m
    path: $LIST
    category: pornography
YAML
  rm -f "$5"*
}
ghconf "$OUT/bench.yaml" $GH_PORT 19164 15364 "$OUT/gatehouse.db"
"$GH" config check "$OUT/bench.yaml" >/dev/null
if [ -n "${BASE_BIN:-}" ]; then
  ghconf "$OUT/base.yaml" $BASE_PORT 19165 15365 "$OUT/base.db"
  "$BASE_BIN" config check "$OUT/base.yaml" >/dev/null
fi

# squid as the shared harness configures it (../shared/bench/http_bench.sh);
# squid-list2 is a second squid with the same list and settings.
squidconf() {  # $1 file, $2 port, $3 name for its log and pid files
cat >"$1" <<C
http_port 127.0.0.1:$2
acl lo src 127.0.0.0/8
acl blocked dstdomain "$DATA/squid-1m.txt"
http_access deny blocked
http_access allow lo
http_access deny all
cache deny all
cache_mem 8 MB
access_log none
cache_log $OUT/$3.log
pid_filename $OUT/$3.pid
coredump_dir /tmp
max_filedescriptors 16384
shutdown_lifetime 1 seconds
C
}
squidconf "$OUT/squid.conf" $SQUID_PORT squid
squidconf "$OUT/squid2.conf" $SQUID2_PORT squid2

PIDS=()
trap 'for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null; done' EXIT
declare -A PID PORT
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null; }
names=()
for t in "$@"; do
  case $t in
    gatehouse) PORT[$t]=$GH_PORT; "${SRV[@]}" "$GH" serve --config "$OUT/bench.yaml" 2>"$OUT/gatehouse.log" & PID[$t]=$! ;;
    gatehouse-base) [ -n "${BASE_BIN:-}" ] || { echo "gatehouse-base needs BASE_BIN" >&2; exit 2; }
      PORT[$t]=$BASE_PORT; "${SRV[@]}" "$BASE_BIN" serve --config "$OUT/base.yaml" 2>"$OUT/base.log" & PID[$t]=$! ;;
    bare-list) PORT[$t]=$BARE_PORT; "${SRV[@]}" "$BIN/baregoproxy" -addr 127.0.0.1:$BARE_PORT -list "$DATA/blocklist-1m.txt.gz" & PID[$t]=$! ;;
    squid-list) PORT[$t]=$SQUID_PORT; "${SRV[@]}" squid -N -f "$OUT/squid.conf" >"$OUT/squid.out" 2>&1 & PID[$t]=$! ;;
    squid-list2) PORT[$t]=$SQUID2_PORT; "${SRV[@]}" squid -N -f "$OUT/squid2.conf" >"$OUT/squid2.out" 2>&1 & PID[$t]=$! ;;
    bare-page) PORT[$t]=$PAGE_PORT; names+=("$t"); continue ;; # started once Gatehouse answers (its page)
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
  PIDS+=("${PID[$t]}"); names+=("$t")
done
for t in "${names[@]}"; do  # a listening port is not a loaded list: wait for a 403
  ok=
  for _ in $(seq 1 1200); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -x "http://127.0.0.1:${PORT[$t]}" "$URL" --max-time 2 || true)
    [ "$code" = 403 ] && { ok=1; break; }
    sleep 0.1
  done
  [ -n "$ok" ] || { echo "$t never answered 403 for $URL" >&2; exit 1; }
  if [[ $t == gatehouse && " ${names[*]} " == *" bare-page "* ]]; then
    curl -s -x "http://127.0.0.1:$GH_PORT" -H "Accept: text/html" "$URL" -o "$OUT/page.html"
    "${SRV[@]}" "$OUT/barepage" -addr 127.0.0.1:$PAGE_PORT -list "$DATA/blocklist-1m.txt.gz" -page "$OUT/page.html" & PID[bare-page]=$!
    PIDS+=("${PID[bare-page]}")
  fi
done
sleep 2
declare -A IDLE ROWS PEAK
for t in "${names[@]}"; do IDLE[$t]=$(rss_mib "${PID[$t]}"); PEAK[$t]=0; ROWS[$t]=; done
load0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "blocked URL $URL; $C clients, rate ${RATE} (0: closed loop), pinned: ${PIN:-no}, ${RUNS} rounds of ${DUR}s; load average before: $load0" >&2
for r in $(seq 1 "$RUNS"); do
  # Each round starts one target further on, so that every target is
  # measured in every place: a target measured right after another pays
  # for what that one still does once its load stops (a collection, its
  # event writer), and one squid measured straight after another was
  # slower in 4 of 5 rounds.
  k=$(( (r - 1) % ${#names[@]} ))
  for t in "${names[@]:k}" "${names[@]:0:k}"; do
    p=${PID[$t]}
    ( for _ in $(seq 1 "$DUR"); do sleep 1; rss_mib "$p"; echo; done ) >"$OUT/rss-$t" & sp=$!
    c0=$(cpu_ticks "$p")
    line=$("${LOAD[@]}" "$OUT/blockload" -proxy "http://127.0.0.1:${PORT[$t]}" -url "$URL" -name "$t" -c "$C" -duration "${DUR}s" -accept "$ACCEPT" -rate "$RATE" 2>"$OUT/stderr-$t")
    c1=$(cpu_ticks "$p"); wait $sp || true
    conns=$(sed -n 's/.* \([0-9]*\) connections opened.*/\1/p' "$OUT/stderr-$t")
    rss=$({ grep -v '^$' "$OUT/rss-$t" || true; } | sort -n | tail -1)
    [ "${rss:-0}" -gt "${PEAK[$t]}" ] && PEAK[$t]=$rss
    IFS=, read -r _ _ rps p50 p99 errs body <<<"$line"
    cpu=$(echo "scale=1; ($c1 - $c0) * 10000 / ($rps * $DUR + 1)" | bc)
    echo "round $r $t: $rps req/s, p50 $p50 ms, p99 $p99 ms, $errs errors, $conns connections, ${rss} MiB, $cpu µs CPU/req" >&2
    ROWS[$t]+="$rps,$p50,$p99,$errs,$body,$conns,$cpu"$'\n'
  done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
CSV=$OUT/block-$(date -u +%Y%m%d-%H%M%S).csv
{
  echo "# $(date -u '+%F %H:%M UTC'); $(nproc) cores; load average before $load0, after $load1; URL $URL; C=$C DUR=$DUR RUNS=$RUNS RATE=$RATE PIN=${PIN:-0}"
  mode=; [ "$RATE" = 0 ] || mode="-rate$RATE"
  echo "target,mode,rps,p50_ms,p99_ms,errors,body_bytes,conns_opened,rss_idle_mib,rss_load_mib,cpu_us_per_req"
  for t in "${names[@]}"; do
    # The median run: by throughput, or at a fixed RATE (every run the
    # same throughput) by p99.
    key=1; [ "$RATE" = 0 ] || key=3
    best=$(printf '%s' "${ROWS[$t]}" | sort -t, -k$key -g | sed -n "$(( (RUNS + 1) / 2 ))p")
    IFS=, read -r rps p50 p99 errs body conns cpu <<<"$best"
    echo "$t,blocked-keepalive$mode,$rps,$p50,$p99,$errs,$body,$conns,${IDLE[$t]},${PEAK[$t]},$cpu"
  done
} | tee "$CSV"
echo "results: $CSV" >&2
# Round by round, how often each target's p99 was at most squid-list's
# (the issue's bound); squid-list2 shows how often squid itself is.
if [[ " ${names[*]} " == *" squid-list "* ]]; then
  for t in "${names[@]}"; do
    [ "$t" = squid-list ] && continue
    paste -d, <(printf '%s' "${ROWS[squid-list]}" | cut -d, -f3) <(printf '%s' "${ROWS[$t]}" | cut -d, -f3) |
      awk -F, -v t="$t" '{ n++; if ($2 <= $1) ok++; r = r sprintf(" %.2f", $2 / $1) }
        END { printf "%s: p99 at most squid-list'"'"'s in %d of %d rounds; p99 / squid-list'"'"'s, round by round:%s\n", t, ok, n, r }' >&2
  done
fi
