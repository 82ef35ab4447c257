#!/usr/bin/env bash
# fleetdns at fleet scale, side by side with Knot DNS, for S = 1 000, 10 000 and 50 000 services per
# cluster (3 clusters + S/10 headless services with 10 endpoints, bench/gen.py): names served, RSS
# and RSS per name at load, start -> first complete answer (fleetdns from manifests, Knot from its
# zone files, fleetdns from etcd filled by one agent per cluster), one-change latency, RSS after
# many changes, and the longest query wait at 20 000 q/s while services change.
# The servers run one after the other on the same machine. See bench/README.md.
# Output: bench/out/fleet-scale/results.md and results.tsv (gitignored); loopback only.
set -euo pipefail

SIZES=${SIZES:-"1000 10000 50000"}
CLUSTERS=${CLUSTERS:-3}
NAMESPACES=${NAMESPACES:-10}
ENDPOINTS=${ENDPOINTS:-10}
CHANGES=${CHANGES:-100}                  # one-change latency: changes, one at a time
CHANGE_BUDGET=${CHANGE_BUDGET:-240}      # ... but at most this many seconds per server and size
CHANGE_TIMEOUT=${CHANGE_TIMEOUT:-60}     # a change not visible after this long counts as timed out
CHANGES_FOR_RSS=${CHANGES_FOR_RSS:-1000} # RSS after this many changes
CHURN_RATE=${CHURN_RATE:-20}             # ... made at this rate (changes/s)
CHURN_BUDGET=${CHURN_BUDGET:-120}        # ... but for at most this many seconds
RATE=${RATE:-20000}                      # dnsperf q/s for the query-wait runs
QUIET=${QUIET:-20}                       # seconds of queries with nothing changing
BUSY=${BUSY:-20}                         # seconds of queries while services change
BUSY_RATE=${BUSY_RATE:-10}               # ... at this rate (changes/s)
START_TIMEOUT=${START_TIMEOUT:-600}
SERVERS=${SERVERS:-"fleetdns knot etcd"} # fleetdns (files), knot, etcd (fleetdns on etcd); k8s (fleetdns on the fake Kubernetes API) is opt-in
NO_BUILD=${NO_BUILD:-0}
UDP_REALTIME=${UDP_REALTIME:-1}          # 1: fleetdns's UDP workers real-time ([dns] udp_realtime; the bench runs as root)
CLIENT_REALTIME=${CLIENT_REALTIME:-1}    # 1: dnsperf of the query-wait runs real-time (chrt -f 1) on the client CPU
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT_BASE=${PORT_BASE:-53570}            # DNS ports PORT_BASE (fleetdns), +1 (Knot), +2 (fleetdns on etcd), +3 (on the fake API)
ETCD_PORT=${ETCD_PORT:-23795}            # and ETCD_PORT+1 for etcd's peer URL

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
OUT=${OUT_DIR:-$BENCH/out/fleet-scale}
FLEETDNS_BIN=${FLEETDNS_BIN:-$ROOT/target/release/fleetdns}
K8S_FAKE_BIN=${K8S_FAKE_BIN:-$ROOT/target/release/examples/serve_fake}
export PATH="$PATH:/usr/sbin:/sbin"
LOG_TAG=fleet-scale
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
has() { [[ " $SERVERS " == *" $1 "* ]]; }
PY="python3 $BENCH/fleet_scale.py"

need_pkgs=()
command -v knotd >/dev/null && command -v knotc >/dev/null || need_pkgs+=(knot)
command -v dnsperf >/dev/null || need_pkgs+=(dnsperf)
command -v dig >/dev/null || need_pkgs+=(dnsutils)
command -v taskset >/dev/null || need_pkgs+=(util-linux)
if has etcd; then command -v etcd >/dev/null || need_pkgs+=(etcd-server); fi
install_missing ${need_pkgs[@]+"${need_pkgs[@]}"}
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (server and clients on their own)"

