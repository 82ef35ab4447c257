#!/usr/bin/env bash
# Forwarded and cached traffic: fleetdns in front of Knot against unbound in front of the same
# Knot, cache-hit queries/s and server CPU per query, with dnsperf. See bench/README.md.
# Output: bench/out/forward/ (work files) and bench/out/forward-results.md; loopback only.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bench/forward.sh [options]        (every option also reads an env var of the same name)
  --names N          names in the Knot zone fwd.bench (all cached)  NAMES     (10000)
  --rate N           queries/s of the fixed-rate run                RATE      (20000)
  --duration S       seconds per measured run                       DURATION  (10)
  --outstanding N    dnsperf -q of the saturation run               OUTSTANDING (1000)
  --servers LIST     which forwarders, comma-separated              SERVERS   (fleetdns,unbound)
  --no-build         do not run `cargo build --release -p fleetdns`  NO_BUILD  (0)
  --knot-port P / --fleetdns-port P / --unbound-port P    KNOT_PORT (53551) FLEETDNS_PORT (53552) UNBOUND_PORT (53553)
  --server-cpu N / --client-cpu N                         SERVER_CPU (0) CLIENT_CPU (1)
env only: QUERIES (200000 lines in the query file), WARMUP (2 s), FLEETDNS_BIN, UPSTREAM_CPU (= CLIENT_CPU)
EOF
}

NAMES=${NAMES:-10000}
RATE=${RATE:-20000}
DURATION=${DURATION:-10}
OUTSTANDING=${OUTSTANDING:-1000}
SERVERS=${SERVERS:-fleetdns,unbound}
NO_BUILD=${NO_BUILD:-0}
KNOT_PORT=${KNOT_PORT:-53551}
FLEETDNS_PORT=${FLEETDNS_PORT:-53552}
UNBOUND_PORT=${UNBOUND_PORT:-53553}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
QUERIES=${QUERIES:-200000}
WARMUP=${WARMUP:-2}

while [ $# -gt 0 ]; do
  case "$1" in
    --names) NAMES=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --outstanding) OUTSTANDING=$2; shift 2 ;;
    --servers) SERVERS=$2; shift 2 ;;
    --no-build) NO_BUILD=1; shift ;;
    --knot-port) KNOT_PORT=$2; shift 2 ;;
    --fleetdns-port) FLEETDNS_PORT=$2; shift 2 ;;
    --unbound-port) UNBOUND_PORT=$2; shift 2 ;;
    --server-cpu) SERVER_CPU=$2; shift 2 ;;
    --client-cpu) CLIENT_CPU=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "forward.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
UPSTREAM_CPU=${UPSTREAM_CPU:-$CLIENT_CPU}
for v in NAMES RATE DURATION OUTSTANDING WARMUP KNOT_PORT FLEETDNS_PORT UNBOUND_PORT SERVER_CPU CLIENT_CPU UPSTREAM_CPU QUERIES; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "forward.sh: $v must be a non-negative integer, got '${!v}'" >&2; exit 2; }
done
[ "$NAMES" -ge 10 ] && [ "$NAMES" -le 1000000 ] || { echo "forward.sh: NAMES must be 10..1000000" >&2; exit 2; }
IFS=, read -r -a SERVER_LIST <<<"$SERVERS"
for s in "${SERVER_LIST[@]}"; do
  case "$s" in fleetdns|unbound) ;; *) echo "forward.sh: unknown server '$s' (fleetdns, unbound)" >&2; exit 2 ;; esac
done
want() { [[ ",$SERVERS," == *",$1,"* ]]; }

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
OUT=$BENCH/out/forward
RESULTS=$BENCH/out/forward-results.md
FLEETDNS_BIN=${FLEETDNS_BIN:-$ROOT/target/release/fleetdns}
ZONE=fwd.bench
export PATH="$PATH:/usr/sbin:/sbin"
LOG_TAG=forward
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

# ---------------------------------------------------------------- tools
need_pkgs=()
command -v knotd >/dev/null && command -v knotc >/dev/null || need_pkgs+=(knot)
command -v dnsperf >/dev/null || need_pkgs+=(dnsperf)
command -v dig >/dev/null || need_pkgs+=(dnsutils)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v taskset >/dev/null || need_pkgs+=(util-linux)
if want unbound; then command -v unbound >/dev/null && command -v unbound-checkconf >/dev/null || need_pkgs+=(unbound); fi
install_missing ${need_pkgs[@]+"${need_pkgs[@]}"}
# The packages may try to start system knotd/unbound on port 53; ours use their own ports.

