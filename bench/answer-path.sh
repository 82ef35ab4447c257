#!/usr/bin/env bash
# The answer path: fleetdns vs Knot DNS side by side, on the same names and the same data.
#
# MODE=full (the default): CPU per query, latency, drops, TCP, workers, table size, queries
# during rebuilds.
#   1. four query mixes at a fixed rate (default 50k q/s): CPU us/query, p50/p99, lost
#   2. saturation (dnsperf -q 1000): q/s, CPU us/query, and UDP drops from the kernel counters
#   3. TCP: dnsperf -m tcp -c 10 (10 long-lived connections)
#   4. UDP workers: fleetdns reuse_port with 1 vs 2 workers, Knot udp-workers 1 vs 2
#   5. fleet size: table build time and RSS for 1k/10k/100k services (examples/table_build.rs)
#   6. queries during rebuilds: fixed rate while one cluster's manifests are rewritten (fleetdns)
#      or the zone is reloaded (Knot), against the same run without
# Every run of 1-4 is repeated ROUNDS times, the servers alternating; bench/summarize_answer_path.py prints
# medians. Output: bench/out/answer-path/.
#
# MODE=quick (--quick): a quick side-by-side. One fleet and one query mix (~80% A, ~10% SRV,
# ~10% NXDOMAIN); answers compared with dig before and after; per server a warm-up, one
# fixed-rate run (default 20k q/s) and one saturation run. --knot-only runs Knot alone (no
# fleetdns binary needed). Output: bench/out/quick/results.md.
#
# See bench/README.md. Everything is written to bench/out/ (gitignored); loopback only.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bench/answer-path.sh [options]     (every option also reads an env var of the same name)
  --quick            the quick side-by-side (see the top of this file)  MODE=quick (full)
  --clusters N       clusters in the fleet                              CLUSTERS  (3)
  --services N       services per cluster                               SERVICES  (1000)
  --rate N           queries/s of the fixed-rate runs                   RATE      (full 50000, quick 20000)
  --duration S       seconds per measured run                           DURATION  (10)
  --outstanding N    dnsperf -q of the saturation runs                  OUTSTANDING (1000)
  --no-build         do not build (use FLEETDNS_BIN, TABLE_BUILD_BIN)   NO_BUILD  (0)
  --server-cpu N / --client-cpu N                                       SERVER_CPU (0) CLIENT_CPU (1)
quick only:
  --sat-verbose      run saturation with dnsperf -v too (p50/p99;       SAT_VERBOSE (0)
                     costs the client ~10% throughput)
  --knot-only        benchmark Knot alone (no fleetdns binary needed)   KNOT_ONLY (0)
  --knot-port P / --fleetdns-port P                                     KNOT_PORT (53531) FLEETDNS_PORT (53532)
env only: full: ROUNDS (3), HEADLESS (1000), NAMESPACES (10), QUERIES (100000), FLEET_SIZES,
  REBUILD_SERVICES, REBUILD_DURATION, PORT_BASE (53540), SKIP (any of "tcp workers size rebuild");
  quick: NAMESPACES (10), QUERIES (200000), WARMUP (2), KNOT_UDP_WORKERS (1); both: FLEETDNS_BIN.
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) MODE=quick; shift ;;
    --clusters) CLUSTERS=$2; shift 2 ;;
    --services) SERVICES=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --outstanding) OUTSTANDING=$2; shift 2 ;;
    --sat-verbose) SAT_VERBOSE=1; shift ;;
    --knot-only) KNOT_ONLY=1; shift ;;
    --no-build) NO_BUILD=1; shift ;;
    --knot-port) KNOT_PORT=$2; shift 2 ;;
    --fleetdns-port) FLEETDNS_PORT=$2; shift 2 ;;
    --server-cpu) SERVER_CPU=$2; shift 2 ;;
    --client-cpu) CLIENT_CPU=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "answer-path.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

MODE=${MODE:-full}
case "$MODE" in
  full)
    RATE=${RATE:-50000}
    QUERIES=${QUERIES:-100000}
    ;;
  quick)
    RATE=${RATE:-20000}
    QUERIES=${QUERIES:-200000}
    ;;
  *) echo "answer-path.sh: MODE must be full or quick, got '$MODE'" >&2; exit 2 ;;
