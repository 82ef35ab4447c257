#!/usr/bin/env python3
"""Propagation latency through the etcd registry: rewrite one Service's ClusterIP in an
agent's manifest folder, then ask a DNS server (another process, reading etcd) over UDP every
millisecond until it answers the new address. Prints p50/p99/max over N edits.

usage: propagate.py MANIFEST_FILE DNS_PORT NAME EDITS
"""
import socket
import statistics
import struct
import sys
import time

manifest, port, name, edits = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])


def query(sock, qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", 1, 1)
    sock.send(q)
    try:
        r = sock.recv(4096)
    except socket.timeout:
        return None
    if len(r) < 12 or struct.unpack(">H", r[:2])[0] != qid:
        return None
    ancount = struct.unpack(">H", r[6:8])[0]
    return socket.inet_ntoa(r[-4:]) if ancount == 1 else None


sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.connect(("127.0.0.1", port))
sock.settimeout(0.05)
text = open(manifest).read()
marker = "10.97.10.10"
assert marker in text, f"{manifest} must contain {marker}"
latencies = []
qid = 1
for i in range(edits):
    new = f"10.97.{20 + i // 200}.{1 + i % 200}"
    with open(manifest + ".tmp", "w") as f:
        f.write(text.replace(marker, new))
    start = time.monotonic()
    import os
    os.replace(manifest + ".tmp", manifest)
    while True:
        qid = (qid + 1) & 0xFFFF
        if query(sock, qid) == new:
            break
        if time.monotonic() - start > 10:
            sys.exit(f"edit {i}: {new} not answered within 10 s")
        time.sleep(0.001)
    latencies.append((time.monotonic() - start) * 1000)
    time.sleep(0.05)
with open(manifest, "w") as f:
    f.write(text)
latencies.sort()
p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
print(f"edits={len(latencies)} p50_ms={p(0.50):.1f} p99_ms={p(0.99):.1f} max_ms={latencies[-1]:.1f} mean_ms={statistics.mean(latencies):.1f}")