NCPU=$(nproc)
if [ "$NCPU" -lt 2 ]; then
  log "only $NCPU CPU: everything shares CPU 0 (numbers will be lower and noisier)"
  SERVER_CPU=0; CLIENT_CPU=0; UPSTREAM_CPU=0
fi
TICKS=$(getconf CLK_TCK)

# ---------------------------------------------------------------- cleanup
KNOT_PID=""; FLEETDNS_PID=""; UNBOUND_PID=""; DNSPERF_PID=""
SYSCTL_RESTORE=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$DNSPERF_PID" dnsperf
  stop_pid "$FLEETDNS_PID" fleetdns
  stop_pid "$UNBOUND_PID" unbound
  stop_pid "$KNOT_PID" knotd
  local kv
  for kv in ${SYSCTL_RESTORE[@]+"${SYSCTL_RESTORE[@]}"}; do sysctl -q -w "$kv" >/dev/null 2>&1 || true; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SYSCTL_NOTE=""
raise_rmem

# ---------------------------------------------------------------- build
if want fleetdns; then
  if [ "$NO_BUILD" != 1 ]; then
    command -v cargo >/dev/null || die "cargo not found (use --no-build with FLEETDNS_BIN, or --servers unbound)"
    log "cargo build --release -p fleetdns"
    (cd "$ROOT" && cargo build --release -p fleetdns --quiet) || die "fleetdns build failed"
  fi
  [ -x "$FLEETDNS_BIN" ] || die "$FLEETDNS_BIN not found (build it, or use --servers unbound)"
fi

# ---------------------------------------------------------------- generate
rm -rf "$OUT" "$RESULTS"
mkdir -p "$OUT/knot/run" "$OUT/knot/storage" "$OUT/knot/zones" "$OUT/unbound" "$OUT/runs"
CACHE_CAPACITY=$((NAMES * 2 > 100000 ? NAMES * 2 : 100000))
log "generating zone $ZONE with $NAMES names (TTL 3600) and $QUERIES queries"
python3 - "$OUT" "$NAMES" "$QUERIES" "$ZONE" <<'EOF'
import os, random, sys
out, n, q, zone = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
TTL = 3600
names = [f"svc-{i}.ns-{i % 10}.svc.{zone}" for i in range(n)]
with open(os.path.join(out, "knot", "zones", f"{zone}.zone"), "w") as f:
    f.write(f"$ORIGIN {zone}.\n$TTL {TTL}\n")
    f.write(f"@ IN SOA ns.{zone}. hostmaster.{zone}. 1 7200 1800 86400 {TTL}\n@ IN NS ns.{zone}.\nns IN A 127.0.0.1\n")
    for i, name in enumerate(names):
        f.write(f"{name}. IN A 10.{96 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}\n")
with open(os.path.join(out, "names.txt"), "w") as f:  # every name once: the cache fill
    f.write("".join(f"{name} A\n" for name in names))
rng = random.Random(42)
with open(os.path.join(out, "queries.txt"), "w") as f:  # uniform over the names, deterministic
    for _ in range(q):
        f.write(f"{rng.choice(names)} A\n")
picks = [0, n - 1] + random.Random(43).sample(range(1, n - 1), 6)
with open(os.path.join(out, "check-names.txt"), "w") as f:
    f.write("".join(f"{names[i]} A\n" for i in picks))
    f.write(f"{names[1]} AAAA\n")                 # NODATA
    f.write(f"nosuch-1.ns-0.svc.{zone} A\n")      # NXDOMAIN
EOF

cat >"$OUT/knot/knot.conf" <<EOF
# Generated by bench/forward.sh: the upstream.
server:
    rundir: "$OUT/knot/run"
    listen: 127.0.0.1@$KNOT_PORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$OUT/knot/storage"
log:
  - target: "$OUT/knot/knotd.log"
    any: info
mod-stats:
  - id: default
    request-protocol: on
template:
  - id: default
    storage: "$OUT/knot/zones"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
    global-module: mod-stats/default
zone:
  - domain: $ZONE