PIDS=(); SYSCTL_RESTORE=()
cleanup() {
  local rc=$? p kv
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do stop_pid "$p" process; done
  for kv in "${SYSCTL_RESTORE[@]}"; do sysctl -q -w "$kv" >/dev/null 2>&1 || true; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
forget() { # pid: stopped, drop it from PIDS
  local p keep=()
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=(${keep[@]+"${keep[@]}"})
}
stop() { stop_pid "$1" "$2"; forget "$1"; }
SYSCTL_NOTE=""
raise_rmem

if [ "$NO_BUILD" != 1 ]; then
  log "cargo build --release -p fleetdns"
  (cd "$ROOT" && cargo build --release -p fleetdns --quiet) || die "build failed"
  if has k8s; then
    log "cargo build --release -p fleetdns-k8s-fake --example serve_fake"
    (cd "$ROOT" && cargo build --release -p fleetdns-k8s-fake --example serve_fake --quiet) || die "build failed"
  fi
fi
if has k8s; then [ -x "$K8S_FAKE_BIN" ] || die "$K8S_FAKE_BIN not found (K8S_FAKE_BIN)"; fi
if has fleetdns || has etcd; then [ -x "$FLEETDNS_BIN" ] || die "$FLEETDNS_BIN not found (FLEETDNS_BIN)"; fi
BUILT="$FLEETDNS_BIN"
if [ -x "$FLEETDNS_BIN" ]; then
  BUILT="$FLEETDNS_BIN ($("$FLEETDNS_BIN" --version 2>/dev/null | head -1), built $(date -u -r "$FLEETDNS_BIN" +%FT%TZ))"
fi

P_FLEET=$PORT_BASE; P_KNOT=$((PORT_BASE + 1)); P_ETCD_DNS=$((PORT_BASE + 2)); P_K8S=$((PORT_BASE + 3))
for p in "$P_FLEET" "$P_KNOT" "$P_ETCD_DNS" "$P_K8S"; do port_free "$p" || die "127.0.0.1:$p is in use (set PORT_BASE)"; done

rm -rf "$OUT"; mkdir -p "$OUT"
TSV=$OUT/results.tsv
: >"$TSV"
# The query-wait runs measure the server: with the change maker (and etcd, knotc) on the
# client CPU, an ordinary dnsperf waits for them to be descheduled before it reads an answer,
# and that wait would be counted as the server's. In the real-time class it never does.
DNSPERF_PRIO=()
if [ "$CLIENT_REALTIME" = 1 ]; then
  if chrt -f 1 true 2>/dev/null; then DNSPERF_PRIO=(chrt -f 1); else log "cannot run dnsperf real-time (chrt -f 1); it runs in the normal class"; fi
fi

rec() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$TSV"; } # size server key value

# Start a server pinned to SERVER_CPU and time it to the first complete answer of every probe
# name. Sets SPID and records start_s, rss_load_kib, hwm_load_kib.
start_timed() { # size server port log probes cmd...
  local size=$1 server=$2 port=$3 logf=$4 probes=$5 t0 line secs rss hwm; shift 5
  port_free "$port" || die "127.0.0.1:$port is in use"
  t0=$(date +%s%N)
  taskset -c "$SERVER_CPU" "$@" >"$logf" 2>&1 &
  SPID=$!; PIDS+=("$SPID")
  line=$(taskset -c "$CLIENT_CPU" $PY first-answer "$port" "$SPID" "$t0" "$probes" "$START_TIMEOUT") \
    || { tail -5 "$logf" >&2; die "$server ($size) did not answer every probe name"; }
  read -r secs rss hwm <<<"$line"
  pin_threads "$SPID" "$SERVER_CPU"
  rec "$size" "$server" start_s "$secs"; rec "$size" "$server" rss_load_kib "$rss"; rec "$size" "$server" hwm_load_kib "$hwm"
  log "$server S=$size: first complete answer after $secs s, VmRSS $((rss / 1024)) MiB, VmHWM $((hwm / 1024)) MiB"
}

# Changes and queries against a running server. kind: fleetdns | knot:<knot.conf>
measure_changes() { # size server kind port pid work queries
  local size=$1 server=$2 kind=$3 port=$4 pid=$5 work=$6 queries=$7 line n p50 p99 max to secs last
  # The peak of the changes, not of the start: writing 5 to clear_refs sets VmHWM to VmRSS.
  echo 5 >"/proc/$pid/clear_refs" || die "cannot reset the peak RSS of $server (/proc/$pid/clear_refs)"
  rec "$size" "$server" rss_before_changes_kib "$(rss_kib "$pid")"
  line=$(taskset -c "$CLIENT_CPU" $PY latency "$kind" "$port" "$work" "$CHANGES" "$CHANGE_BUDGET" "$CHANGE_TIMEOUT")
  read -r n p50 p99 max to <<<"$line"
  rec "$size" "$server" change_n "$n"; rec "$size" "$server" change_p50_ms "$p50"; rec "$size" "$server" change_p99_ms "$p99"
  rec "$size" "$server" change_max_ms "$max"; rec "$size" "$server" change_timeouts "$to"
  log "$server S=$size: one change visible after p50 $p50 / p99 $p99 / max $max ms (n=$n, timed out $to)"

  line=$(taskset -c "$CLIENT_CPU" $PY churn "$kind" "$port" "$work" "$CHANGES_FOR_RSS" "$CHURN_RATE" "$CHANGE_TIMEOUT" "$CHURN_BUDGET")
  read -r n secs last <<<"$line"
  sleep 2
  rec "$size" "$server" churn_n "$n"; rec "$size" "$server" churn_last_visible_ms "$last"
  rec "$size" "$server" rss_churn_kib "$(rss_kib "$pid")"
  log "$server S=$size: $n changes in $secs s (the last visible after $last ms): VmRSS $(($(rss_kib "$pid") / 1024)) MiB"

  # Query waits: QUIET s with nothing changing, then BUSY s with BUSY_RATE changes/s.
  local phase out completed lost q50 q99 qmax cpid
  for phase in quiet busy; do
    out="$OUT/dnsperf-$size-$server-$phase.txt"
    cpid=""
    if [ "$phase" = busy ]; then
      taskset -c "$CLIENT_CPU" $PY churn "$kind" "$port" "$work" $((BUSY * BUSY_RATE)) "$BUSY_RATE" 1 "$BUSY" >"$OUT/busy-$size-$server.txt" &
      cpid=$!; PIDS+=("$cpid")
    fi
    local dur=$QUIET; [ "$phase" = busy ] && dur=$BUSY
    timeout -k 5 $((dur + 30)) taskset -c "$CLIENT_CPU" "${DNSPERF_PRIO[@]}" dnsperf -s 127.0.0.1 -p "$port" -d "$queries" -l "$dur" \
      -Q "$RATE" -c 1 -T 1 -v -O suppress=timeouts,congestion >"$out" 2>&1 || { tail -5 "$out" >&2; die "dnsperf failed"; }
    if [ -n "$cpid" ]; then wait "$cpid" || true; forget "$cpid"; fi
    read -r completed lost q50 q99 qmax < <($PY waits "$out")
    grep -v '^> ' "$out" >"$out.tmp" && mv "$out.tmp" "$out"
    rec "$size" "$server" "${phase}_s" "$dur"; rec "$size" "$server" "${phase}_completed" "$completed"; rec "$size" "$server" "${phase}_lost" "$lost"
    rec "$size" "$server" "${phase}_p50_ms" "$q50"; rec "$size" "$server" "${phase}_p99_ms" "$q99"; rec "$size" "$server" "${phase}_max_ms" "$qmax"
    log "$server S=$size $phase: $completed answered, $lost lost, p50 $q50 p99 $q99 max $qmax ms"
    sleep 1
  done
  rec "$size" "$server" busy_changes "$(awk '{ print $1 }' "$OUT/busy-$size-$server.txt")"
  rec "$size" "$server" hwm_changes_kib "$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")"
  rec "$size" "$server" rss_end_kib "$(rss_kib "$pid")"
}