esac
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}             # seconds per measured dnsperf run
OUTSTANDING=${OUTSTANDING:-1000}
CLUSTERS=${CLUSTERS:-3}
SERVICES=${SERVICES:-1000}
HEADLESS=${HEADLESS:-1000}
NAMESPACES=${NAMESPACES:-10}
FLEET_SIZES=${FLEET_SIZES:-"1000 10000 100000"}
REBUILD_SERVICES=${REBUILD_SERVICES:-10000}
REBUILD_DURATION=${REBUILD_DURATION:-10}
NO_BUILD=${NO_BUILD:-0}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT_BASE=${PORT_BASE:-53540}
SKIP=${SKIP:-}                        # e.g. SKIP="size rebuild" while developing
# quick only
SAT_VERBOSE=${SAT_VERBOSE:-0}
WARMUP=${WARMUP:-2}
KNOT_ONLY=${KNOT_ONLY:-0}
KNOT_PORT=${KNOT_PORT:-53531}
FLEETDNS_PORT=${FLEETDNS_PORT:-53532}
KNOT_UDP_WORKERS=${KNOT_UDP_WORKERS:-1}
for v in ROUNDS DURATION RATE OUTSTANDING CLUSTERS SERVICES HEADLESS NAMESPACES QUERIES REBUILD_SERVICES REBUILD_DURATION SERVER_CPU CLIENT_CPU PORT_BASE WARMUP KNOT_PORT FLEETDNS_PORT KNOT_UDP_WORKERS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "answer-path.sh: $v must be a non-negative integer, got '${!v}'" >&2; exit 2; }
done
if [ "$MODE" = full ] && [ "$KNOT_ONLY" = 1 ]; then
  echo "answer-path.sh: --knot-only is for the quick side-by-side (add --quick)" >&2; exit 2
fi

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
if [ "$MODE" = quick ]; then OUT=$BENCH/out/quick; else OUT=$BENCH/out/answer-path; fi
FLEETDNS_BIN=${FLEETDNS_BIN:-$ROOT/target/release/fleetdns}
TABLE_BUILD_BIN=${TABLE_BUILD_BIN:-$ROOT/target/release/examples/table_build}
export PATH="$PATH:/usr/sbin:/sbin"
LOG_TAG=answer-path
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"   # log, die, install_missing, stop_pid, port_free, pin_threads, cpu_ticks, ...
skip() { [[ " $SKIP " == *" $1 "* ]]; }

need_pkgs=()
command -v knotd >/dev/null && command -v knotc >/dev/null || need_pkgs+=(knot)
command -v dnsperf >/dev/null || need_pkgs+=(dnsperf)
command -v dig >/dev/null || need_pkgs+=(dnsutils)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v taskset >/dev/null || need_pkgs+=(util-linux)
install_missing ${need_pkgs[@]+"${need_pkgs[@]}"}
# Knot's package may start a system knotd on port 53; it does not matter, ours use their own ports.
NCPU=$(nproc)
if [ "$MODE" = full ]; then
  [ "$NCPU" -ge 2 ] || die "needs 2 CPUs (server and dnsperf on their own)"
elif [ "$NCPU" -lt 2 ]; then
  log "only $NCPU CPU: server and dnsperf share CPU 0 (numbers will be lower and noisier)"
  SERVER_CPU=0; CLIENT_CPU=0
fi
TICKS=$(getconf CLK_TCK)

PIDS=(); DNSPERF_PID=""; REWRITER_PID=""; SYSCTL_RESTORE=()
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  stop_pid "$DNSPERF_PID" dnsperf
  stop_pid "$REWRITER_PID" rewriter
  for p in ${PIDS[@]+"${PIDS[@]}"}; do stop_pid "$p" server; done
  local kv
  for kv in ${SYSCTL_RESTORE[@]+"${SYSCTL_RESTORE[@]}"}; do sysctl -q -w "$kv" >/dev/null 2>&1 || true; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
SYSCTL_NOTE=""
raise_rmem

if [ "$MODE" = full ]; then
  if [ "$NO_BUILD" != 1 ]; then
    log "cargo build --release -p fleetdns; --example table_build"
    (cd "$ROOT" && cargo build --release -p fleetdns --quiet && cargo build --release -p fleetdns-dns --example table_build --quiet) || die "build failed"
  fi
  [ -x "$FLEETDNS_BIN" ] || die "$FLEETDNS_BIN not found"
elif [ "$KNOT_ONLY" != 1 ]; then
  if [ "$NO_BUILD" != 1 ]; then
    command -v cargo >/dev/null || die "cargo not found (use --no-build with FLEETDNS_BIN, or --knot-only)"
    log "cargo build --release -p fleetdns"
    (cd "$ROOT" && cargo build --release -p fleetdns --quiet) || die "fleetdns build failed"
  fi
  [ -x "$FLEETDNS_BIN" ] || die "$FLEETDNS_BIN not found (build it, or use --knot-only)"
fi
# What was built (recorded now: the tree may change while the benchmark runs).
BUILT="commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- crates || echo ' (+ uncommitted changes in crates/)')"
[ "$NO_BUILD" = 1 ] && BUILT="$FLEETDNS_BIN as found (tree at $BUILT)"