EOF
knotc -c "$OUT/knot/knot.conf" conf-check >/dev/null || die "generated knot.conf is invalid"

cat >"$OUT/fleetdns.toml" <<EOF
# Generated by bench/forward.sh: forward-only fleetdns.
[dns]
listen = "127.0.0.1:$FLEETDNS_PORT"

[[forward]]
zone = "$ZONE"
upstreams = ["127.0.0.1:$KNOT_PORT"]

[cache]
capacity = $CACHE_CAPACITY
EOF

cat >"$OUT/unbound/unbound.conf" <<EOF
# Generated by bench/forward.sh: unbound as a caching forwarder, one thread, no DNSSEC.
server:
    verbosity: 1
    num-threads: 1
    interface: 127.0.0.1@$UNBOUND_PORT
    port: $UNBOUND_PORT
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    access-control: 127.0.0.0/8 allow
    chroot: ""
    username: ""
    directory: "$OUT/unbound"
    pidfile: ""
    logfile: "$OUT/unbound/unbound.log"
    use-syslog: no
    do-daemonize: no
    module-config: "iterator"
    do-not-query-localhost: no
    so-rcvbuf: 8m
    msg-cache-size: 128m
    rrset-cache-size: 256m
    msg-cache-slabs: 1
    rrset-cache-slabs: 1
    infra-cache-slabs: 1
    key-cache-slabs: 1
    cache-min-ttl: 0
    cache-max-ttl: 86400
    prefetch: no
    serve-expired: no
    qname-minimisation: no
    minimal-responses: yes
    statistics-interval: 0
    extended-statistics: no
forward-zone:
    name: "$ZONE"
    forward-addr: 127.0.0.1@$KNOT_PORT
EOF
if want unbound; then
  unbound-checkconf "$OUT/unbound/unbound.conf" >"$OUT/unbound/checkconf.txt" 2>&1 \
    || { cat "$OUT/unbound/checkconf.txt" >&2; die "generated unbound.conf is invalid"; }
fi

# ---------------------------------------------------------------- helpers
answers() { # port name: 0 when the server answers the first name with an A record
  dig @127.0.0.1 -p "$1" +time=1 +tries=1 +short "$2" A 2>/dev/null | grep -q '^10\.'
}
wait_answering() { # name port pid timeout_s
  local deadline=$((SECONDS + $4)) first
  first=$(head -1 "$OUT/names.txt" | cut -d' ' -f1)
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$3" 2>/dev/null || return 1
    answers "$2" "$first" && return 0
    sleep 0.5
  done
  return 1
}
knot_queries() { # UDP+TCP requests Knot has received (mod-stats)
  knotc -c "$OUT/knot/knot.conf" stats mod-stats.request-protocol 2>/dev/null \
    | awk -F' = ' '{ s += $2 } END { print s + 0 }'
}
dnsperf_run() { # port file outfile dnsperf-args...  (client CPU, under timeout, killable by the trap)
  local port=$1 data=$2 file=$3 limit=$((DURATION + 60))
  shift 3
  timeout -k 5 "$limit" taskset -c "$CLIENT_CPU" \
    dnsperf -s 127.0.0.1 -p "$port" -d "$data" -O suppress=timeouts,congestion "$@" >"$file" 2>&1 &
  DNSPERF_PID=$!
  local rc=0
  wait "$DNSPERF_PID" || rc=$?
  DNSPERF_PID=""
  return $rc
}
dig_sig() { # port name type: "STATUS | sorted answer RRs without TTL"
  local out st
  out=$(dig @127.0.0.1 -p "$1" +time=2 +tries=2 "$2" "$3" +noall +comments +answer 2>/dev/null) || true
  st=$(sed -n 's/.*->>HEADER<<-.*status: \([A-Z]*\),.*/\1/p' <<<"$out")
  printf '%s |%s\n' "${st:-NO-ANSWER}" "$(awk '/^[^;]/ && NF >= 5 { $2 = ""; printf " %s;\n", $0 }' <<<"$out" | sort | tr -d '\n')"
}
msg_size() { # port name type
  dig @127.0.0.1 -p "$1" +time=2 +tries=2 "$2" "$3" 2>/dev/null | awk '/MSG SIZE/ { print $NF }'
}
check_same() { # label: every check name answered like Knot (rcode + answer RRs, TTL ignored) by each forwarder
  local label=$1 f=$OUT/check-$1.txt bad=0 name type ref got s port
  : >"$f"
  while read -r name type; do
    ref=$(dig_sig "$KNOT_PORT" "$name" "$type")
    printf 'knot      %s %s: %s\n' "$name" "$type" "$ref" >>"$f"
    for s in "${SERVER_LIST[@]}"; do
      port=$(port_of "$s")
      got=$(dig_sig "$port" "$name" "$type")
      printf '%-9s %s %s: %s\n' "$s" "$name" "$type" "$got" >>"$f"
      if [ "$got" != "$ref" ]; then bad=$((bad + 1)); log "DIFF $s $name $type: '$got' vs knot '$ref'"; fi
    done
  done <"$OUT/check-names.txt"
  local n
  n=$(wc -l <"$OUT/check-names.txt")
  if [ $bad -ne 0 ]; then die "$bad answers differ from Knot's ($label); see $f"; fi
  CHECK_NOTE="$n questions (A, NODATA, NXDOMAIN): rcode and answer records (TTL ignored) identical to Knot's for ${SERVERS//,/ and }"
  log "check $label: $CHECK_NOTE"
}
port_of() { case "$1" in fleetdns) echo "$FLEETDNS_PORT" ;; unbound) echo "$UNBOUND_PORT" ;; knot) echo "$KNOT_PORT" ;; esac; }
pid_of() { case "$1" in fleetdns) echo "$FLEETDNS_PID" ;; unbound) echo "$UNBOUND_PID" ;; esac; }

