#!/usr/bin/env bash
# fleetdns vs Knot DNS on the same names and data: fixed-rate and saturation runs with dnsperf.
# See bench/README.md. Everything is written to bench/out/ (gitignored); loopback only.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bench/run.sh [options]            (every option also reads an env var of the same name)
  --clusters N       clusters in the fleet                         CLUSTERS  (3)
  --services N       services per cluster                          SERVICES  (1000)
  --rate N           queries/s of the fixed-rate run                RATE      (20000)
  --duration S       seconds per measured run                       DURATION  (10)
  --outstanding N    dnsperf -q of the saturation run               OUTSTANDING (1000)
  --sat-verbose      run saturation with dnsperf -v too (p50/p99;   SAT_VERBOSE (0)
                     costs the client ~10% throughput)
  --knot-only        benchmark Knot alone (no fleetdns binary needed) KNOT_ONLY (0)
  --no-build         do not run `cargo build --release -p fleetdns`  NO_BUILD  (0)
  --knot-port P / --fleetdns-port P                                 KNOT_PORT (53531) FLEETDNS_PORT (53532)
  --server-cpu N / --client-cpu N                                   SERVER_CPU (0) CLIENT_CPU (1)
EOF
}

CLUSTERS=${CLUSTERS:-3}
SERVICES=${SERVICES:-1000}
NAMESPACES=${NAMESPACES:-10}
RATE=${RATE:-20000}
DURATION=${DURATION:-10}
OUTSTANDING=${OUTSTANDING:-1000}
SAT_VERBOSE=${SAT_VERBOSE:-0}
WARMUP=${WARMUP:-2}
KNOT_ONLY=${KNOT_ONLY:-0}
NO_BUILD=${NO_BUILD:-0}
KNOT_PORT=${KNOT_PORT:-53531}
FLEETDNS_PORT=${FLEETDNS_PORT:-53532}
KNOT_UDP_WORKERS=${KNOT_UDP_WORKERS:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
QUERIES=${QUERIES:-200000}

while [ $# -gt 0 ]; do
  case "$1" in
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
    *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in CLUSTERS SERVICES NAMESPACES RATE DURATION OUTSTANDING WARMUP KNOT_PORT FLEETDNS_PORT SERVER_CPU CLIENT_CPU QUERIES; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "run.sh: $v must be a non-negative integer, got '${!v}'" >&2; exit 2; }
done

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
OUT=$BENCH/out
FLEETDNS_BIN=${FLEETDNS_BIN:-$ROOT/target/release/fleetdns}
export PATH="$PATH:/usr/sbin:/sbin"
LOG_TAG=bench
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"   # log, die, install_missing, stop_pid, port_free, pin_threads, cpu_ticks, ...

# ---------------------------------------------------------------- tools
need_pkgs=()
command -v knotd >/dev/null && command -v knotc >/dev/null || need_pkgs+=(knot)
command -v dnsperf >/dev/null || need_pkgs+=(dnsperf)
command -v dig >/dev/null || need_pkgs+=(dnsutils)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v taskset >/dev/null || need_pkgs+=(util-linux)
install_missing ${need_pkgs[@]+"${need_pkgs[@]}"}
# Knot's package may start a system knotd on port 53; it does not matter, ours use their own ports.

NCPU=$(nproc)
if [ "$NCPU" -lt 2 ]; then
  log "only $NCPU CPU: server and dnsperf share CPU 0 (numbers will be lower and noisier)"
  SERVER_CPU=0; CLIENT_CPU=0
fi
TICKS=$(getconf CLK_TCK)

# ---------------------------------------------------------------- cleanup
KNOT_PID=""; FLEETDNS_PID=""; DNSPERF_PID=""
SYSCTL_RESTORE=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$DNSPERF_PID" dnsperf
  stop_pid "$FLEETDNS_PID" fleetdns
  stop_pid "$KNOT_PID" knotd
  local kv
  for kv in "${SYSCTL_RESTORE[@]}"; do sysctl -q -w "$kv" >/dev/null 2>&1 || true; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- socket buffers
SYSCTL_NOTE=""
raise_rmem

loaded() { # port: the zones answer and every cluster's services are in
  local port=$1 c
  dig @127.0.0.1 -p "$port" +norec +time=1 +tries=1 +short clusterset.local SOA 2>/dev/null | grep -q hostmaster || return 1
  for ((c = 0; c < CLUSTERS; c++)); do
    dig @127.0.0.1 -p "$port" +norec +time=1 +tries=1 +short "svc-0.ns-0.svc.cluster-$c.local" A 2>/dev/null | grep -q '^10\.' || return 1
  done
}
wait_answering() { # name port pid timeout_s
  local name=$1 port=$2 pid=$3 deadline=$((SECONDS + $4))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || return 1
    loaded "$port" && return 0
    sleep 0.5
  done
  return 1
}

# ---------------------------------------------------------------- build
if [ "$KNOT_ONLY" != 1 ]; then
  if [ "$NO_BUILD" != 1 ]; then
    command -v cargo >/dev/null || die "cargo not found (use --no-build with FLEETDNS_BIN, or --knot-only)"
    log "cargo build --release -p fleetdns"
    (cd "$ROOT" && cargo build --release -p fleetdns --quiet) || die "fleetdns build failed"
  fi
  [ -x "$FLEETDNS_BIN" ] || die "$FLEETDNS_BIN not found (build it, or use --knot-only)"
fi

# ---------------------------------------------------------------- generate
rm -rf "$OUT/fleet" "$OUT/knot" "$OUT/runs" "$OUT"/compare-*.txt "$OUT/queries.txt" "$OUT/check-names.txt" "$OUT/fleetdns.log" "$OUT/results.md"
mkdir -p "$OUT/knot/run" "$OUT/knot/storage" "$OUT/runs"
SERIAL=$(date +%s)
log "generating $CLUSTERS clusters x $SERVICES services"
python3 "$BENCH/gen.py" --out "$OUT" --clusters "$CLUSTERS" --services "$SERVICES" \
  --namespaces "$NAMESPACES" --queries "$QUERIES" --serial "$SERIAL" \
  --listen "127.0.0.1:$FLEETDNS_PORT" >&2

{
  cat <<EOF
# Generated by bench/run.sh.
server:
    rundir: "$OUT/knot/run"
    listen: 127.0.0.1@$KNOT_PORT
    udp-workers: $KNOT_UDP_WORKERS
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$OUT/knot/storage"
log:
  - target: "$OUT/knot/knotd.log"
    any: info
template:
  - id: default
    storage: "$OUT/knot/zones"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
zone:
EOF
  sed 's/^/  - domain: /' "$OUT/knot/zones.list"
} >"$OUT/knot/knot.conf"
knotc -c "$OUT/knot/knot.conf" conf-check >/dev/null || die "generated knot.conf is invalid"

# ---------------------------------------------------------------- start servers
port_free "$KNOT_PORT" || die "127.0.0.1:$KNOT_PORT is in use (set KNOT_PORT)"
log "starting knotd on 127.0.0.1:$KNOT_PORT (CPU $SERVER_CPU)"
taskset -c "$SERVER_CPU" knotd -c "$OUT/knot/knot.conf" >"$OUT/knot/stdout.log" 2>&1 &
KNOT_PID=$!
wait_answering knot "$KNOT_PORT" "$KNOT_PID" 30 || { tail -20 "$OUT/knot/knotd.log" >&2 || true; die "knotd did not answer within 30 s"; }
pin_threads "$KNOT_PID" "$SERVER_CPU"

if [ "$KNOT_ONLY" != 1 ]; then
  port_free "$FLEETDNS_PORT" || die "127.0.0.1:$FLEETDNS_PORT is in use (set FLEETDNS_PORT)"
  log "starting fleetdns on 127.0.0.1:$FLEETDNS_PORT (CPU $SERVER_CPU)"
  taskset -c "$SERVER_CPU" "$FLEETDNS_BIN" serve --config "$OUT/fleet/fleetdns.toml" \
    --listen "127.0.0.1:$FLEETDNS_PORT" >"$OUT/fleetdns.log" 2>&1 &
  FLEETDNS_PID=$!
  wait_answering fleetdns "$FLEETDNS_PORT" "$FLEETDNS_PID" 120 || { tail -20 "$OUT/fleetdns.log" >&2 || true; die "fleetdns did not answer within 120 s"; }
  pin_threads "$FLEETDNS_PID" "$SERVER_CPU"
fi

# ---------------------------------------------------------------- same answers?
compare() { # label
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
compare before

# ---------------------------------------------------------------- runs
ROWS=()
RCODE_ROWS=()
run_one() { # server pid port mode
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
  ROWS+=("| $server | $mode | $qps | $lost | $avg | $p50 | $p99 | $us |")
  # What else ran on the server's CPU during the run (its busy time less the server's own),
  # the hypervisor's steal there, and how busy the client's CPU was (100% = client-bound).
  local other steal client
  read -r other steal < <(other_steal "$s0" "$s1" $((after - before)))
  client=$(cpu_busy_pct "$c0" "$c1")
  RCODE_ROWS+=("| $server | $mode | $completed | $rcodes | $(awk -v d=$((after - before)) -v t="$TICKS" 'BEGIN { printf "%.2f", d / t }') | $other | $steal | $client |")
  # Keep dnsperf's summary, drop the per-query lines (they can be hundreds of MB).
  grep -v '^> ' "$file" >"$file.tmp" && mv "$file.tmp" "$file"
  log "$server $mode: $qps q/s, lost $lost %, avg $avg ms, p50 $p50 ms, p99 $p99 ms, $us us CPU/query"
  sleep 1
}
bench_server() { # server pid port
  if [ "$WARMUP" -gt 0 ]; then
    taskset -c "$CLIENT_CPU" timeout -k 5 $((WARMUP + 30)) dnsperf -s 127.0.0.1 -p "$3" -d "$OUT/queries.txt" \
      -l "$WARMUP" -q "$OUTSTANDING" -O suppress=timeouts,congestion >/dev/null 2>&1 || true
    sleep 1
  fi
  run_one "$1" "$2" "$3" fixed
  run_one "$1" "$2" "$3" saturation
}

bench_server knot "$KNOT_PID" "$KNOT_PORT"
[ "$KNOT_ONLY" = 1 ] || bench_server fleetdns "$FLEETDNS_PID" "$FLEETDNS_PORT"

compare after


# ---------------------------------------------------------------- report
{
  echo "# fleetdns vs Knot DNS"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ); $NCPU CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')); $(knotd -V 2>&1 | head -1); $(dnsperf -h 2>&1 | grep -m1 Version | sed 's/Version/dnsperf/')"
  echo
  echo "Fleet: $CLUSTERS clusters x $SERVICES services ($NAMESPACES namespaces); query mix ~80% A, ~10% SRV, ~10% NXDOMAIN ($QUERIES-line file, replayed)."
  echo "Fixed: dnsperf -Q $RATE -c 1 -T 1 -v, $DURATION s. Saturation: dnsperf -q $OUTSTANDING -c 1 -T 1$([ "$SAT_VERBOSE" = 1 ] && echo " -v"), no -Q, $DURATION s."
  echo "Server pinned to CPU $SERVER_CPU (every thread), dnsperf to CPU $CLIENT_CPU. Knot: udp-workers $KNOT_UDP_WORKERS, background-workers 1."
  echo
  echo "| server | mode | q/s | lost % | avg ms | p50 ms | p99 ms | CPU µs/query |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Run details: response codes seen by dnsperf (both servers should show the same mix); server CPU seconds;"
  echo "other load on the server's CPU (busy time not spent by the server, %); steal there (%); client CPU busy (%)."
  echo
  echo "| server | mode | completed | response codes | server CPU s | other on server CPU % | steal % | client CPU % |"
  echo "|---|---|---:|---|---:|---:|---:|---:|"
  printf '%s\n' "${RCODE_ROWS[@]}"
  echo
  echo "- p50/p99: nearest rank over the per-response latencies of \`dnsperf -v\`; n/a where -v was off."
  echo "- CPU µs/query: (utime+stime of the server process, all threads, /proc/PID/stat) delta over the run x 1e6 / queries completed."
  echo "- lost %: dnsperf counts queries still outstanding when the time limit hits as lost (up to -q at saturation)."
  echo "- Memory after the runs: knotd $(rss_kib "$KNOT_PID") KiB RSS, $(threads "$KNOT_PID") threads$([ "$KNOT_ONLY" = 1 ] || echo "; fleetdns $(rss_kib "$FLEETDNS_PID") KiB RSS, $(threads "$FLEETDNS_PID") threads")."
  echo "- $SYSCTL_NOTE."
  echo "- Answers compared with dig before and after the runs: $(head -1 "$OUT/compare-before.txt"); after: $(head -1 "$OUT/compare-after.txt" | sed 's/^compared [0-9]* questions ([^)]*): //')."
} >"$OUT/results.md"

echo
cat "$OUT/results.md"