knot_conf() { # dir port zones_dir zones_list (as answer-path.sh: udp-workers 1, whole zone files, no journal)
  mkdir -p "$1/run" "$1/storage"
  {
    cat <<EOF
server:
    rundir: "$1/run"
    listen: 127.0.0.1@$2
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$1/storage"
log:
  - target: "$1/knotd.log"
    any: info
template:
  - id: default
    storage: "$3"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
zone:
EOF
    sed 's/^/  - domain: /' "$4"
  } >"$1/knot.conf"
  knotc -c "$1/knot.conf" conf-check >/dev/null || die "invalid $1/knot.conf"
}

etcd_conf() { # file port prefix [cluster]: a DNS server (no cluster) or an agent's config
  {
    [ -n "${4:-}" ] || printf 'cluster_id = "cluster-0"\n\n[dns]\nlisten = "127.0.0.1:%s"\n\n' "$2"
    printf '[registry]\nkind = "etcd"\nendpoints = ["http://127.0.0.1:%s"]\nprefix = "%s"\nrequest_timeout_ms = 120000\nlease_ttl_secs = 60\n' "$ETCD_PORT" "$3"
    [ -z "${4:-}" ] || printf '\n[[sources]]\nkind = "files"\npath = "%s"\n' "$4"
  } >"$1"
}