# ---------------------------------------------------------------- start
for p in "$KNOT_PORT" $(want fleetdns && echo "$FLEETDNS_PORT") $(want unbound && echo "$UNBOUND_PORT"); do
  port_free "$p" || die "127.0.0.1:$p is in use (set KNOT_PORT / FLEETDNS_PORT / UNBOUND_PORT)"
done
log "starting knotd (upstream) on 127.0.0.1:$KNOT_PORT, CPU $UPSTREAM_CPU (only cache misses reach it)"
taskset -c "$UPSTREAM_CPU" knotd -c "$OUT/knot/knot.conf" >"$OUT/knot/stdout.log" 2>&1 &
KNOT_PID=$!
wait_answering knot "$KNOT_PORT" "$KNOT_PID" 30 || { tail -20 "$OUT/knot/knotd.log" >&2 || true; die "knotd did not answer within 30 s"; }
pin_threads "$KNOT_PID" "$UPSTREAM_CPU"
[ "$(knot_queries)" -gt 0 ] || die "knotc stats mod-stats.request-protocol gives no counts; cannot count upstream queries"

if want fleetdns; then
  log "starting fleetdns on 127.0.0.1:$FLEETDNS_PORT (CPU $SERVER_CPU)"
  taskset -c "$SERVER_CPU" "$FLEETDNS_BIN" serve --config "$OUT/fleetdns.toml" \
    --listen "127.0.0.1:$FLEETDNS_PORT" >"$OUT/fleetdns.log" 2>&1 &
  FLEETDNS_PID=$!
  wait_answering fleetdns "$FLEETDNS_PORT" "$FLEETDNS_PID" 60 || { tail -20 "$OUT/fleetdns.log" >&2 || true; die "fleetdns did not answer within 60 s"; }
  pin_threads "$FLEETDNS_PID" "$SERVER_CPU"
fi
if want unbound; then
  log "starting unbound on 127.0.0.1:$UNBOUND_PORT (CPU $SERVER_CPU)"
  taskset -c "$SERVER_CPU" unbound -d -c "$OUT/unbound/unbound.conf" >"$OUT/unbound/stdout.log" 2>&1 &
  UNBOUND_PID=$!
  wait_answering unbound "$UNBOUND_PORT" "$UNBOUND_PID" 30 || { tail -20 "$OUT/unbound/unbound.log" "$OUT/unbound/stdout.log" >&2 || true; die "unbound did not answer within 30 s"; }
  pin_threads "$UNBOUND_PID" "$SERVER_CPU"
fi

