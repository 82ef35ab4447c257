#!/usr/bin/env bash
# The multi-process fleet on one machine: a local etcd, three agents (one per demo cluster,
# examples/fleet/agent-*.toml) and two DNS servers (examples/fleet/dns-*.toml, on
# 127.0.0.1:5353 and :5354). Runs until Ctrl-C, then stops everything it started.
#
#   bash scripts/fleet-demo.sh            # run it; dig @127.0.0.1 -p 5353 ...
#   bash scripts/fleet-demo.sh --check    # start, check the answers (and an agent's death), stop
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
[ "${1:-}" = "--check" ] && check=true

bash scripts/deps.sh
cargo build --release -q -p fleetdns
bin=target/release/fleetdns
work=target/fleet-demo
rm -rf "$work"
mkdir -p "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

etcd --name fleet-demo --data-dir "$work/etcd" \
  --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
  --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
  --initial-cluster fleet-demo=http://127.0.0.1:23800 --log-level warn >"$work/etcd.log" 2>&1 &
pids+=($!)
for c in a b c; do
  "$bin" agent --config "examples/fleet/agent-$c.toml" >"$work/agent-$c.log" 2>&1 &
  pids+=($!)
  declare "agent_$c=$!"
done
for n in 1 2; do
  "$bin" serve --config "examples/fleet/dns-$n.toml" >"$work/dns-$n.log" 2>&1 &
  pids+=($!)
done

ask() { dig @127.0.0.1 -p "$1" +time=1 +tries=1 +short "$2" "${3:-A}" 2>/dev/null | sort | tr '\n' ' '; }
wait_for() { # port name want
  for _ in $(seq 1 100); do
    [ "$(ask "$1" "$2")" = "$3" ] && return 0
    sleep 0.2
  done
  echo "fleet-demo: $2 on :$1 answered '$(ask "$1" "$2")', expected '$3'; logs in $work" >&2
  return 1
}
wait_for 5353 payment.default.svc.clusterset.local "10.96.10.10 "
wait_for 5354 payment.default.svc.clusterset.local "10.97.10.10 "
echo "fleet up: etcd 127.0.0.1:23790, agents for cluster-a/b/c, DNS on 127.0.0.1:5353 (in cluster-a) and :5354 (in cluster-b)"
echo "  dig @127.0.0.1 -p 5353 +short payment.default.svc.clusterset.local   -> $(ask 5353 payment.default.svc.clusterset.local)"
echo "  dig @127.0.0.1 -p 5354 +short payment.default.svc.clusterset.local   -> $(ask 5354 payment.default.svc.clusterset.local)"
echo "  dig @127.0.0.1 -p 5354 +short reviews.default.svc.clusterset.local   -> $(ask 5354 reviews.default.svc.clusterset.local)"
echo "  curl -s 127.0.0.1:9153/metrics | grep fleetdns_registry_               (etcd state of DNS server 1)"
echo "logs: $work/*.log; kill an agent (kill -9 <pid>) and its cluster leaves the answers within 5 s"

if $check; then
  # cluster-a's agent dies: payment on the cluster-a server falls back to cluster-b's ClusterIP.
  kill -9 "$agent_a"
  wait_for 5353 payment.default.svc.clusterset.local "10.97.10.10 "
  echo "fleet-demo --check: passed (cluster-a left the answers after its agent was killed)"
  exit 0
fi
echo "Ctrl-C stops everything."
wait