knot_conf() { # dir port udp_workers zones_dir zones_list
  mkdir -p "$1/run" "$1/storage"
  {
    cat <<EOF
server:
    rundir: "$1/run"
    listen: 127.0.0.1@$2
    udp-workers: $3
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$1/storage"
log:
  - target: "$1/knotd.log"
    any: info
template:
  - id: default
    storage: "$4"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
zone:
EOF
    sed 's/^/  - domain: /' "$5"
  } >"$1/knot.conf"
  knotc -c "$1/knot.conf" conf-check >/dev/null || die "invalid $1/knot.conf"
}
# ---------------------------------------------------------------- quick side-by-side
quick_loaded() { # port: the zones answer and every cluster's services are in
  local port=$1 c
  dig @127.0.0.1 -p "$port" +norec +time=1 +tries=1 +short clusterset.local SOA 2>/dev/null | grep -q hostmaster || return 1
  for ((c = 0; c < CLUSTERS; c++)); do
    dig @127.0.0.1 -p "$port" +norec +time=1 +tries=1 +short "svc-0.ns-0.svc.cluster-$c.local" A 2>/dev/null | grep -q '^10\.' || return 1
  done
}
quick_wait_answering() { # name port pid timeout_s
  local name=$1 port=$2 pid=$3 deadline=$((SECONDS + $4))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || return 1
    quick_loaded "$port" && return 0
    sleep 0.5
  done
  return 1
}
quick_compare() { # label
  local rc=0
  if [ "$KNOT_ONLY" = 1 ]; then
    # Knot against itself: checks the comparison machinery only.
    python3 "$BENCH/compare.py" "$OUT/check-names.txt" knot 127.0.0.1 "$KNOT_PORT" knot 127.0.0.1 "$KNOT_PORT" \
      --report "$OUT/compare-$1.txt" >/dev/null || rc=$?
  else
    python3 "$BENCH/compare.py" "$OUT/check-names.txt" knot 127.0.0.1 "$KNOT_PORT" fleetdns 127.0.0.1 "$FLEETDNS_PORT" \
      --report "$OUT/compare-$1.txt" >/dev/null || rc=$?
  fi
  head -1 "$OUT/compare-$1.txt" 2>/dev/null | sed "s/^/[compare $1] /" >&2 || true
  if [ $rc -ne 0 ]; then
    cat "$OUT/compare-$1.txt" >&2 2>/dev/null || true
    die "Knot and fleetdns answer differently ($1); see $OUT/compare-$1.txt"
  fi
  grep -q '^WARNING' "$OUT/compare-$1.txt" && log "comparison warnings: see $OUT/compare-$1.txt" || true
}
QUICK_ROWS=()
QUICK_RCODE_ROWS=()
quick_run_one() { # server pid port mode
  local server=$1 pid=$2 port=$3 mode=$4 file=$OUT/runs/$1-$4.txt args before after
  if [ "$mode" = fixed ]; then
    args=(-Q "$RATE" -c 1 -T 1 -v)
  else
    args=(-q "$OUTSTANDING" -c 1 -T 1)
    [ "$SAT_VERBOSE" = 1 ] && args+=(-v)
  fi
  before=$(cpu_ticks "$pid")
  local s0 c0 s1 c1
  s0=$(cpu_stat "$SERVER_CPU"); c0=$(cpu_stat "$CLIENT_CPU")
  log "$server $mode: dnsperf ${args[*]} -l $DURATION"
  timeout -k 5 $((DURATION + 30)) taskset -c "$CLIENT_CPU" \
    dnsperf -s 127.0.0.1 -p "$port" -d "$OUT/queries.txt" -l "$DURATION" -O suppress=timeouts,congestion "${args[@]}" \
    >"$file" 2>&1 &
  DNSPERF_PID=$!
  wait "$DNSPERF_PID" || { DNSPERF_PID=""; tail -5 "$file" >&2; die "dnsperf failed ($server $mode)"; }
  DNSPERF_PID=""
  after=$(cpu_ticks "$pid")
  s1=$(cpu_stat "$SERVER_CPU"); c1=$(cpu_stat "$CLIENT_CPU")
  kill -0 "$pid" 2>/dev/null || die "$server exited during the $mode run"
  local parsed completed qps lost avg p50 p99 rcodes us
  parsed=$(python3 "$BENCH/parse.py" "$file") || die "cannot parse $file"
  IFS=$'\t' read -r completed qps lost avg p50 p99 rcodes <<<"$parsed"
  us=$(awk -v d=$((after - before)) -v t="$TICKS" -v n="$completed" 'BEGIN { if (n > 0) printf "%.2f", d / t * 1e6 / n; else print "n/a" }')
  QUICK_ROWS+=("| $server | $mode | $qps | $lost | $avg | $p50 | $p99 | $us |")
  # What else ran on the server's CPU during the run (its busy time less the server's own),
  # the hypervisor's steal there, and how busy the client's CPU was (100% = client-bound).
  local other steal client
  read -r other steal < <(other_steal "$s0" "$s1" $((after - before)))
  client=$(cpu_busy_pct "$c0" "$c1")
  QUICK_RCODE_ROWS+=("| $server | $mode | $completed | $rcodes | $(awk -v d=$((after - before)) -v t="$TICKS" 'BEGIN { printf "%.2f", d / t }') | $other | $steal | $client |")
  # Keep dnsperf's summary, drop the per-query lines (they can be hundreds of MB).
  grep -v '^> ' "$file" >"$file.tmp" && mv "$file.tmp" "$file"
  log "$server $mode: $qps q/s, lost $lost %, avg $avg ms, p50 $p50 ms, p99 $p99 ms, $us us CPU/query"
  sleep 1
}
quick_bench_server() { # server pid port
  if [ "$WARMUP" -gt 0 ]; then
    taskset -c "$CLIENT_CPU" timeout -k 5 $((WARMUP + 30)) dnsperf -s 127.0.0.1 -p "$3" -d "$OUT/queries.txt" \
      -l "$WARMUP" -q "$OUTSTANDING" -O suppress=timeouts,congestion >/dev/null 2>&1 || true
    sleep 1
  fi
  quick_run_one "$1" "$2" "$3" fixed
  quick_run_one "$1" "$2" "$3" saturation
}
quick_side_by_side() {
  rm -rf "$OUT"; mkdir -p "$OUT/runs"
  SERIAL=$(date +%s)
  log "generating $CLUSTERS clusters x $SERVICES services"
  python3 "$BENCH/gen.py" --out "$OUT" --clusters "$CLUSTERS" --services "$SERVICES" \
    --namespaces "$NAMESPACES" --queries "$QUERIES" --serial "$SERIAL" \
    --listen "127.0.0.1:$FLEETDNS_PORT" >&2
  knot_conf "$OUT/knot" "$KNOT_PORT" "$KNOT_UDP_WORKERS" "$OUT/knot/zones" "$OUT/knot/zones.list"

  port_free "$KNOT_PORT" || die "127.0.0.1:$KNOT_PORT is in use (set KNOT_PORT)"
  log "starting knotd on 127.0.0.1:$KNOT_PORT (CPU $SERVER_CPU)"
  taskset -c "$SERVER_CPU" knotd -c "$OUT/knot/knot.conf" >"$OUT/knot/stdout.log" 2>&1 &
  KNOT=$!; PIDS+=("$KNOT")
  quick_wait_answering knot "$KNOT_PORT" "$KNOT" 30 || { tail -20 "$OUT/knot/knotd.log" >&2 || true; die "knotd did not answer within 30 s"; }
  pin_threads "$KNOT" "$SERVER_CPU"
  if [ "$KNOT_ONLY" != 1 ]; then
    port_free "$FLEETDNS_PORT" || die "127.0.0.1:$FLEETDNS_PORT is in use (set FLEETDNS_PORT)"
    log "starting fleetdns on 127.0.0.1:$FLEETDNS_PORT (CPU $SERVER_CPU)"
    taskset -c "$SERVER_CPU" "$FLEETDNS_BIN" serve --config "$OUT/fleet/fleetdns.toml" \
      --listen "127.0.0.1:$FLEETDNS_PORT" >"$OUT/fleetdns.log" 2>&1 &
    FLEET=$!; PIDS+=("$FLEET")
    quick_wait_answering fleetdns "$FLEETDNS_PORT" "$FLEET" 120 || { tail -20 "$OUT/fleetdns.log" >&2 || true; die "fleetdns did not answer within 120 s"; }
    pin_threads "$FLEET" "$SERVER_CPU"
  fi

  quick_compare before
  quick_bench_server knot "$KNOT" "$KNOT_PORT"
  [ "$KNOT_ONLY" = 1 ] || quick_bench_server fleetdns "$FLEET" "$FLEETDNS_PORT"
  quick_compare after

  {
    echo "# fleetdns vs Knot DNS (bench/answer-path.sh --quick)"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ); $([ "$KNOT_ONLY" = 1 ] || echo "fleetdns built from $BUILT; ")$NCPU CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')); $(knotd -V 2>&1 | head -1); $(dnsperf -h 2>&1 | grep -m1 Version | sed 's/Version/dnsperf/')"
    echo
    echo "Fleet: $CLUSTERS clusters x $SERVICES services ($NAMESPACES namespaces); query mix ~80% A, ~10% SRV, ~10% NXDOMAIN ($QUERIES-line file, replayed)."
    echo "Fixed: dnsperf -Q $RATE -c 1 -T 1 -v, $DURATION s. Saturation: dnsperf -q $OUTSTANDING -c 1 -T 1$([ "$SAT_VERBOSE" = 1 ] && echo " -v"), no -Q, $DURATION s."
    echo "Server pinned to CPU $SERVER_CPU (every thread), dnsperf to CPU $CLIENT_CPU. Knot: udp-workers $KNOT_UDP_WORKERS, background-workers 1."
    echo
    echo "| server | mode | q/s | lost % | avg ms | p50 ms | p99 ms | CPU µs/query |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${QUICK_ROWS[@]}"
    echo
    echo "Run details: response codes seen by dnsperf (both servers should show the same mix); server CPU seconds;"
    echo "other load on the server's CPU (busy time not spent by the server, %); steal there (%); client CPU busy (%)."
    echo
    echo "| server | mode | completed | response codes | server CPU s | other on server CPU % | steal % | client CPU % |"
    echo "|---|---|---:|---|---:|---:|---:|---:|"
    printf '%s\n' "${QUICK_RCODE_ROWS[@]}"
    echo
    echo "- p50/p99: nearest rank over the per-response latencies of \`dnsperf -v\`; n/a where -v was off."
    echo "- CPU µs/query: (utime+stime of the server process, all threads, /proc/PID/stat) delta over the run x 1e6 / queries completed."
    echo "- lost %: dnsperf counts queries still outstanding when the time limit hits as lost (up to -q at saturation)."
    echo "- Memory after the runs: knotd $(rss_kib "$KNOT") KiB RSS, $(threads "$KNOT") threads$([ "$KNOT_ONLY" = 1 ] || echo "; fleetdns $(rss_kib "$FLEET") KiB RSS, $(threads "$FLEET") threads")."
    echo "- $SYSCTL_NOTE."
    echo "- Answers compared with dig before and after the runs: $(head -1 "$OUT/compare-before.txt"); after: $(head -1 "$OUT/compare-after.txt" | sed 's/^compared [0-9]* questions ([^)]*): //')."
  } >"$OUT/results.md"
  echo
  cat "$OUT/results.md"
}
if [ "$MODE" = quick ]; then
  quick_side_by_side
  exit 0
