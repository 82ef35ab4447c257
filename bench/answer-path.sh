#!/usr/bin/env bash
# The answer path in one command: fleetdns vs Knot DNS side by side (CPU per query, latency, drops, TCP, workers, table size, queries during rebuilds).
#   1. four query mixes at a fixed rate (default 50k q/s): CPU us/query, p50/p99, lost
#   2. saturation (dnsperf -q 1000): q/s, CPU us/query, and UDP drops from the kernel counters
#   3. TCP: dnsperf -m tcp -c 10 (10 long-lived connections)
#   4. UDP workers: fleetdns reuse_port with 1 vs 2 workers, Knot udp-workers 1 vs 2
#   5. fleet size: table build time and RSS for 1k/10k/100k services (examples/table_build.rs)
#   6. queries during rebuilds: fixed rate while one cluster's manifests are rewritten (fleetdns)
#      or the zone is reloaded (Knot), against the same run without
# Every run of 1-4 is repeated ROUNDS times, the servers alternating; bench/summarize_answer_path.py prints
# medians. See bench/README.md. Output: bench/out/answer-path/ (gitignored); loopback only.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}             # seconds per measured dnsperf run
RATE=${RATE:-50000}
OUTSTANDING=${OUTSTANDING:-1000}
CLUSTERS=${CLUSTERS:-3}
SERVICES=${SERVICES:-1000}
HEADLESS=${HEADLESS:-1000}
NAMESPACES=${NAMESPACES:-10}
QUERIES=${QUERIES:-100000}
FLEET_SIZES=${FLEET_SIZES:-"1000 10000 100000"}
REBUILD_SERVICES=${REBUILD_SERVICES:-10000}
REBUILD_DURATION=${REBUILD_DURATION:-10}
NO_BUILD=${NO_BUILD:-0}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT_BASE=${PORT_BASE:-53540}
SKIP=${SKIP:-}                        # e.g. SKIP="size rebuild" while developing

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
OUT=$BENCH/out/answer-path
FLEETDNS_BIN=${FLEETDNS_BIN:-$ROOT/target/release/fleetdns}
TABLE_BUILD_BIN=${TABLE_BUILD_BIN:-$ROOT/target/release/examples/table_build}
export PATH="$PATH:/usr/sbin:/sbin"
LOG_TAG=answer-path
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
skip() { [[ " $SKIP " == *" $1 "* ]]; }

need_pkgs=()
command -v knotd >/dev/null && command -v knotc >/dev/null || need_pkgs+=(knot)
command -v dnsperf >/dev/null || need_pkgs+=(dnsperf)
command -v dig >/dev/null || need_pkgs+=(dnsutils)
command -v taskset >/dev/null || need_pkgs+=(util-linux)
install_missing ${need_pkgs[@]+"${need_pkgs[@]}"}
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (server and dnsperf on their own)"
TICKS=$(getconf CLK_TCK)

PIDS=(); DNSPERF_PID=""; REWRITER_PID=""; SYSCTL_RESTORE=()
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  stop_pid "$DNSPERF_PID" dnsperf
  stop_pid "$REWRITER_PID" rewriter
  for p in "${PIDS[@]}"; do stop_pid "$p" server; done
  local kv
  for kv in "${SYSCTL_RESTORE[@]}"; do sysctl -q -w "$kv" >/dev/null 2>&1 || true; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
SYSCTL_NOTE=""
raise_rmem

if [ "$NO_BUILD" != 1 ]; then
  log "cargo build --release -p fleetdns; --example table_build"
  (cd "$ROOT" && cargo build --release -p fleetdns --quiet && cargo build --release -p fleetdns-dns --example table_build --quiet) || die "build failed"
fi
[ -x "$FLEETDNS_BIN" ] || die "$FLEETDNS_BIN not found"
# What was built (recorded now: the tree may change while the benchmark runs).
BUILT="commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- crates || echo ' (+ uncommitted changes in crates/)')"
[ "$NO_BUILD" = 1 ] && BUILT="$FLEETDNS_BIN as found (tree at $BUILT)"

rm -rf "$OUT"; mkdir -p "$OUT/runs"
RESULTS=$OUT/results.tsv
printf 'round\ttest\tserver\tmix\tcompleted\tqps\tlost\tavg_ms\tp50_ms\tp99_ms\tcpu_us\tother_pct\tclient_pct\tsock_drops\tsnmp_inerrors\tsnmp_rcvbuf\trcodes\n' >"$RESULTS"

# ---------------------------------------------------------------- fleets
SERIAL=$(date +%s)
log "generating $CLUSTERS clusters x $SERVICES services + $HEADLESS headless (x$((10)) endpoints)"
python3 "$BENCH/gen.py" --out "$OUT/main" --clusters "$CLUSTERS" --services "$SERVICES" --namespaces "$NAMESPACES" \
  --headless "$HEADLESS" --endpoints 10 --mixes --queries "$QUERIES" --serial "$SERIAL" \
  --listen "127.0.0.1:$PORT_BASE" >&2

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
