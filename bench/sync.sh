#!/usr/bin/env bash
# The external DNS sync, measured: time from a manifest edit to the changed record answered by
# BIND (fleetdns serve → RFC 2136 UPDATE with TSIG → named; p50/p99 over N edits, with
# min_event_interval_ms 0 and with ExternalDNS's default 5000), and the first sync of a
# 10,000-record zone into BIND and Knot (records/s, UPDATE messages). Everything on loopback;
# results in bench/out/sync.txt.
#
# usage: bench/sync.sh [EDITS]   (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
edits=${1:-100}
bash scripts/deps.sh
cargo build --release -q -p fleetdns
cargo build --release -q -p fleetdns-publish --example sync_bench
bin=target/release/fleetdns
ex=target/release/examples/sync_bench
out=bench/out
work=$out/sync
rm -rf "$work"
mkdir -p "$work/bind" "$work/clusters"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
secret=q1FhTksPXgPFxLS0yQl8SVsJ6M4UUOgxbHzLMfn4Q0k=
bind_port=25393
d=$(realpath "$work/bind")
cat >"$d/named.conf" <<EOT
options { directory "$d"; pid-file "$d/named.pid"; session-keyfile "$d/session.key";
  listen-on port $bind_port { 127.0.0.1; }; listen-on-v6 { none; }; recursion no; notify no; };
controls { };
key "fleetdns-key" { algorithm hmac-sha256; secret "$secret"; };
zone "fleet.example.com" { type primary; file "$d/zone.db";
  allow-update { key "fleetdns-key"; }; allow-transfer { key "fleetdns-key"; }; };
EOT
printf '$ORIGIN fleet.example.com.\n$TTL 300\n@ SOA ns admin 1 3600 600 86400 60\n@ NS ns\nns A 127.0.0.1\n' >"$d/zone.db"
named -g -n 1 -c "$d/named.conf" >"$d/named.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do dig +short +tcp -p $bind_port @127.0.0.1 fleet.example.com SOA | grep -q ns && break; sleep 0.1; done

report=$out/sync.txt
{
  echo "# bench/sync.sh $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD)"
  echo "# $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(named -v); knotd $(knotd --version | awk '{print $NF}')"
} >"$report"

# One cluster folder with an annotated LoadBalancer Service whose address the edits change.
cp -r examples/demo/clusters/cluster-a "$work/clusters/"
cat >"$work/clusters/cluster-a/edge.yaml" <<EOT
apiVersion: v1
kind: Service
metadata:
  name: edge
  namespace: web
  annotations:
    external-dns.alpha.kubernetes.io/hostname: edge.fleet.example.com
spec:
  type: LoadBalancer
  clusterIP: 10.96.99.99
  externalIPs: ["10.97.10.10"]
EOT
echo "$secret" >"$work/tsig.secret"
latency() { # MIN_EVENT_INTERVAL_MS EDITS PORT
  cat >"$work/fleetdns.toml" <<EOT
[dns]
listen = "127.0.0.1:$3"
[[sources]]
kind = "files"
path = "clusters"
poll_interval_ms = 20
[[sync]]
provider = "rfc2136"
zone = "fleet.example.com"
server = "127.0.0.1:$bind_port"
tsig_key = "fleetdns-key"
tsig_algorithm = "hmac-sha256"
tsig_secret_file = "tsig.secret"
owner_id = "bench"
policy = "sync"
interval_ms = 60000
min_event_interval_ms = $1
EOT
  "$bin" serve --config "$work/fleetdns.toml" >"$work/serve-$1.log" 2>&1 &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 1 100); do
    [ "$(dig @127.0.0.1 -p $bind_port +short +time=1 +tries=1 edge.fleet.example.com)" = 10.97.10.10 ] && break
    sleep 0.1
  done
  echo "== edit -> answered by BIND: files source polled every 20 ms, min_event_interval_ms=$1, $2 edits" | tee -a "$report"
  python3 bench/propagate.py "$work/clusters/cluster-a/edge.yaml" $bind_port edge.fleet.example.com "$2" | tee -a "$report"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}
latency 0 "$edits" 25394
latency 5000 20 25395

echo "== first sync of a 10,000-record zone (each A with its TXT ownership record; TSIG hmac-sha256)" | tee -a "$report"
for server in bind knot; do
  for batch in 50 200; do
    "$ex" 10000 $batch $server | tr '\n' ' ' | tee -a "$report"
    echo | tee -a "$report"
  done
done