fi

# ---------------------------------------------------------------- full: fleets
rm -rf "$OUT"; mkdir -p "$OUT/runs"
RESULTS=$OUT/results.tsv
printf 'round\ttest\tserver\tmix\tcompleted\tqps\tlost\tavg_ms\tp50_ms\tp99_ms\tcpu_us\tother_pct\tclient_pct\tsock_drops\tsnmp_inerrors\tsnmp_rcvbuf\trcodes\n' >"$RESULTS"

SERIAL=$(date +%s)
log "generating $CLUSTERS clusters x $SERVICES services + $HEADLESS headless (x$((10)) endpoints)"
python3 "$BENCH/gen.py" --out "$OUT/main" --clusters "$CLUSTERS" --services "$SERVICES" --namespaces "$NAMESPACES" \
  --headless "$HEADLESS" --endpoints 10 --mixes --queries "$QUERIES" --serial "$SERIAL" \
  --listen "127.0.0.1:$PORT_BASE" >&2

fleet_conf() { # base_toml out_toml port reuse_port workers
  sed -e "s|^listen = .*|listen = \"127.0.0.1:$3\"\nreuse_port = $4\nudp_workers = $5|" "$1" >"$2"
}
answers() { # port name: true once the fleet is served
  dig @127.0.0.1 -p "$1" +norec +time=1 +tries=1 +short "$2" A 2>/dev/null | grep -q '^10\.'
}
start_server() { # var kind port cpus config probe_name log
  local var=$1 kind=$2 port=$3 cpus=$4 conf=$5 probe=$6 logf=$7 pid deadline
  port_free "$port" || die "127.0.0.1:$port is in use (set PORT_BASE)"
  if [ "$kind" = knot ]; then
    taskset -c "$cpus" knotd -c "$conf" >"$logf" 2>&1 &
  else
    taskset -c "$cpus" "$FLEETDNS_BIN" serve --config "$conf" >"$logf" 2>&1 &
  fi
  pid=$!; PIDS+=("$pid")
  deadline=$((SECONDS + 180))
  until answers "$port" "$probe"; do
    kill -0 "$pid" 2>/dev/null || { tail -5 "$logf" >&2; die "$kind on $port exited"; }
    [ $SECONDS -lt $deadline ] || die "$kind on $port did not answer in 180 s"
    sleep 0.5
  done
  pin_threads "$pid" "$cpus"
  printf -v "$var" '%s' "$pid"
}

