#!/usr/bin/env bash
# The soak: fleetdns serve on a real etcd, fed by three agents whose manifests change 10 times a
# second, under UDP + TCP load at 80% of its saturation (measured under that churn), while a
# forward upstream flaps every 30 s, the config is reloaded every minute and etcd is restarted at
# 1/3 and 2/3 of the run.
# Answers are checked every second against the edits made; RSS and fds are sampled every 5 s;
# latency per minute. Everything on loopback; results in bench/out/soak/ (results.md,
# samples.csv, soak.png); exits non-zero when a query failed, a check mismatched or memory/fds
# drifted by more than 10% after warm-up.
#
#   bench/soak.sh                      # DURATION=1800 (the recorded run)
#   DURATION=120 bench/soak.sh         # a quick one (warm-up and faults scale with it)
#
# Env: DURATION (1800 s of load), SERVICES (1000 per cluster), CHURN (50 churn services per
# cluster), EDIT_RATE (10 changes/s), FLAP (30 s), RELOAD (60 s), LOAD_PCT (80), SAT_SECS (10),
# SAT_CHURN (1: the saturation is measured while the registry changes EDIT_RATE times a second),
# CLIENT_BUF (4096: dnsperf -b, KiB),
# TCP_SHARE (10: % of the load sent over TCP), PROBE_RATE (2000), FORWARD_RATE (200),
# WARMUP (300 s, at most DURATION/3), NO_BUILD, FLEETDNS_BIN, PORT_BASE (53680; uses 4 ports
# from there, etcd on 23896/23906).
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_TAG=soak
. bench/lib.sh

DURATION=${DURATION:-1800}
SERVICES=${SERVICES:-1000}
CHURN=${CHURN:-50}
export EDIT_RATE=${EDIT_RATE:-10}
FLAP=${FLAP:-30}
RELOAD=${RELOAD:-60}
LOAD_PCT=${LOAD_PCT:-80}
SAT_SECS=${SAT_SECS:-10}
SAT_CHURN=${SAT_CHURN:-1}
# dnsperf's socket buffers, KiB: with the default (rmem_default, 208 KiB) dnsperf's own socket
# drops answers at ~90k q/s (its `ss -uam` drop counter; the server's socket drops none) and
# counts them lost. 4096 is the usual rmem_max.
CLIENT_BUF=${CLIENT_BUF:-4096}
TCP_SHARE=${TCP_SHARE:-10}
PROBE_RATE=${PROBE_RATE:-2000}
FORWARD_RATE=${FORWARD_RATE:-200}
WARMUP=${WARMUP:-300}
[ "$WARMUP" -le $((DURATION / 3)) ] || WARMUP=$((DURATION / 3))
PORT_BASE=${PORT_BASE:-53680}
DNS_PORT=$PORT_BASE
UPSTREAM_PORT=$((PORT_BASE + 1))
OPS_PORT=$((PORT_BASE + 2))
ETCD_CLIENT=23896
ETCD_PEER=23906
FLEETDNS_BIN=${FLEETDNS_BIN:-target/release/fleetdns}
OUT=bench/out/soak
COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (crates/ had uncommitted changes)')"
W=$OUT/work
ZONE=flap.test
SEGMENT=60 # seconds per dnsperf run: one line per minute

need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v etcd >/dev/null || need+=(etcd-server)
command -v knotd >/dev/null || need+=(knot)
command -v dig >/dev/null || need+=(dnsutils)
# the plot needs matplotlib: Debian's python3-matplotlib, for the system python3
PY=python3
python3 -c 'import matplotlib' 2>/dev/null || PY=/usr/bin/python3
$PY -c 'import matplotlib' 2>/dev/null || need+=(python3-matplotlib)
install_missing "${need[@]}"
if [ -z "${NO_BUILD:-}" ]; then
  bash scripts/deps.sh --build
  cargo build --release -q -p fleetdns
fi
[ -x "$FLEETDNS_BIN" ] || die "$FLEETDNS_BIN not found"
for p in $DNS_PORT $UPSTREAM_PORT $OPS_PORT $ETCD_CLIENT $ETCD_PEER; do port_free "$p" || die "port $p is in use"; done

rm -rf "$OUT"
mkdir -p "$W/pids" "$W/dnsperf" "$W/knot/run" "$W/knot/storage" "$W/knot/zones"
: >"$W/events.log"
event() { echo "$(date +%s.%N) $*" >>"$W/events.log"; log "$*"; }