SERIAL=$(date +%s)
for S in $SIZES; do
  W=$OUT/s$S
  H=$((S / 10))
  log "S=$S: generating $CLUSTERS clusters x $S services + $H headless (x$ENDPOINTS endpoints)"
  python3 "$BENCH/gen.py" --out "$W" --clusters "$CLUSTERS" --services "$S" --namespaces "$NAMESPACES" \
    --headless "$H" --endpoints "$ENDPOINTS" --queries 100000 --serial "$SERIAL" --listen "127.0.0.1:$P_FLEET" >&2
  printf '{"services": %d, "namespaces": %d}\n' "$S" "$NAMESPACES" >"$W/fleet-meta.json"
  if [ "$UDP_REALTIME" = 1 ]; then sed -i 's|^listen = .*|&\nudp_realtime = true|' "$W/fleet/fleetdns.toml"; fi
  $PY probes "$CLUSTERS" "$S" "$NAMESPACES" "$H" "$ENDPOINTS" >"$W/probes.txt"
  rec "$S" knot owners "$(cat "$W"/knot/zones/*.zone | awk '!/^\$/ { print $1 }' | sort -u | wc -l)"
  rec "$S" knot records "$(cat "$W"/knot/zones/*.zone | awk '!/^\$/ && NF' | wc -l)"
  rec "$S" all manifest_mib "$(du -sm "$W/fleet/clusters" | cut -f1)"
  rec "$S" all zonefile_mib "$(du -sm "$W/knot/zones" | cut -f1)"

  if has fleetdns; then
    start_timed "$S" fleetdns "$P_FLEET" "$W/fleetdns.log" "$W/probes.txt" "$FLEETDNS_BIN" serve --config "$W/fleet/fleetdns.toml"
    sleep 2
    rec "$S" fleetdns names "$(grep 'answer table installed' "$W/fleetdns.log" | tail -1 | sed -n 's/.*names=\([0-9]*\).*/\1/p')"
    rec "$S" fleetdns tables_at_start "$(grep -c 'answer table installed' "$W/fleetdns.log" || true)"
    measure_changes "$S" fleetdns fleetdns "$P_FLEET" "$SPID" "$W" "$W/queries.txt"
    rec "$S" fleetdns tables_installed "$(grep -c 'answer table installed' "$W/fleetdns.log" || true)"
    stop "$SPID" fleetdns
  fi

  if has knot; then
    knot_conf "$W/knotd" "$P_KNOT" "$W/knot/zones" "$W/knot/zones.list"
    start_timed "$S" knot "$P_KNOT" "$W/knotd/stdout.log" "$W/probes.txt" knotd -c "$W/knotd/knot.conf"
    sleep 2
    measure_changes "$S" knot "knot:$W/knotd/knot.conf" "$P_KNOT" "$SPID" "$W" "$W/queries.txt"
    stop "$SPID" knotd
  fi

  if has etcd; then
    # A fresh etcd; one agent per cluster publishes its manifest folder; a first `fleetdns serve`
    # waits until every probe name answers (so everything is in etcd), is stopped, and a second
    # one is timed from its start to the first complete answer.
    port_free "$ETCD_PORT" || die "127.0.0.1:$ETCD_PORT is in use (set ETCD_PORT)"
    E=$W/etcd; rm -rf "$E"; mkdir -p "$E"
    taskset -c "$CLIENT_CPU" etcd --name fleet-scale --data-dir "$E/data" --quota-backend-bytes 8589934592 \
      --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
      --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
      --initial-cluster "fleet-scale=http://127.0.0.1:$((ETCD_PORT + 1))" --log-level warn >"$E/etcd.log" 2>&1 &
    ETCD_PID=$!; PIDS+=("$ETCD_PID")
    for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$ETCD_PORT") 2>/dev/null && break; sleep 0.1; done
    AGENTS=()
    t_agents=$(date +%s%N)
    for c in $(seq 0 $((CLUSTERS - 1))); do
      mkdir -p "$E/agent-$c"
      ln -s "$W/fleet/clusters/cluster-$c" "$E/agent-$c/cluster-$c"
      etcd_conf "$E/agent-$c.toml" "" "/fleet-scale-$S" "agent-$c"
      taskset -c "$CLIENT_CPU" "$FLEETDNS_BIN" agent --config "$E/agent-$c.toml" >"$E/agent-$c.log" 2>&1 &
      AGENTS+=($!); PIDS+=($!)
    done
    etcd_conf "$E/dns.toml" "$P_ETCD_DNS" "/fleet-scale-$S"
    start_timed "$S" fleetdns-etcd-first "$P_ETCD_DNS" "$E/dns-first.log" "$W/probes.txt" "$FLEETDNS_BIN" serve --config "$E/dns.toml"
    rec "$S" fleetdns-etcd agents_to_first_answer_s "$(awk -v a="$t_agents" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')"
    stop "$SPID" fleetdns-etcd-first
    sleep 1
    start_timed "$S" fleetdns-etcd "$P_ETCD_DNS" "$E/dns.log" "$W/probes.txt" "$FLEETDNS_BIN" serve --config "$E/dns.toml"
    sleep 2
    rec "$S" fleetdns-etcd names "$(grep 'answer table installed' "$E/dns.log" | tail -1 | sed -n 's/.*names=\([0-9]*\).*/\1/p')"
    rec "$S" fleetdns-etcd etcd_rss_kib "$(rss_kib "$ETCD_PID")"
    rec "$S" fleetdns-etcd etcd_db_mib "$(du -sm "$E/data" | cut -f1)"
    stop "$SPID" fleetdns-etcd
    for p in "${AGENTS[@]}"; do stop "$p" agent; done
    stop "$ETCD_PID" etcd
    rm -rf "$E/data"
  fi
  if has k8s; then
    # cluster-1 from the fake Kubernetes API server (its S services), cluster-0 and cluster-2
    # from their manifest folders; one change = a PUT of a Service, seen as a watch event.
    K=$W/k8s; rm -rf "$K"; mkdir -p "$K/clusters"
    for c in $(seq 0 $((CLUSTERS - 1))); do
      [ "$c" = 1 ] || ln -s "$W/fleet/clusters/cluster-$c" "$K/clusters/cluster-$c"
    done
    taskset -c "$CLIENT_CPU" "$K8S_FAKE_BIN" "$S" "$NAMESPACES" 1 "$K/kubeconfig" >"$K/fake.url" 2>"$K/fake.log" &
    FAKE_PID=$!; PIDS+=("$FAKE_PID")
    for _ in $(seq $((START_TIMEOUT * 10))); do [ -s "$K/fake.url" ] && break; kill -0 "$FAKE_PID" 2>/dev/null || die "serve_fake exited"; sleep 0.1; done
    [ -s "$K/fake.url" ] || die "serve_fake did not start"
    printf 'cluster_id = "cluster-0"\n\n[dns]\nlisten = "127.0.0.1:%s"\n\n[[sources]]\nkind = "files"\npath = "clusters"\n\n[[sources]]\nkind = "kubernetes"\ncluster_id = "cluster-1"\nkubeconfig = "kubeconfig"\nwrite_back = false\n' "$P_K8S" >"$K/fleetdns.toml"
    start_timed "$S" fleetdns-k8s "$P_K8S" "$K/fleetdns.log" "$W/probes.txt" "$FLEETDNS_BIN" serve --config "$K/fleetdns.toml"
    sleep 2
    line=$(taskset -c "$CLIENT_CPU" $PY latency "k8s:$(head -1 "$K/fake.url")" "$P_K8S" "$W" "$CHANGES" "$CHANGE_BUDGET" "$CHANGE_TIMEOUT")
    read -r n p50 p99 max to <<<"$line"
    rec "$S" fleetdns-k8s change_n "$n"; rec "$S" fleetdns-k8s change_p50_ms "$p50"; rec "$S" fleetdns-k8s change_p99_ms "$p99"
    rec "$S" fleetdns-k8s change_max_ms "$max"; rec "$S" fleetdns-k8s change_timeouts "$to"
    log "fleetdns-k8s S=$S: one change (watch event) visible after p50 $p50 / p99 $p99 / max $max ms (n=$n, timed out $to)"
    stop "$SPID" fleetdns-k8s
    stop "$FAKE_PID" serve_fake
  fi
  # The largest generated files are not needed afterwards.
  rm -f "$W"/queries*.txt
