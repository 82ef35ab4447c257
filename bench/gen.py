#!/usr/bin/env python3
"""Generates the benchmark fleet for bench/answer-path.sh (stdlib only, deterministic).

Writes into OUT:
  fleet/fleetdns.toml               fleetdns config (files source, cluster_id = cluster-0)
  fleet/clusters/<cluster>/*.yaml   Service + ServiceExport + EndpointSlice per service,
                                    100 services per file
  knot/zones/<zone>.zone            the same names and data as Knot zone files
  queries.txt                       dnsperf input (~80% A, ~10% SRV, ~10% NXDOMAIN)
  check-names.txt                   "<name> <type>" lines that answer-path.sh compares with dig

The fleet (C clusters, S services per cluster, N namespaces):
  * cluster c, service i (i = 0..S-1) is svc-<i> in namespace ns-<i mod N>, ClusterIP
    10.<96+c>.<(i+1) div 256>.<(i+1) mod 256>, ports http:80/TCP and grpc:9090/TCP, one ready
    endpoint. Every cluster exports it, so it is a multi-cluster service; under local-first
    with cluster_id = cluster-0 the clusterset answer is cluster-0's ClusterIP alone.
  * except: for i mod 10 == 9 cluster-0 names its service local-<i> instead of svc-<i>. Then
    svc-<i> is exported by the other clusters only and its clusterset answer is all their
    ClusterIPs (fleetdns rotates their order per query; compare sorted), while local-<i> is a
    single-cluster service answered with cluster-0's ClusterIP. Every cluster still holds
    exactly S services.
The answers under local-first (the rules of crates/fleetdns-dns/src/compile.rs):
  <svc>.<ns>.svc.clusterset.local           A    (see above), TTL 5
  <svc>.<ns>.svc.clusterset.local           SRV  0 50 80 <svc-name>. / 0 50 9090 <svc-name>.
  _http._tcp.<svc>.<ns>.svc.clusterset.local SRV 0 100 80 <svc>.<ns>.svc.clusterset.local.
  _grpc._tcp.<svc>.<ns>.svc.clusterset.local SRV 0 100 9090 ...
  the same under <svc>.<ns>.svc.<cluster>.local with that cluster's ClusterIP
  apex: SOA ns.dns.<zone>. hostmaster.<zone>. <serial> 7200 1800 86400 5 (TTL 5),
        NS ns.dns.<zone>. (TTL 5), dns-version TXT "1.0.0" (clusterset) / "1.1.0" (TTL 28800)
"""

import argparse
import os
import random

TTL = 5
VERSION_TTL = 28800
PORTS = [("http", 80), ("grpc", 9090)]
CREATED = "2024-01-01T00:00:00Z"


def cluster_ip(c, i):
    n = i + 1
    return f"10.{96 + c}.{n >> 8}.{n & 255}"


def pod_ip(c, i):
    n = i + 1
    return f"10.{16 + c}.{n >> 8}.{n & 255}"


def service_names(c, i):
    """Name of service i in cluster c."""
    if c == 0 and i % 10 == 9:
        return f"local-{i}"
    return f"svc-{i}"


def manifests(name, ns, ip, pod):
    ports = "\n".join(
        f"  - name: {p}\n    protocol: TCP\n    port: {n}\n    targetPort: {n}" for p, n in PORTS
    )
    eports = "\n".join(f"- name: {p}\n  protocol: TCP\n  port: {n}" for p, n in PORTS)
    return f"""---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {ns}
spec:
  type: ClusterIP
  clusterIP: {ip}
  clusterIPs: [{ip}]
  ports:
{ports}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata:
  name: {name}
  namespace: {ns}
  creationTimestamp: "{CREATED}"
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-abcde
  namespace: {ns}
  labels:
    kubernetes.io/service-name: {name}
addressType: IPv4
ports:
{eports}
endpoints:
- addresses: [{pod}]
  conditions:
    ready: true
"""


def headless_manifests(name, ns, pods):
    """A headless Service exported from cluster-0 with one ready endpoint per pod IP,
    hostnames pod-0, pod-1, ..."""
    ports = "\n".join(
        f"  - name: {p}\n    protocol: TCP\n    port: {n}\n    targetPort: {n}" for p, n in PORTS
    )
    eports = "\n".join(f"- name: {p}\n  protocol: TCP\n  port: {n}" for p, n in PORTS)
    eps = "\n".join(
        f"- addresses: [{ip}]\n  hostname: pod-{e}\n  conditions:\n    ready: true"
        for e, ip in enumerate(pods)
    )
    return f"""---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {ns}
spec:
  type: ClusterIP
  clusterIP: None
  ports:
{ports}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata:
  name: {name}
  namespace: {ns}
  creationTimestamp: "{CREATED}"
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-abcde
  namespace: {ns}
  labels:
    kubernetes.io/service-name: {name}
addressType: IPv4
ports:
{eports}
endpoints:
{eps}
"""