# ---------------------------------------------------------------- fill the caches
# One pass over every name (dnsperf -n 1), then a second pass that must not reach Knot at all.
FILL_ROWS=()
fill() { # server
  local s=$1 port k0 k1 k2 parsed c1 c2
  port=$(port_of "$s")
  k0=$(knot_queries)
  dnsperf_run "$port" "$OUT/names.txt" "$OUT/runs/$s-fill.txt" -n 1 -q 100 -c 1 -T 1 || die "dnsperf (fill $s) failed"
  k1=$(knot_queries)
  dnsperf_run "$port" "$OUT/names.txt" "$OUT/runs/$s-refill.txt" -n 1 -q 100 -c 1 -T 1 || die "dnsperf (second pass $s) failed"
  k2=$(knot_queries)
  parsed=$(python3 "$BENCH/parse.py" "$OUT/runs/$s-fill.txt") || die "cannot parse fill output"
  c1=$(cut -f1 <<<"$parsed")
  parsed=$(python3 "$BENCH/parse.py" "$OUT/runs/$s-refill.txt") || die "cannot parse second-pass output"
  c2=$(cut -f1 <<<"$parsed")
  log "$s fill: $c1/$NAMES answered, $((k1 - k0)) upstream queries; second pass: $c2/$NAMES answered, $((k2 - k1)) upstream queries"
  [ "$c1" -eq "$NAMES" ] && [ "$c2" -eq "$NAMES" ] || die "$s did not answer every name during the cache fill"
  [ $((k2 - k1)) -eq 0 ] || log "WARNING: $s sent $((k2 - k1)) queries upstream on the second pass (not everything cached)"
  FILL_ROWS+=("| $s | $c1 | $((k1 - k0)) | $c2 | $((k2 - k1)) |")
}
for s in "${SERVER_LIST[@]}"; do fill "$s"; done
CHECK_NOTE=""
check_same before

# ---------------------------------------------------------------- runs
ROWS=(); DETAIL_ROWS=()
run_one() { # server mode
  local s=$1 mode=$2 port pid file=$OUT/runs/$1-$2.txt args before after kb ka q0 q1 s0 s1 c0 c1
  port=$(port_of "$s"); pid=$(pid_of "$s")
  if [ "$mode" = fixed ]; then args=(-Q "$RATE" -c 1 -T 1 -v); else args=(-q "$OUTSTANDING" -c 1 -T 1); fi
  before=$(cpu_ticks "$pid"); kb=$(cpu_ticks "$KNOT_PID"); q0=$(knot_queries)
  s0=$(cpu_stat "$SERVER_CPU"); c0=$(cpu_stat "$CLIENT_CPU")
  log "$s $mode: dnsperf ${args[*]} -l $DURATION"
  dnsperf_run "$port" "$OUT/queries.txt" "$file" -l "$DURATION" "${args[@]}" || { tail -5 "$file" >&2; die "dnsperf failed ($s $mode)"; }
  after=$(cpu_ticks "$pid"); ka=$(cpu_ticks "$KNOT_PID"); q1=$(knot_queries)
  s1=$(cpu_stat "$SERVER_CPU"); c1=$(cpu_stat "$CLIENT_CPU")
  kill -0 "$pid" 2>/dev/null || die "$s exited during the $mode run"
  local parsed completed qps lost avg p50 p99 rcodes us other steal client
  parsed=$(python3 "$BENCH/parse.py" "$file") || die "cannot parse $file"
  IFS=$'\t' read -r completed qps lost avg p50 p99 rcodes <<<"$parsed"
  us=$(awk -v d=$((after - before)) -v t="$TICKS" -v n="$completed" 'BEGIN { if (n > 0) printf "%.2f", d / t * 1e6 / n; else print "n/a" }')
  read -r other steal < <(other_steal "$s0" "$s1" $((after - before)))
  client=$(cpu_busy_pct "$c0" "$c1")
  ROWS+=("| $s | $mode | $qps | $lost | $avg | $p50 | $p99 | $us | $((q1 - q0)) |")
  DETAIL_ROWS+=("| $s | $mode | $completed | $rcodes | $(awk -v d=$((after - before)) -v t="$TICKS" 'BEGIN { printf "%.2f", d / t }') | $(awk -v d=$((ka - kb)) -v t="$TICKS" 'BEGIN { printf "%.2f", d / t }') | $other | $steal | $client |")
  grep -v '^> ' "$file" >"$file.tmp" && mv "$file.tmp" "$file"
  log "$s $mode: $qps q/s, lost $lost %, avg $avg ms, p50 $p50 ms, p99 $p99 ms, $us us CPU/query, $((q1 - q0)) upstream queries"
  sleep 1
}
for s in "${SERVER_LIST[@]}"; do
  if [ "$WARMUP" -gt 0 ]; then
    dnsperf_run "$(port_of "$s")" "$OUT/queries.txt" /dev/null -l "$WARMUP" -q "$OUTSTANDING" || true
    sleep 1
  fi
  run_one "$s" fixed
  run_one "$s" saturation