done

# ---------------------------------------------------------------- report
{
  echo "# fleetdns at fleet scale, side by side with Knot DNS"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ); fleetdns: $BUILT; $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); $(knotd -V 2>&1 | head -1); $(dnsperf -h 2>&1 | grep -m1 Version | sed 's/Version/dnsperf/'); $(etcd --version 2>/dev/null | head -1)"
  echo
  echo "Fleet per S: $CLUSTERS clusters x S services + S/10 headless services (cluster-0, $ENDPOINTS endpoints), $NAMESPACES namespaces (bench/gen.py). Server on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU; servers one after the other."
  echo "Changes: ClusterIP of svc-i in cluster-1 (ten i in turn), fleetdns by rewriting its manifest file (files source, default poll interval), Knot by zone-begin/unset/set/commit (its incremental path) through one long-running knotc. One-change latency: $CHANGES changes (at most $CHANGE_BUDGET s per server), polled every 1 ms. RSS after up to $CHANGES_FOR_RSS changes at $CHURN_RATE/s for at most $CHURN_BUDGET s (after the changes above). fleetdns (files) with udp_realtime = $([ "$UDP_REALTIME" = 1 ] && echo true || echo false). Query waits: dnsperf -Q $RATE -c 1 -T 1 -v$([ ${#DNSPERF_PRIO[@]} -gt 0 ] && echo " in the real-time class (chrt -f 1)"), $QUIET s quiet then $BUSY s with $BUSY_RATE changes/s; dnsperf counts a query unanswered after 5 s as lost."
  echo "- $SYSCTL_NOTE"
  echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (the machine may be shared: timings are noisy)"
  echo
  $PY report "$TSV"
} >"$OUT/results.md"
echo
cat "$OUT/results.md"