PROBE=svc-0.ns-0.svc.cluster-$((CLUSTERS - 1)).local
P_KNOT=$PORT_BASE; P_FLEET=$((PORT_BASE + 1)); P_KNOT2=$((PORT_BASE + 2)); P_FW1=$((PORT_BASE + 3)); P_FW2=$((PORT_BASE + 4))
knot_conf "$OUT/knot" "$P_KNOT" 1 "$OUT/main/knot/zones" "$OUT/main/knot/zones.list"
knot_conf "$OUT/knot2" "$P_KNOT2" 2 "$OUT/main/knot/zones" "$OUT/main/knot/zones.list"
fleet_conf "$OUT/main/fleet/fleetdns.toml" "$OUT/main/fleet/main.toml" "$P_FLEET" false 1
fleet_conf "$OUT/main/fleet/fleetdns.toml" "$OUT/main/fleet/w1.toml" "$P_FW1" true 1
fleet_conf "$OUT/main/fleet/fleetdns.toml" "$OUT/main/fleet/w2.toml" "$P_FW2" true 2

log "starting knotd and fleetdns (CPU $SERVER_CPU), and the 1-vs-2-worker instances (CPUs $SERVER_CPU,$CLIENT_CPU)"
start_server KNOT knot "$P_KNOT" "$SERVER_CPU" "$OUT/knot/knot.conf" "$PROBE" "$OUT/knot/stdout.log"
start_server FLEET fleetdns "$P_FLEET" "$SERVER_CPU" "$OUT/main/fleet/main.toml" "$PROBE" "$OUT/fleetdns.log"
if ! skip workers; then
  start_server KNOT2 knot "$P_KNOT2" "$SERVER_CPU,$CLIENT_CPU" "$OUT/knot2/knot.conf" "$PROBE" "$OUT/knot2/stdout.log"
  start_server FW1 fleetdns "$P_FW1" "$SERVER_CPU,$CLIENT_CPU" "$OUT/main/fleet/w1.toml" "$PROBE" "$OUT/fleetdns-w1.log"
  start_server FW2 fleetdns "$P_FW2" "$SERVER_CPU,$CLIENT_CPU" "$OUT/main/fleet/w2.toml" "$PROBE" "$OUT/fleetdns-w2.log"
