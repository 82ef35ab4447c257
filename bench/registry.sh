#!/usr/bin/env bash
# The etcd registry, measured: propagation latency (an edit in one agent's cluster
# until a second process, a DNS server, answers it), update throughput (exports per second
# written and seen by a reader), and the time and memory for a DNS server to load a
# 100,000-service snapshot. Local etcd on 127.0.0.1:23791, everything on loopback; results in
# bench/out/registry.txt.
#
# usage: bench/registry.sh [SERVICES]   (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
services=${1:-100000}
bash scripts/deps.sh
cargo build --release -q -p fleetdns -p fleetdns-etcd --example etcd_bench
cargo build --release -q -p fleetdns
bin=target/release/fleetdns
ex=target/release/examples/etcd_bench
out=bench/out
work=$out/registry
rm -rf "$work"
mkdir -p "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
endpoint=http://127.0.0.1:23791
etcd --name bench --data-dir "$work/etcd" --quota-backend-bytes 8589934592 \
  --listen-client-urls $endpoint --advertise-client-urls $endpoint \
  --listen-peer-urls http://127.0.0.1:23801 --initial-advertise-peer-urls http://127.0.0.1:23801 \
  --initial-cluster bench=http://127.0.0.1:23801 --log-level warn >"$work/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/23791) 2>/dev/null && break; sleep 0.1; done

report=$out/registry.txt
{
  echo "# bench/registry.sh $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD)"
  echo "# $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); etcd $(etcd --version | head -1 | awk '{print $3}')"
} >"$report"

echo "== propagation: agent (files, polled every 20 ms) -> etcd -> DNS server" | tee -a "$report"
mkdir -p "$work/agent/cluster-b"
cp examples/demo/clusters/cluster-b/*.yaml "$work/agent/cluster-b/"
cat >"$work/agent.toml" <<EOT
[registry]
kind = "etcd"
endpoints = ["$endpoint"]
prefix = "/bench-propagate"
[[sources]]
kind = "files"
path = "agent"
poll_interval_ms = 20
EOT
cat >"$work/dns.toml" <<EOT
[dns]
listen = "127.0.0.1:25391"
[registry]
kind = "etcd"
endpoints = ["$endpoint"]
prefix = "/bench-propagate"
EOT
"$bin" agent --config "$work/agent.toml" >"$work/agent.log" 2>&1 &
pids+=($!)
"$bin" serve --config "$work/dns.toml" >"$work/dns.log" 2>&1 &
dns_pid=$!
pids+=($dns_pid)
for _ in $(seq 1 100); do
  [ "$(dig @127.0.0.1 -p 25391 +short +time=1 +tries=1 payment.default.svc.cluster-b.local)" = 10.97.10.10 ] && break
  sleep 0.1
done
python3 bench/propagate.py "$work/agent/cluster-b/payment.yaml" 25391 payment.default.svc.cluster-b.local 200 | tee -a "$report"
kill "$dns_pid"

echo "== update throughput (one writer, one reader)" | tee -a "$report"
"$ex" throughput $endpoint | tee -a "$report"

echo "== a DNS server loading a $services-service snapshot (3 clusters, 10 endpoints each)" | tee -a "$report"
"$ex" populate $endpoint /bench-load 3 "$services" | tee -a "$report"
cat >"$work/load.toml" <<EOT
[dns]
listen = "127.0.0.1:25392"
[registry]
kind = "etcd"
endpoints = ["$endpoint"]
prefix = "/bench-load"
request_timeout_ms = 60000
[cluster_zones]
enabled = true
EOT
start=$(date +%s.%N)
FLEETDNS_LOG=info "$bin" serve --config "$work/load.toml" >"$work/load.log" 2>&1 &
load_pid=$!
pids+=($load_pid)
for _ in $(seq 1 1200); do
  grep -q "services=$services" "$work/load.log" && break
  sleep 0.1
done
end=$(date +%s.%N)
grep -q "services=$services" "$work/load.log" || { echo "server did not load $services services" >&2; exit 1; }
rss=$(awk '/VmRSS/ {print $2}' /proc/$load_pid/status)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$load_pid/status)
compile=$(grep "services=$services" "$work/load.log" | tail -1 | sed -E 's/.*micros=([0-9]+).*/\1/')
names=$(grep "services=$services" "$work/load.log" | tail -1 | sed -E 's/.*names=([0-9]+).*/\1/')
answer=$(dig @127.0.0.1 -p 25392 +short +time=2 +tries=1 svc-12345.ns-45.svc.clusterset.local)
{
  echo "server_start_to_table_seconds=$(python3 -c "print(round($end - $start, 2))")"
  echo "table_compile_ms=$((compile / 1000)) names=$names"
  echo "server_rss_mib=$((rss / 1024)) peak_rss_mib=$((hwm / 1024))"
  echo "check: svc-12345.ns-45.svc.clusterset.local -> $answer"
} | tee -a "$report"
echo "results: $report"
