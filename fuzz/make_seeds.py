#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/seeds/<target>/ (fuzz/README.md).

Real traffic where there is some: the queries `dig` sends (UDP and TCP, captured on a loopback
listener), the answers a real Knot DNS gives to them (knotd started here on a loopback port with
a small zone), the demo manifests of examples/demo and examples/mesh (YAML as they are, and
as the JSON the API server sends), registry values in the layout the etcd codec writes
(its tests pin that layout), and the repository's TOML configs (every example and deploy config,
every ```toml block of the docs). Needs dig, knotd and python3 with PyYAML;
`python3 make_seeds.py config` writes only the config seeds and needs none of them. The
committed corpora are these seeds after a fuzzing run, minimized with `cargo fuzz cmin`.
"""

import glob
import re

import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "seeds")


def save(target, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- queries as dig sends them ---------------------------------------------------------------

DIG = [
    "web.default.svc.clusterset.local A",
    "WeB.DeFault.svc.clusterset.local AAAA",
    "web.default.svc.clusterset.local ANY",
    "_http._tcp.web.default.svc.clusterset.local SRV",
    "_dns._udp.web.default.svc.clusterset.local SRV",
    "db.default.svc.clusterset.local A",
    "pod-0.east.db.default.svc.clusterset.local A",
    "pod-1.west.db.default.svc.clusterset.local AAAA",
    "_http._tcp.db.default.svc.clusterset.local SRV",
    "web.default.svc.east.clusterset.local A",
    "only-west.prod.svc.clusterset.local A",
    "only-gone.prod.svc.clusterset.local A",
    "missing.default.svc.clusterset.local A",
    "clusterset.local SOA",
    "clusterset.local NS",
    "default.svc.clusterset.local TXT",
    "api.example.com A",
    "x.wild.example.com A",
    "alloc.example.com AAAA",
    "web.default.east A",
    "web.default.global A",
    "www.example.net A",
    "a.sub.clusterset.local MX",
    "version.bind CH TXT",
    ". NS",
]
DIG_FLAGS = [[], ["+dnssec"], ["+nsid"], ["+bufsize=512"], ["+noedns"], ["+edns=1"], ["+cd", "+nocookie"]]


def capture_dig():
    """Every query dig sends, over UDP and TCP, as bytes."""
    port = free_port()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    tcp = socket.socket()
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", port))
    tcp.listen(16)
    got = {"udp": [], "tcp": []}

    def udp_loop():
        while True:
            data, _ = udp.recvfrom(65535)
            if not data:
                return
            got["udp"].append(data)

    def tcp_loop():
        while True:
            conn, _ = tcp.accept()
            conn.settimeout(0.5)
            buf = b""
            try:
                while True:
                    chunk = conn.recv(65535)
                    if not chunk:
                        break
                    buf += chunk
            except socket.timeout:
                pass
            conn.close()
            if buf == b"stop":
                return
            got["tcp"].append(buf)

    threads = [threading.Thread(target=udp_loop, daemon=True), threading.Thread(target=tcp_loop, daemon=True)]
    for t in threads:
        t.start()
    for i, q in enumerate(DIG):
        words = q.split()
        for flags in ([DIG_FLAGS[i % len(DIG_FLAGS)]] + ([["+tcp"]] if i % 3 == 0 else [])):
            subprocess.run(
                ["dig", "@127.0.0.1", "-p", str(port), "+time=1", "+tries=1", "+retry=0"] + flags + words,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
    time.sleep(0.2)
    return got["udp"], got["tcp"]


# --- answers from Knot ------------------------------------------------------------------------

ZONE = "fwd.example.net"
ZONEFILE = f"""$ORIGIN {ZONE}.
$TTL 300
@ IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 7200 1800 86400 60
@ IN NS ns.{ZONE}.
ns IN A 127.0.0.1
www IN A 192.0.2.1
www IN A 192.0.2.2
www IN AAAA 2001:db8::1
alias IN CNAME www
mail IN MX 10 www
_sip._udp IN SRV 0 5 5060 www
big IN TXT "{'x' * 250}" "{'y' * 250}"
big IN TXT "{'z' * 250}" "{'w' * 250}"
many 60 IN A 192.0.2.10
many 30 IN A 192.0.2.11
many 90 IN A 192.0.2.12
"""
UPSTREAM_QUERIES = [
    ("www", "A"), ("WWW", "AAAA"), ("alias", "A"), ("mail", "MX"), ("_sip._udp", "SRV"),
    ("big", "TXT"), ("many", "A"), ("nosuch", "A"), ("www", "TXT"), ("@", "SOA"), ("@", "NS"),
    ("www", "ANY"),
]


def dns_query(qid, name, qtype, edns):
    types = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33, "ANY": 255}
    wire = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".") if l) + b"\x00"
    p = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0) + wire + struct.pack(">HH", types[qtype], 1)
    if edns:
        p += b"\x00" + struct.pack(">HHIH", 41, 1232, 0, 0)
    return p


def knot_answers():
    tmp = tempfile.mkdtemp(prefix="fleetdns-seeds-")
    port = free_port()
    os.makedirs(os.path.join(tmp, "zones"))
    os.makedirs(os.path.join(tmp, "run"))
    with open(os.path.join(tmp, "zones", f"{ZONE}.zone"), "w") as f:
        f.write(ZONEFILE)
    conf = os.path.join(tmp, "knot.conf")
    with open(conf, "w") as f:
        f.write(f"""server:
    rundir: "{tmp}/run"
    listen: 127.0.0.1@{port}
database:
    storage: "{tmp}/storage"
template:
  - id: default
    storage: "{tmp}/zones"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: {ZONE}
""")
    knot = subprocess.Popen(["knotd", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pairs = []
    try:
        deadline = time.time() + 20
        for i, (label, qtype) in enumerate(UPSTREAM_QUERIES):
            name = ZONE if label == "@" else f"{label}.{ZONE}"
            for edns in (False, True):
                q = dns_query(0x1000 + i * 2 + edns, name, qtype, edns)
                while True:
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    s.settimeout(0.5)
                    try:
                        s.sendto(q, ("127.0.0.1", port))
                        r, _ = s.recvfrom(65535)
                        break
                    except OSError:
                        if time.time() > deadline:
                            raise SystemExit("knotd did not answer")
                        time.sleep(0.2)
                    finally:
                        s.close()
                pairs.append((q, r))
                # Over TCP as well (a big answer is whole there, truncated over UDP).
                t = socket.create_connection(("127.0.0.1", port), timeout=2)
                t.sendall(struct.pack(">H", len(q)) + q)
                n = struct.unpack(">H", t.recv(2))[0]
                r = b""
                while len(r) < n:
                    r += t.recv(n - len(r))
                t.close()
                pairs.append((q, r))
    finally:
        knot.terminate()
        knot.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return pairs


# --- manifests and objects --------------------------------------------------------------------

def manifests():
    files = []
    for base in ("examples/demo/clusters", "examples/mesh/clusters"):
        for dirpath, _, names in os.walk(os.path.join(ROOT, base)):
            for n in sorted(names):
                if n.endswith((".yaml", ".yml", ".json")):
                    files.append(os.path.join(dirpath, n))
    return files


# --- etcd values ------------------------------------------------------------------------------

ETCD_VALUES = [
    # As the codec writes them (crates/fleetdns-etcd/src/codec.rs tests pin this layout).
    '{"v":1,"generation":3,"published":1700000000,"exports":2}',
    '{"v":1,"type":"ClusterSetIP","ports":[{"name":"http","protocol":"TCP","port":80}],"cluster_ips":["10.96.0.10","fd00::10"],"endpoints":[{"addresses":["10.1.0.1"],"ready":true}],"created":1700000000}',
    '{"v":1,"type":"Headless","ports":[{"name":"http","protocol":"SCTP","port":53,"app_protocol":"h2c"}],"endpoints":[{"addresses":["10.1.0.1","fd00::1"],"hostname":"web-0","ready":false,"zone":"z"}],"created":1700000000}',
    '{"v":1,"ip":"240.240.0.7","allocated":1700000000}',
    '{"v":1,"ip":"fd00::1","allocated":0}',
    '{"v":1,"entries":[{"namespace":"istio-system","name":"api","hosts":["api.example.com","*.wild.example.com"],"addresses":["192.0.2.5"],"status_addresses":[["api.example.com","240.240.0.1"]],"resolution":"STATIC","autoallocate":true,"created":1700000000}]}',
    '{"v":1,"entries":[{"namespace":"n","name":"s","hosts":["dns.example.com"],"resolution":"DNS","autoallocate":false,"created":0}]}',
    '{"v":9,"generation":1,"published":0,"exports":0}',
    # Keys, for the key layout's parser.
    "/fleetdns/clusters/east",
    "/fleetdns/exports/east/3/default/web",
    "/fleetdns/vips/default/web",
    "/fleetdns/vips6/default/web",
    "/fleetdns/host-vips/4/api.example.com",
    "/fleetdns/service-entries/east",
]


# --- TOML configs ------------------------------------------------------------------------------

def configs():
    """The repository's configs: every .toml of examples/ and deploy/ (deploy/fleetdns.toml is
    the ConfigMap's content), and every ```toml block of the Markdown docs (whole configs and
    section snippets; a snippet alone may be refused, which is a path to fuzz too)."""
    out = []
    for pattern in ("examples/**/*.toml", "deploy/**/*.toml"):
        for path in sorted(glob.glob(os.path.join(ROOT, pattern), recursive=True)):
            with open(path, "rb") as f:
                out.append(f.read())
    docs = [os.path.join(ROOT, "README.md")] + sorted(
        glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
        + glob.glob(os.path.join(ROOT, "deploy", "**", "*.md"), recursive=True)
        + glob.glob(os.path.join(ROOT, "examples", "**", "*.md"), recursive=True)
    )
    for path in docs:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for block in re.findall(r"^```toml\n(.*?)^```", text, re.S | re.M):
            out.append(block.encode())
    return out


# The sections and keys no repository config uses ([[forward]] with a resolv.conf upstream,
# [[sync]] over rfc2136 with TSIG and over etcd, an etcd registry with TLS and both VIP ranges,
# a kubernetes source, [cache]): configs that parse, so mutations start from every key.
EXTRA_CONFIGS = [
    """cluster_id = "east"