done
check_same after

# ---------------------------------------------------------------- report
SIZES=""
first=$(head -1 "$OUT/names.txt" | cut -d' ' -f1)
for s in knot "${SERVER_LIST[@]}"; do SIZES+="$s $(msg_size "$(port_of "$s")" "$first" A) B, "; done
MEM=""
for s in "${SERVER_LIST[@]}"; do MEM+="$s $(rss_kib "$(pid_of "$s")") KiB RSS, $(threads "$(pid_of "$s")") threads; "; done
COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(cd "$ROOT" && git status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null | head -1)
{
  echo "# Forwarded and cached: fleetdns vs unbound, both in front of Knot"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ); $NCPU CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')); $(knotd -V 2>&1 | head -1); $(want unbound && unbound -V 2>&1 | head -1 | sed 's/^Version/unbound/'); $(dnsperf -h 2>&1 | grep -m1 Version | sed 's/Version/dnsperf/'); fleetdns at $COMMIT$([ -n "$DIRTY" ] && echo " (crates/ has uncommitted changes)")"
  echo
  echo "Zone $ZONE on Knot: $NAMES A records, TTL 3600. Queries: $QUERIES-line file, uniform over those names, type A, replayed; UDP, no EDNS."
  echo "Caches filled first (one pass over every name); every measured query is a cache hit (upstream queries column)."
  echo "Fixed: dnsperf -Q $RATE -c 1 -T 1 -v, $DURATION s. Saturation: dnsperf -q $OUTSTANDING -c 1 -T 1, no -Q, $DURATION s. ${WARMUP} s unmeasured warm-up before each server's runs."
  echo "Forwarder pinned to CPU $SERVER_CPU (every thread); dnsperf on CPU $CLIENT_CPU; Knot (udp-workers 1) on CPU $UPSTREAM_CPU: it is only asked on cache misses, which do not happen during the measured runs."
  echo "fleetdns: [[forward]] zone $ZONE, [cache] capacity $CACHE_CAPACITY, other settings default. unbound: num-threads 1, module-config iterator (no validation), so-rcvbuf 8m, msg/rrset cache 128m/256m, forward-zone $ZONE."
  echo
  echo "| server | mode | q/s | lost % | avg ms | p50 ms | p99 ms | CPU µs/query | upstream queries |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Run details: response codes seen by dnsperf; forwarder CPU seconds; Knot CPU seconds; other load on the forwarder's CPU"
  echo "(busy time not spent by the forwarder, %); steal there (%); client CPU busy (%, dnsperf plus the idle Knot)."
  echo
  echo "| server | mode | completed | response codes | server CPU s | knot CPU s | other on server CPU % | steal % | client CPU % |"
  echo "|---|---|---:|---|---:|---:|---:|---:|---:|"
  printf '%s\n' "${DETAIL_ROWS[@]}"
  echo
  echo "Cache fill (dnsperf -n 1 -q 100 over the $NAMES names, twice):"
  echo
  echo "| server | answered, 1st pass | upstream queries, 1st pass | answered, 2nd pass | upstream queries, 2nd pass |"
  echo "|---|---:|---:|---:|---:|"
  printf '%s\n' "${FILL_ROWS[@]}"
  echo
  echo "- p50/p99: nearest rank over the per-response latencies of \`dnsperf -v\`; n/a where -v was off."
  echo "- CPU µs/query: (utime+stime of the server process, all threads, /proc/PID/stat) delta over the run x 1e6 / queries completed."
  echo "- upstream queries: requests Knot received during the run (knotc stats, mod-stats request-protocol)."
  echo "- Response size for \`$first A\` (dig, EDNS on): ${SIZES%, }."
  echo "- Memory after the runs: ${MEM%; }."
  echo "- $SYSCTL_NOTE."
  echo "- Answers compared with dig after the fill and after the runs: $CHECK_NOTE."
} >"$RESULTS"

echo
cat "$RESULTS"