def headless_pods(j, endpoints):
    return [f"10.40.{(j * endpoints + e + 1) >> 8}.{(j * endpoints + e + 1) & 255}" for e in range(endpoints)]


def headless_records(owner_fqdn, pod_prefix, pods):
    """A + SRV records of one headless service exported by one cluster (compile.rs
    clusterset_headless / cluster_service): pod names <pod>.<pod_prefix>, SRV N x M."""
    lines = [f"{owner_fqdn}. {TTL} IN A {ip}" for ip in pods]
    names = [f"pod-{e}.{pod_prefix}" for e in range(len(pods))]
    lines += [f"{n}. {TTL} IN A {ip}" for n, ip in zip(names, pods)]
    per_port = max(100 // len(pods), 1)
    bare = max(100 // (len(pods) * len(PORTS)), 1)
    for p, port in PORTS:
        for n in names:
            lines.append(f"_{p}._tcp.{owner_fqdn}. {TTL} IN SRV 0 {per_port} {port} {n}.")
            lines.append(f"{owner_fqdn}. {TTL} IN SRV 0 {bare} {port} {n}.")
    return lines


def zone_header(zone, serial, version):
    return (
        f"$ORIGIN {zone}.\n$TTL {TTL}\n"
        f"@ {TTL} IN SOA ns.dns.{zone}. hostmaster.{zone}. {serial} 7200 1800 86400 {TTL}\n"
        f"@ {TTL} IN NS ns.dns.{zone}.\n"
        f'dns-version {VERSION_TTL} IN TXT "{version}"\n'
    )


def service_records(owner_fqdn, ips):
    """A + SRV records of one ClusterSetIP service (compile.rs clusterset_ip/cluster_service)."""
    lines = [f"{owner_fqdn}. {TTL} IN A {ip}" for ip in sorted(ips)]
    bare_weight = max(100 // len(PORTS), 1)
    for p, n in PORTS:
        lines.append(f"{owner_fqdn}. {TTL} IN SRV 0 {bare_weight} {n} {owner_fqdn}.")
        lines.append(f"_{p}._tcp.{owner_fqdn}. {TTL} IN SRV 0 100 {n} {owner_fqdn}.")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--clusters", type=int, default=3)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument("--queries", type=int, default=200000, help="lines in queries.txt")
    ap.add_argument("--serial", type=int, default=1)
    ap.add_argument("--listen", default="127.0.0.1:5353")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--headless", type=int, default=0,
                    help="headless services hl-<j> exported by cluster-0 (the answer-path mixes)")
    ap.add_argument("--endpoints", type=int, default=10, help="ready endpoints per headless service")
    ap.add_argument("--mixes", action="store_true",
                    help="also write queries-{clusterset,headless,nxdomain,types}.txt")
    a = ap.parse_args()
    C, S, N = a.clusters, a.services, a.namespaces
    if not (2 <= C <= 100):
        ap.error("--clusters must be 2..100 (cluster-0 plus at least one other)")
    if not (10 <= S <= 65000):
        ap.error("--services must be 10..65000")
    if not (1 <= N <= S):
        ap.error("--namespaces must be 1..services")
    H, E = a.headless, a.endpoints
    if H * E > 65000 or not (1 <= E <= 100):
        ap.error("--headless x --endpoints must be at most 65000, --endpoints 1..100")
    if a.mixes and H < 1:
        ap.error("--mixes needs --headless")

    fleet = os.path.join(a.out, "fleet")
    zones_dir = os.path.join(a.out, "knot", "zones")
    os.makedirs(zones_dir, exist_ok=True)
    clusters = [f"cluster-{c}" for c in range(C)]

    # --- manifests + config ---
    for c, cname in enumerate(clusters):
        d = os.path.join(fleet, "clusters", cname)
        os.makedirs(d, exist_ok=True)
        # 100 services (300 documents) per file, as real manifest sets are split.
        for start in range(0, S, 100):
            with open(os.path.join(d, f"services-{start // 100:04d}.yaml"), "w") as f:
                for i in range(start, min(S, start + 100)):
                    f.write(manifests(service_names(c, i), f"ns-{i % N}", cluster_ip(c, i), pod_ip(c, i)))
        if c == 0:
            for start in range(0, H, 100):
                with open(os.path.join(d, f"headless-{start // 100:04d}.yaml"), "w") as f:
                    for j in range(start, min(H, start + 100)):
                        f.write(headless_manifests(f"hl-{j}", f"ns-{j % N}", headless_pods(j, E)))
    with open(os.path.join(fleet, "fleetdns.toml"), "w") as f:
        f.write(
            'cluster_id = "cluster-0"\n\n[dns]\n'
            f'listen = "{a.listen}"\n\n[registry]\nkind = "memory"\n\n'
            '[[sources]]\nkind = "files"\npath = "clusters"\n'
        )

    # --- expected answers: name -> ips ---
    clusterset = {}  # fqdn (no dot) -> [ips]
    per_cluster = {cname: {} for cname in clusters}
    exporters = {}  # (name, ns) -> [(c, ip)]
    for c, cname in enumerate(clusters):
        for i in range(S):
            name, ns = service_names(c, i), f"ns-{i % N}"
            ip = cluster_ip(c, i)
            exporters.setdefault((name, ns), []).append((c, ip))
            per_cluster[cname][f"{name}.{ns}.svc.{cname}.local"] = [ip]
    for (name, ns), ex in sorted(exporters.items()):
        local = [ip for c, ip in ex if c == 0]
        # local-first: cluster-0's IP if it exports the service (every endpoint is ready),
        # otherwise every ready exporting cluster's IP.
        clusterset[f"{name}.{ns}.svc.clusterset.local"] = local or [ip for _, ip in ex]

    # --- zone files ---
    with open(os.path.join(zones_dir, "clusterset.local.zone"), "w") as f:
        f.write(zone_header("clusterset.local", a.serial, "1.0.0"))
        for owner, ips in clusterset.items():
            f.write("\n".join(service_records(owner, ips)) + "\n")
        for j in range(H):
            owner = f"hl-{j}.ns-{j % N}.svc.clusterset.local"
            f.write("\n".join(headless_records(owner, f"{clusters[0]}.{owner}", headless_pods(j, E))) + "\n")
    for cname in clusters:
        zone = f"{cname}.local"
        with open(os.path.join(zones_dir, f"{zone}.zone"), "w") as f:
            f.write(zone_header(zone, a.serial, "1.1.0"))
            for owner, ips in per_cluster[cname].items():
                f.write("\n".join(service_records(owner, ips)) + "\n")
            if cname == clusters[0]:
                for j in range(H):
                    owner = f"hl-{j}.ns-{j % N}.svc.{zone}"
                    f.write("\n".join(headless_records(owner, owner, headless_pods(j, E))) + "\n")
    with open(os.path.join(a.out, "knot", "zones.list"), "w") as f:
        f.write("clusterset.local\n" + "".join(f"{c}.local\n" for c in clusters))

    # --- queries: ~80% A (half clusterset, half per-cluster), ~10% SRV, ~10% NXDOMAIN ---
    rng = random.Random(a.seed)
    cs_names = list(clusterset)
    pc_names = [n for cname in clusters for n in per_cluster[cname]]
    with open(os.path.join(a.out, "queries.txt"), "w") as f:
        for _ in range(a.queries):
            r = rng.random()
            if r < 0.40:
                f.write(f"{rng.choice(cs_names)} A\n")
            elif r < 0.80:
                f.write(f"{rng.choice(pc_names)} A\n")
            elif r < 0.90:
                p = rng.choice(PORTS)[0]
                base = rng.choice(cs_names) if rng.random() < 0.5 else rng.choice(pc_names)
                f.write(f"_{p}._tcp.{base} SRV\n")
            else:
                ns = f"ns-{rng.randrange(N)}"
                zone = "clusterset.local" if rng.random() < 0.5 else f"{rng.choice(clusters)}.local"
                f.write(f"nosuch-{rng.randrange(10**6)}.{ns}.svc.{zone} A\n")

    # --- the answer-path mixes: one query file per mix ---
    if a.mixes:
        hl_names = [f"hl-{j}.ns-{j % N}.svc.clusterset.local" for j in range(H)]
        zones = ["clusterset.local"] + [f"{c}.local" for c in clusters]
        svc_names = [n for n in cs_names if n.startswith("svc-")]
        words = ["api", "www", "github", "com", "example", "org", "internal", "corp", "cdn", "auth"]
        mixes = {
            # existing ClusterSetIP names, type A
            "clusterset": lambda: f"{rng.choice(cs_names)} A",
            # headless names with E ready endpoints, type A (E records per answer)
            "headless": lambda: f"{rng.choice(hl_names)} A",
            # ndots:5 search-path junk: a random label under an existing service, or a
            # short external name under an existing namespace (<name>.<ns>.svc.<zone>)
            "nxdomain": lambda: (
                f"x{rng.randrange(10**6)}.{rng.choice(svc_names)} A" if rng.random() < 0.5 else
                f"{rng.choice(words)}.{rng.choice(words)}{rng.randrange(100)}.ns-{rng.randrange(N)}.svc.{rng.choice(zones)} A"
            ),
            # an even mix of A, AAAA (NODATA: the fleet is IPv4-only) and SRV on existing names
            "types": lambda: rng.choice([
                lambda: f"{rng.choice(cs_names)} A",
                lambda: f"{rng.choice(cs_names)} AAAA",
                lambda: f"_{rng.choice(PORTS)[0]}._tcp.{rng.choice(cs_names)} SRV",
            ])(),
        }
        for mix, line in mixes.items():
            with open(os.path.join(a.out, f"queries-{mix}.txt"), "w") as f:
                for _ in range(a.queries):
                    f.write(line() + "\n")

    # --- names compared with dig ---
    checks = [
        "clusterset.local SOA",
        "clusterset.local NS",
        "dns-version.clusterset.local TXT",
        "cluster-0.local SOA",
        f"dns-version.{clusters[-1]}.local TXT",
        "svc-0.ns-0.svc.clusterset.local A",  # multi-cluster, local-first -> cluster-0
        "svc-9.ns-9.svc.clusterset.local A" if N > 9 else f"svc-9.ns-{9 % N}.svc.clusterset.local A",
        f"local-9.ns-{9 % N}.svc.clusterset.local A",
        f"svc-{S - 1}.ns-{(S - 1) % N}.svc.clusterset.local A",
        "_http._tcp.svc-0.ns-0.svc.clusterset.local SRV",
        f"_grpc._tcp.svc-9.ns-{9 % N}.svc.clusterset.local SRV",
        "svc-0.ns-0.svc.clusterset.local SRV",
        "svc-0.ns-0.svc.clusterset.local AAAA",  # NODATA
        "ns-0.svc.clusterset.local A",  # empty non-terminal: NODATA
        "nosuch-1.ns-0.svc.clusterset.local A",  # NXDOMAIN
        "nosuch.clusterset.local A",
    ]
    for cname in clusters:
        checks += [
            f"svc-1.ns-{1 % N}.svc.{cname}.local A",
            f"_http._tcp.svc-1.ns-{1 % N}.svc.{cname}.local SRV",
            f"nosuch-2.ns-{2 % N}.svc.{cname}.local A",
        ]
    checks.append(f"svc-{S - 1}.ns-{(S - 1) % N}.svc.{clusters[-1]}.local A")
    if H:
        checks += [
            "hl-0.ns-0.svc.clusterset.local A",
            f"hl-{H - 1}.ns-{(H - 1) % N}.svc.clusterset.local A",
            "pod-3.cluster-0.hl-0.ns-0.svc.clusterset.local A",
            "cluster-0.hl-0.ns-0.svc.clusterset.local A",  # empty non-terminal: NODATA
            "hl-0.ns-0.svc.cluster-0.local A",
            "pod-1.hl-0.ns-0.svc.cluster-0.local A",
            "hl-0.ns-0.svc.clusterset.local AAAA",
            "x1.svc-1.ns-1.svc.clusterset.local A" if N > 1 else "x1.svc-1.ns-0.svc.clusterset.local A",
            "api.github0.ns-0.svc.cluster-1.local A",
        ]
    rng2 = random.Random(a.seed + 1)
    checks += [f"{n} A" for n in rng2.sample(cs_names, 10)]
    checks += [f"{n} A" for n in rng2.sample(pc_names, 10)]
    with open(os.path.join(a.out, "check-names.txt"), "w") as f:
        f.write("\n".join(checks) + "\n")

    n_names = len(clusterset) + sum(len(v) for v in per_cluster.values())
    print(f"generated {C} clusters x {S} services ({len(clusterset)} clusterset names, "
          f"{n_names} service names in all), {a.queries} queries")


if __name__ == "__main__":
    main()