[dns]
listen = "0.0.0.0:5353"
udp_workers = 2
reuse_port = true
allow = ["10.0.0.0/8", "fd00::/8"]
query_log = true
nsid = "fleetdns-0"
[registry]
kind = "memory"
liveness_timeout_ms = 30000
vip_range = "240.240.0.0/16"
vip_release_grace_secs = 60
vip_range_v6 = "2001:2::/48"
[clusterset]
policy = "local-first"
ttl = 5
[cluster_zones]
enabled = true
[mesh]
enabled = true
global_suffix = "global"
gateways = { "west" = "192.0.2.10:15443" }
[cache]
capacity = 1000
max_ttl = 3600
min_ttl = 5
serve_stale_ms = 30000
prefetch = 3
[[forward]]
zone = "example.com"
upstreams = ["10.244.0.5", "[fd00::5]:5353", "/etc/resolv.conf"]
policy = "round_robin"
health_check_ms = 1000
max_fails = 3
timeout_ms = 2000
max_concurrent = 100
[[forward]]
zone = "."
upstreams = ["9.9.9.9"]
force_tcp = true
[[sources]]
kind = "files"
path = "clusters"
poll_interval_ms = 2000
[[sources]]
kind = "kubernetes"
cluster_id = "west"
kubeconfig = "west.kubeconfig"
context = "west"
write_back = true
[[sync]]
provider = "rfc2136"
zone = "fleet.example.com"
server = "192.0.2.53:53"
tsig_key = "fleetdns."
tsig_algorithm = "hmac-sha256"
tsig_secret_file = "tsig.secret"
owner_id = "fleetdns-east"
policy = "sync"
publish_clusterset = true
domain_filter = ["fleet.example.com"]
regex_domain_exclusion = "^internal-"
managed_record_types = ["A", "AAAA", "CNAME"]
txt_prefix = "fleetdns-%{record_type}-"
batch_size = 20
""",
    """[registry]