fi

# ---------------------------------------------------------------- same answers?
python3 "$BENCH/compare.py" "$OUT/main/check-names.txt" knot 127.0.0.1 "$P_KNOT" fleetdns 127.0.0.1 "$P_FLEET" \
  --report "$OUT/compare-before.txt" >/dev/null || { cat "$OUT/compare-before.txt" >&2; die "Knot and fleetdns answer differently"; }
log "$(head -1 "$OUT/compare-before.txt")"

# ---------------------------------------------------------------- one dnsperf run
udp_sock_drops() { # port: the drops column of /proc/net/udp for sockets bound to it (summed)
  awk -v p="$(printf '%04X' "$1")" 'NR > 1 { split($2, a, ":"); if (a[2] == p) d += $NF } END { print d + 0 }' /proc/net/udp
}
snmp_udp() { # "InErrors RcvbufErrors" of the Udp line of /proc/net/snmp
  awk '/^Udp:/ { if (!h) { for (i = 2; i <= NF; i++) col[$i] = i; h = 1; next } print $col["InErrors"], $col["RcvbufErrors"] }' /proc/net/snmp
}
# run_one round test server mix pid port file dnsperf-args...
run_one() {
  local round=$1 test=$2 server=$3 mix=$4 pid=$5 port=$6 qfile=$7; shift 7
  local out="$OUT/runs/$round-$test-$server-$mix.txt" t0 t1 s0 s1 c0 c1 d0 d1 n0 n1
  t0=$(cpu_ticks "$pid"); s0=$(cpu_stat "$SERVER_CPU"); c0=$(cpu_stat "$CLIENT_CPU")
  d0=$(udp_sock_drops "$port"); n0=$(snmp_udp)
  timeout -k 5 $((DURATION + 30)) taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$port" -d "$qfile" \
    -l "$DURATION" -O suppress=timeouts,congestion "$@" >"$out" 2>&1 &
  DNSPERF_PID=$!
  wait "$DNSPERF_PID" || { DNSPERF_PID=""; tail -5 "$out" >&2; die "dnsperf failed ($test $server $mix)"; }
  DNSPERF_PID=""
  t1=$(cpu_ticks "$pid"); s1=$(cpu_stat "$SERVER_CPU"); c1=$(cpu_stat "$CLIENT_CPU")
  d1=$(udp_sock_drops "$port"); n1=$(snmp_udp)
  kill -0 "$pid" 2>/dev/null || die "$server exited during $test $mix"
  local completed qps lost avg p50 p99 rcodes us other steal client
  IFS=$'\t' read -r completed qps lost avg p50 p99 rcodes < <(python3 "$BENCH/parse.py" "$out")
  us=$(awk -v d=$((t1 - t0)) -v t="$TICKS" -v n="$completed" 'BEGIN { if (n > 0) printf "%.2f", d / t * 1e6 / n; else print "n/a" }')
  read -r other steal < <(other_steal "$s0" "$s1" $((t1 - t0)))
  client=$(cpu_busy_pct "$c0" "$c1")
  read -r ie0 rb0 <<<"$n0"; read -r ie1 rb1 <<<"$n1"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$test" "$server" "$mix" \
    "$completed" "$qps" "$lost" "$avg" "$p50" "$p99" "$us" "$other" "$client" $((d1 - d0)) $((ie1 - ie0)) $((rb1 - rb0)) "$rcodes" >>"$RESULTS"
  grep -v '^> ' "$out" >"$out.tmp" && mv "$out.tmp" "$out"
  log "r$round $test $server $mix: $qps q/s lost $lost% p99 $p99 ms, $us us/query, drops sock $((d1 - d0)) snmp $((ie1 - ie0))/$((rb1 - rb0)), other $other%, client $client%"
  sleep 0.5
}
# Short unmeasured warm-up per server.
for sp in "knot $KNOT $P_KNOT" "fleetdns $FLEET $P_FLEET"; do
  read -r _ _ port <<<"$sp"
  taskset -c "$CLIENT_CPU" timeout -k 5 30 dnsperf -s 127.0.0.1 -p "$port" -d "$OUT/main/queries.txt" -l 2 -q "$OUTSTANDING" \
    -O suppress=timeouts,congestion >/dev/null 2>&1 || true