# ------------------------------------------------------------------ processes and cleanup
ETCD_PID= KNOT_PID= SERVER_PID= DRIVE_PID= CHURN_PID=
AGENT_PIDS=() LOOP_PIDS=()
cleanup() {
  local p
  for p in "${LOOP_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  [ -n "$DRIVE_PID" ] && kill -TERM "$DRIVE_PID" 2>/dev/null || true
  [ -n "$CHURN_PID" ] && kill -TERM "$CHURN_PID" 2>/dev/null || true
  stop_pid "$SERVER_PID" fleetdns-serve
  for p in "${AGENT_PIDS[@]}"; do stop_pid "$p" fleetdns-agent; done
  stop_pid "$KNOT_PID" knotd
  stop_pid "$ETCD_PID" etcd
  [ -f "$W/pids/knotd.pid.upstream" ] && stop_pid "$(cat "$W/pids/knotd.pid.upstream")" knotd
  for p in "${LOOP_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_etcd() {
  etcd --name soak --data-dir "$W/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "soak=http://127.0.0.1:$ETCD_PEER" --log-level warn >>"$W/etcd.log" 2>&1 &
  ETCD_PID=$!
  local i
  for i in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$ETCD_CLIENT") 2>/dev/null && return 0; sleep 0.1; done
  die "etcd did not listen within 10 s"
}
start_knot() {
  knotd -c "$W/knot/knot.conf" >>"$W/knot/stdout.log" 2>&1 &
  KNOT_PID=$!
  echo "$KNOT_PID" >"$W/pids/knotd.pid.upstream"
  local i
  for i in $(seq 100); do
    dig @127.0.0.1 -p "$UPSTREAM_PORT" +time=1 +tries=1 +short "n-0.$ZONE" A 2>/dev/null | grep -q '^10\.' && return 0
    sleep 0.1
  done
  die "knotd did not answer within 10 s"
}

# ------------------------------------------------------------------ the fleet
log "generating 3 clusters x $SERVICES services (gen.py) + $CHURN churn services per cluster"
python3 bench/gen.py --out "$W/gen" --clusters 3 --services "$SERVICES" --queries 200000 >/dev/null
for c in 0 1 2; do
  mkdir -p "$W/agents/agent-$c"
  cp -r "$W/gen/fleet/clusters/cluster-$c" "$W/agents/agent-$c/"
  cat >"$W/agent-$c.toml" <<EOF
# bench/soak.sh: the agent of cluster-$c (a manifest folder stands in for its API server)
[registry]
kind = "etcd"
endpoints = ["http://127.0.0.1:$ETCD_CLIENT"]
prefix = "/soak"
lease_ttl_secs = 5

[[sources]]
kind = "files"
path = "agents/agent-$c"
poll_interval_ms = 100
EOF
done
$PY bench/soak.py init "$W" 3 "$CHURN"
cat >"$W/serve.toml" <<EOF
# bench/soak.sh: the server under test (reload marker 0)
cluster_id = "cluster-0"

[dns]
listen = "127.0.0.1:$DNS_PORT"

[registry]
kind = "etcd"
endpoints = ["http://127.0.0.1:$ETCD_CLIENT"]
prefix = "/soak"
lease_ttl_secs = 5

[cluster_zones]
enabled = true

[[forward]]
zone = "$ZONE"
upstreams = ["127.0.0.1:$UPSTREAM_PORT"]
timeout_ms = 500

[ops]
listen = "127.0.0.1:$OPS_PORT"
EOF

# the flapping upstream: Knot serving flap.test (TTL 5, so the cache empties while it is down)
python3 - "$W" "$ZONE" <<'EOF'
import os, random, sys
w, zone = sys.argv[1], sys.argv[2]
with open(os.path.join(w, "knot", "zones", f"{zone}.zone"), "w") as f:
    f.write(f"$ORIGIN {zone}.\n$TTL 5\n@ IN SOA ns.{zone}. hostmaster.{zone}. 1 7200 1800 86400 5\n@ IN NS ns.{zone}.\nns IN A 127.0.0.1\n")
    for i in range(100):
        f.write(f"n-{i} IN A 10.77.0.{i + 1}\n")
rng = random.Random(5)
with open(os.path.join(w, "forward-queries.txt"), "w") as f:
    for _ in range(10000):
        f.write(f"n-{rng.randrange(100)}.{zone} A\n")
EOF
cat >"$W/knot/knot.conf" <<EOF
# Generated by bench/soak.sh: the forward zone's upstream, stopped and started every $FLAP s.
server:
    rundir: "$W/knot/run"
    listen: 127.0.0.1@$UPSTREAM_PORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$W/knot/storage"
log:
  - target: "$W/knot/knotd.log"
    any: notice
template:
  - id: default
    storage: "$W/knot/zones"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: $ZONE
EOF
knotc -c "$W/knot/knot.conf" conf-check >/dev/null || die "generated knot.conf is invalid"

log "starting etcd (127.0.0.1:$ETCD_CLIENT), knotd (:$UPSTREAM_PORT), 3 agents, fleetdns serve (:$DNS_PORT)"
start_etcd
start_knot
for c in 0 1 2; do
  "$FLEETDNS_BIN" agent --config "$W/agent-$c.toml" >"$W/agent-$c.log" 2>&1 &
  AGENT_PIDS+=($!)
  echo $! >"$W/pids/agent-$c.pid"