kind = "etcd"
endpoints = ["https://etcd-0:2379", "https://etcd-1:2379"]
prefix = "/fleetdns/v1"
lease_ttl_secs = 15
username = "fleetdns"
password = "secret"
ca_file = "ca.pem"
cert_file = "client.pem"
key_file = "client-key.pem"
vip_range = "241.0.0.0/8"
[clusterset]
policy = "vip"
[[sync]]
provider = "etcd"
zone = "skydns.local"
owner_id = "fleetdns"
policy = "upsert-only"
prefix = "/skydns/"
""",
]


def config_seeds():
    shutil.rmtree(os.path.join(OUT, "config"), ignore_errors=True)
    for text in configs() + EXTRA_CONFIGS:
        save("config", text)


def main():
    if sys.argv[1:] == ["config"]:
        config_seeds()
        print("config", len(os.listdir(os.path.join(OUT, "config"))))
        return
    shutil.rmtree(OUT, ignore_errors=True)
    udp, tcp = capture_dig()
    if not udp:
        raise SystemExit("dig sent nothing")
    for q in udp:
        save("query_udp", q)
        save("question_name", q[12:])
    for stream in tcp:
        save("query_tcp", stream)
    # Pipelined: several framed queries on one connection.
    for i in range(0, len(udp) - 3, 4):
        save("query_tcp", b"".join(struct.pack(">H", len(q)) + q for q in udp[i:i + 4]))
    for q, r in knot_answers():
        save("upstream_answer", struct.pack(">H", len(q)) + q + r)
    for path in manifests():
        with open(path, "rb") as f:
            text = f.read()
        save("manifest", text)
        docs = [d for d in yaml.safe_load_all(text.decode()) if d]
        save("manifest", json.dumps(docs[0], indent=2) if len(docs) == 1 else json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}, indent=2))
        save("kube_objects", json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
        for d in docs:
            save("kube_objects", json.dumps(d))
    for v in ETCD_VALUES:
        save("etcd_value", v)
    config_seeds()
    for t in sorted(os.listdir(OUT)):
        print(t, len(os.listdir(os.path.join(OUT, t))))


if __name__ == "__main__":
    sys.exit(main())