done

MIXES="clusterset headless nxdomain types"
for round in $(seq "$ROUNDS"); do
  top -bn1 | sed -n '7,12p' >"$OUT/top-round$round.txt"
  for mix in $MIXES; do
    for sp in "knot $KNOT $P_KNOT" "fleetdns $FLEET $P_FLEET"; do
      read -r server pid port <<<"$sp"
      run_one "$round" fixed "$server" "$mix" "$pid" "$port" "$OUT/main/queries-$mix.txt" -Q "$RATE" -c 1 -T 1 -v
    done
  done
  for sp in "knot $KNOT $P_KNOT" "fleetdns $FLEET $P_FLEET"; do
    read -r server pid port <<<"$sp"
    run_one "$round" saturation "$server" clusterset "$pid" "$port" "$OUT/main/queries-clusterset.txt" -q "$OUTSTANDING" -c 1 -T 1
    skip tcp || run_one "$round" tcp "$server" clusterset "$pid" "$port" "$OUT/main/queries-clusterset.txt" -m tcp -c 10 -q 100 -T 1
  done
  if ! skip workers; then
    for sp in "knot-1w $KNOT $P_KNOT" "knot-2w $KNOT2 $P_KNOT2" "fleetdns-1w $FW1 $P_FW1" "fleetdns-2w $FW2 $P_FW2"; do
      read -r server pid port <<<"$sp"
      # Many source ports (-c 16), so SO_REUSEPORT spreads them over the sockets.
      run_one "$round" workers "$server" clusterset "$pid" "$port" "$OUT/main/queries-clusterset.txt" -q "$OUTSTANDING" -c 16 -T 1
    done
  fi
done
MEM_NOTE="knotd $(rss_kib "$KNOT") KiB RSS ($(threads "$KNOT") threads), fleetdns $(rss_kib "$FLEET") KiB RSS ($(threads "$FLEET") threads) after the runs"
python3 "$BENCH/compare.py" "$OUT/main/check-names.txt" knot 127.0.0.1 "$P_KNOT" fleetdns 127.0.0.1 "$P_FLEET" \
  --report "$OUT/compare-after.txt" >/dev/null || { cat "$OUT/compare-after.txt" >&2; die "answers differ after the runs"; }
for p in "${PIDS[@]}"; do stop_pid "$p" server; done
PIDS=()

# ---------------------------------------------------------------- fleet size
SIZES=$OUT/sizes.txt
: >"$SIZES"
if ! skip size; then
  [ -x "$TABLE_BUILD_BIN" ] || die "$TABLE_BUILD_BIN not found"
  for n in $FLEET_SIZES; do
    for round in $(seq "$ROUNDS"); do
      line=$(taskset -c "$SERVER_CPU" "$TABLE_BUILD_BIN" "$n" "$CLUSTERS" 10)
      echo "round=$round $line" >>"$SIZES"
      log "table $n: $line"
    done
  done
fi

