#!/usr/bin/env bash
# User-space instructions per query (valgrind callgrind), repeatable even on a busy machine.
# Runs fleetdns under callgrind on the fleet bench/answer-path.sh generated (bench/out/answer-path/main),
# switches instrumentation on only while dnsperf sends N queries of each mix (every thread of
# the process is counted: receive loop, answer path, runtime), and prints Ir / query.
#
#   bench/callgrind.sh                          # target/release/fleetdns, all four mixes
#   FLEETDNS_BIN=/tmp/old-fleetdns WORKERS=2 bench/callgrind.sh    # another build to compare
#
# Kernel time (most of a query's cost, see BENCHMARKS.md) is not counted by callgrind.
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
MAIN=$BENCH/out/answer-path/main
FLEETDNS_BIN=${FLEETDNS_BIN:-$ROOT/target/release/fleetdns}
N=${N:-20000}
PORT=${PORT:-53591}
WORKERS=${WORKERS:-1}
MIXES=${MIXES:-"clusterset headless nxdomain types"}
OUT=$BENCH/out/callgrind
LOG_TAG=callgrind
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
command -v valgrind >/dev/null || install_missing valgrind
[ -f "$MAIN/fleet/fleetdns.toml" ] || die "run bench/answer-path.sh first (it generates $MAIN)"
mkdir -p "$OUT"
sed -e "s|^listen = .*|listen = \"127.0.0.1:$PORT\"\nudp_workers = $WORKERS|" "$MAIN/fleet/fleetdns.toml" >"$MAIN/fleet/callgrind.toml"
PID=""
trap 'stop_pid "$PID" valgrind' EXIT
for mix in $MIXES; do
  (cd "$MAIN/fleet" && exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/$mix.out" \
    "$FLEETDNS_BIN" serve --config "$MAIN/fleet/callgrind.toml") >"$OUT/$mix.log" 2>&1 &
  PID=$!
  for _ in $(seq 240); do
    dig @127.0.0.1 -p "$PORT" +time=1 +tries=1 +short svc-0.ns-0.svc.cluster-0.local A 2>/dev/null | grep -q '^10\.' && break
    sleep 1
  done
  head -n "$N" "$MAIN/queries-$mix.txt" >"$OUT/queries-$mix.txt"
  callgrind_control -i on "$PID" >/dev/null
  done_n=$(dnsperf -s 127.0.0.1 -p "$PORT" -d "$OUT/queries-$mix.txt" -n 1 -Q 5000 -q 50 -c 1 -T 1 | awk '/Queries completed/ { print $3 }')
  callgrind_control -i off "$PID" >/dev/null
  stop_pid "$PID" valgrind; PID=""
  total=$(callgrind_annotate "$OUT/$mix.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  echo "$mix: $done_n queries, $total Ir, $((total / done_n)) Ir/query ($FLEETDNS_BIN, udp_workers $WORKERS)"
done