done
FLEETDNS_LOG=info "$FLEETDNS_BIN" serve --config "$W/serve.toml" >"$W/serve.log" 2>&1 &
SERVER_PID=$!
echo "$SERVER_PID" >"$W/pids/server.pid"
ask() { dig @127.0.0.1 -p "$DNS_PORT" +time=1 +tries=1 +short "$1" A 2>/dev/null | sort | tr '\n' ' '; }
for i in $(seq 300); do
  [ "$(ask svc-0.ns-0.svc.clusterset.local)" = "10.96.0.1 " ] && [ -n "$(ask churn-2-0.soak.svc.clusterset.local)" ] \
    && [ -n "$(ask "n-0.$ZONE")" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || die "fleetdns serve exited; see $W/serve.log"
  sleep 0.2
done
[ "$(ask svc-0.ns-0.svc.clusterset.local)" = "10.96.0.1 " ] || die "the server does not answer the fleet after 60 s; logs in $W"
log "fleet up: svc-0 -> $(ask svc-0.ns-0.svc.clusterset.local), churn-2-0 -> $(ask churn-2-0.soak.svc.clusterset.local), n-0.$ZONE -> $(ask "n-0.$ZONE")"

# ------------------------------------------------------------------ saturation
# Measured while the registry changes as during the run (the agents re-reading their folders,
# etcd, the server compiling): the server's saturation where it runs, beside the soak's other
# work on the same CPUs. SAT_CHURN=0 measures it on the quiet fleet (on 2 CPUs, 80% of that is
# more than the server gets once the churn starts: UDP queries are then lost).
Q=$W/gen/queries.txt
if [ "$SAT_CHURN" = 1 ]; then
  $PY bench/soak.py churn "$W" $((2 * SAT_SECS + 10)) & CHURN_PID=$!
  sleep 2
fi
timeout 30 dnsperf -s 127.0.0.1 -p "$DNS_PORT" -b "$CLIENT_BUF" -d "$Q" -l 3 -q 1000 >/dev/null 2>&1 || true # warm-up
timeout $((SAT_SECS + 20)) dnsperf -s 127.0.0.1 -p "$DNS_PORT" -b "$CLIENT_BUF" -d "$Q" -l "$SAT_SECS" -q 1000 -c 1 >"$W/sat-udp.txt" 2>&1
timeout $((SAT_SECS + 20)) dnsperf -s 127.0.0.1 -p "$DNS_PORT" -b "$CLIENT_BUF" -d "$Q" -l "$SAT_SECS" -q 100 -c 10 -m tcp >"$W/sat-tcp.txt" 2>&1
if [ -n "$CHURN_PID" ]; then
  wait "$CHURN_PID" || die "soak.py churn failed"
  CHURN_PID=
  sleep 2 # the starting state published again before the run's edits begin
fi
SAT_UDP=$(awk '/Queries per second/ { printf "%d", $4 }' "$W/sat-udp.txt")
SAT_TCP=$(awk '/Queries per second/ { printf "%d", $4 }' "$W/sat-tcp.txt")
[ -n "$SAT_UDP" ] && [ "$SAT_UDP" -gt 0 ] || die "no saturation figure; see $W/sat-udp.txt"
RATE=$((SAT_UDP * LOAD_PCT / 100))
RATE_TCP=$((RATE * TCP_SHARE / 100))
RATE_UDP=$((RATE - RATE_TCP))
log "saturation: UDP $SAT_UDP q/s, TCP $SAT_TCP q/s; load: UDP $RATE_UDP + TCP $RATE_TCP q/s ($LOAD_PCT% of UDP saturation)"

# ------------------------------------------------------------------ the run
START=$(date +%s.%N)
END_S=$(( $(date +%s) + DURATION ))
: >"$W/minutes.tsv"
stream() { # name rate verbose dnsperf-args...: back-to-back SEGMENT-second runs until the end
  local name=$1 rate=$2 verbose=$3 seq=0 f s e p cur=
  shift 3
  trap '[ -n "$cur" ] && kill -TERM "$cur" 2>/dev/null; exit 0' TERM # stops the dnsperf in flight
  while [ $(( $(date +%s) + 5 )) -lt "$END_S" ]; do
    local left=$(( END_S - $(date +%s) ))
    local len=$(( left < SEGMENT ? left : SEGMENT ))
    f=$W/dnsperf/$name-$(printf %03d "$seq").txt
    s=$(date +%s.%N)
    timeout $((len + 30)) dnsperf -s 127.0.0.1 -p "$DNS_PORT" -b "$CLIENT_BUF" -l "$len" -Q "$rate" "$@" \
      ${verbose:+-v} >"$f" 2>&1 &
    cur=$!
    wait "$cur" || true
    cur=
    e=$(date +%s.%N)
    p="n/a	n/a"
    if [ -n "$verbose" ]; then
      p=$(python3 bench/parse.py "$f" | cut -f5,6) || p="n/a	n/a"
      grep -v '^> ' "$f" >"$f.stats" || true
      mv "$f.stats" "$f"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$seq" "$s" "$e" "$f" "$p" >>"$W/minutes.tsv"
    seq=$((seq + 1))
  done
}
stream udp "$RATE_UDP" "" -d "$Q" -q 1000 -c 1 & LOOP_PIDS+=($!)
stream tcp "$RATE_TCP" "" -d "$Q" -q 100 -c 10 -m tcp & LOOP_PIDS+=($!)
stream probe "$PROBE_RATE" 1 -d "$Q" -q 100 -c 1 & LOOP_PIDS+=($!)
stream forward "$FORWARD_RATE" "" -d "$W/forward-queries.txt" -q 100 -c 1 -t 2 & LOOP_PIDS+=($!)

$PY bench/soak.py drive "$W" "$DURATION" "$DNS_PORT" & DRIVE_PID=$!

flapper() { # the upstream: down for FLAP s, up for FLAP s
  while sleep "$FLAP"; [ $(( $(date +%s) + FLAP )) -lt "$END_S" ]; do
    event upstream-stop
    stop_pid "$(cat "$W/pids/knotd.pid.upstream")" knotd
    sleep "$FLAP"
    start_knot
    event upstream-up
  done
}
flapper & LOOP_PIDS+=($!)

reloader() { # every RELOAD s: SIGHUP, then next time a harmless edit of the config (its comment)
  local n=0
  while sleep "$RELOAD"; [ $(( $(date +%s) + 5 )) -lt "$END_S" ]; do
    n=$((n + 1))
    if [ $((n % 2)) -eq 1 ]; then
      event reload-sighup "$n"
      kill -HUP "$SERVER_PID"
    else
      event reload-edit "$n"
      sed -i "1s/(reload marker [0-9]*)/(reload marker $n)/" "$W/serve.toml"
    fi
  done
}
reloader & LOOP_PIDS+=($!)

etcd_restart() { # at 1/3 and 2/3 of the run: stopped (TERM), down 5 s, started on the same data
  local at
  for at in $((DURATION / 3)) $((2 * DURATION / 3)); do
    sleep $(( at - ($(date +%s) - ${START%.*}) ))
    event etcd-stop
    stop_pid "$ETCD_PID" etcd
    sleep 5
    start_etcd
    event etcd-up
  done
}
etcd_restart

wait "$DRIVE_PID" || die "soak.py drive failed"
DRIVE_PID=
for p in "${LOOP_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
LOOP_PIDS=()
END=$(date +%s.%N)
kill -0 "$SERVER_PID" 2>/dev/null && SERVER_ALIVE=yes || SERVER_ALIVE=no
log "load done; server alive: $SERVER_ALIVE"

cat >"$W/meta.json" <<EOF
{"start": $START, "end": $END, "duration": $DURATION, "warmup": $WARMUP,
 "command": "DURATION=$DURATION bench/soak.sh", "commit": "$COMMIT",
 "machine": "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(free -g | awk '/Mem:/ {print $2}') GiB; etcd $(etcd --version | head -1 | awk '{print $3}'), $(knotd -V 2>&1 | head -1), dnsperf $(dnsperf -h 2>&1 | awk '/Version/ {print $2}')",
 "fleet": "3 clusters x $SERVICES services (bench/gen.py)", "churn": $CHURN, "flap": $FLAP,
 "sat_secs": $SAT_SECS, "sat_churn": $SAT_CHURN, "sat_udp": $SAT_UDP, "sat_tcp": ${SAT_TCP:-0}, "rate_total": $RATE,
 "rate_udp": $RATE_UDP, "rate_tcp": $RATE_TCP, "rate_probe": $PROBE_RATE, "rate_forward": $FORWARD_RATE,
 "reloads_logged": $(grep -c 'config reloaded' "$W/serve.log" || true),
 "reload_errors": $(grep -c 'config reload failed' "$W/serve.log" || true),
 "server_alive": "$SERVER_ALIVE"}
EOF
rc=0
$PY bench/soak.py report "$W" || rc=$?
cp "$W/results.md" "$W/samples.csv" "$OUT/"
[ -f "$W/soak.png" ] && cp "$W/soak.png" "$OUT/"
[ "$SERVER_ALIVE" = yes ] || { log "fleetdns serve died during the run; see $W/serve.log"; rc=1; }
log "results: $OUT/results.md, $OUT/samples.csv, $OUT/soak.png (work files and logs in $W)"
exit $rc