# ---------------------------------------------------------------- queries during rebuilds
REBUILD=$OUT/rebuild.txt
: >"$REBUILD"
if ! skip rebuild; then
  log "rebuild fleet: $CLUSTERS clusters x $REBUILD_SERVICES services"
  python3 "$BENCH/gen.py" --out "$OUT/rb" --clusters "$CLUSTERS" --services "$REBUILD_SERVICES" --namespaces "$NAMESPACES" \
    --queries "$QUERIES" --serial "$SERIAL" --listen "127.0.0.1:$P_FLEET" >&2
  knot_conf "$OUT/rbknot" "$P_KNOT" 1 "$OUT/rb/knot/zones" "$OUT/rb/knot/zones.list"
  fleet_conf "$OUT/rb/fleet/fleetdns.toml" "$OUT/rb/fleet/main.toml" "$P_FLEET" false 1
  start_server KNOT knot "$P_KNOT" "$SERVER_CPU" "$OUT/rbknot/knot.conf" "$PROBE" "$OUT/rbknot/stdout.log"
  start_server FLEET fleetdns "$P_FLEET" "$SERVER_CPU" "$OUT/rb/fleet/main.toml" "$PROBE" "$OUT/fleetdns-rb.log"
  # One service of cluster-1 changes (its ClusterIP flips) every 0.5 s: the files source
  # re-reads the cluster, publishes, and a whole new table is compiled and swapped in.
  rewrite_fleet() {
    local f="$OUT/rb/fleet/clusters/cluster-1/services-0000.yaml" i=0
    cp "$f" "$f.orig"
    while :; do
      i=$((i + 1))
      sed "s/clusterIP: 10.97.0.1$/clusterIP: 10.97.250.$((i % 200 + 1))/; s/clusterIPs: \[10.97.0.1\]/clusterIPs: [10.97.250.$((i % 200 + 1))]/" "$f.orig" >"$f.tmp"
      mv "$f.tmp" "$f"
      sleep 0.5
    done
  }
  # Knot: every 0.5 s the clusterset zone file gets a new serial and one changed A record, and
  # is reloaded (knotc zone-reload: Knot parses the whole file and swaps the zone in).
  reload_knot() {
    local f="$OUT/rb/knot/zones/clusterset.local.zone" i=0
    cp "$f" "$f.orig"
    while :; do
      i=$((i + 1))
      sed "s/ $SERIAL 7200 / $((SERIAL + i)) 7200 /; s/^\(svc-0\.ns-0\.svc\.clusterset\.local\. 5 IN A\) 10\.96\.0\.1\$/\1 10.96.250.$((i % 200 + 1))/" "$f.orig" >"$f.tmp"
      mv "$f.tmp" "$f"
      knotc -c "$OUT/rbknot/knot.conf" zone-reload clusterset.local >/dev/null 2>&1 || true
      sleep 0.5
    done
  }
  DURATION_SAVED=$DURATION; DURATION=$REBUILD_DURATION
  for round in $(seq "$ROUNDS"); do
    for sp in "knot $KNOT $P_KNOT" "fleetdns $FLEET $P_FLEET"; do
      read -r server pid port <<<"$sp"
      run_one "$round" rebuild-quiet "$server" mixed "$pid" "$port" "$OUT/rb/queries.txt" -Q "$RATE" -c 1 -T 1 -v
      before=$(grep -c 'answer table installed' "$OUT/fleetdns-rb.log" || true)
      kbefore=$(grep -c 'loaded, serial' "$OUT/rbknot/knotd.log" || true)
      if [ "$server" = knot ]; then reload_knot & else rewrite_fleet & fi
      REWRITER_PID=$!
      run_one "$round" rebuild-busy "$server" mixed "$pid" "$port" "$OUT/rb/queries.txt" -Q "$RATE" -c 1 -T 1 -v
      stop_pid "$REWRITER_PID" rewriter; REWRITER_PID=""
      # Let a compile still running finish (it runs at nice 19, so under load it is slow), then
      # count every table the changes produced, with its compile time.
      last=-1
      for _ in $(seq 60); do
        now=$(grep -c 'answer table installed' "$OUT/fleetdns-rb.log" || true)
        [ "$now" = "$last" ] && break
        last=$now; sleep 2
      done
      if [ "$server" = knot ]; then
        echo "round=$round server=knot zone_loads=$(( $(grep -c 'loaded, serial' "$OUT/rbknot/knotd.log" || true) - kbefore ))" >>"$REBUILD"
      else
        echo "round=$round server=fleetdns tables_installed_during_or_after=$(( $(grep -c 'answer table installed' "$OUT/fleetdns-rb.log" || true) - before )) compile_micros=$(grep 'answer table installed' "$OUT/fleetdns-rb.log" | tail -n +$((before + 1)) | sed -n 's/.*micros=\([0-9]*\).*/\1/p' | sort -n | tr '\n' ',' )" >>"$REBUILD"
      fi
      for f in "$OUT/rb/fleet/clusters/cluster-1/services-0000.yaml" "$OUT/rb/knot/zones/clusterset.local.zone"; do
        if [ -f "$f.orig" ]; then mv "$f.orig" "$f"; fi
      done
      sleep 1
    done
  done
  DURATION=$DURATION_SAVED
  RB_MEM="rebuild fleet: knotd $(rss_kib "$KNOT") KiB, fleetdns $(rss_kib "$FLEET") KiB RSS"
  for p in "${PIDS[@]}"; do stop_pid "$p" server; done
  PIDS=()
fi

# ---------------------------------------------------------------- report
{
  echo "# The answer path: fleetdns vs Knot DNS"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ); fleetdns built from $BUILT; $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')); $(knotd -V 2>&1 | head -1); $(dnsperf -h 2>&1 | grep -m1 Version | sed 's/Version/dnsperf/')"
  echo
  echo "Fleet: $CLUSTERS clusters x $SERVICES ClusterSetIP services + $HEADLESS headless services (10 ready endpoints, cluster-0); $ROUNDS rounds, $DURATION s per run; fixed rate $RATE q/s; server on CPU $SERVER_CPU, dnsperf on CPU $CLIENT_CPU."
  echo "- $SYSCTL_NOTE"
  echo "- ${MEM_NOTE:-}; ${RB_MEM:-}"
  echo "- answers compared with dig: $(head -1 "$OUT/compare-before.txt"); after the runs: $(head -1 "$OUT/compare-after.txt")"
  echo
  python3 "$BENCH/summarize_answer_path.py" "$RESULTS" "$SIZES" "$REBUILD"
} >"$OUT/results.md"
echo
cat "$OUT/results.md"
