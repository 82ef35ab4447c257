#!/usr/bin/env python3
"""The Python half of bench/fleet-scale.sh (stdlib only): probe names, first complete answer,
service changes (a manifest edit for fleetdns, a knotc zone transaction for Knot) with their
latency, dnsperf waits, and the results table.

  fleet_scale.py probes CLUSTERS SERVICES NAMESPACES HEADLESS ENDPOINTS > probes.txt
      "<name> <ip>[,<ip>...]" lines: the last service of every cluster's last manifest file
      (per-cluster names), its clusterset name, and a headless pod name under both zones.
  fleet_scale.py first-answer PORT PID T0_NS PROBES TIMEOUT_S
      asks every probe name (A, UDP) every 2 ms until all answer exactly the expected set;
      prints "seconds rss_kib hwm_kib" (time since T0_NS, a `date +%s%N` taken just before
      the server was started; VmRSS/VmHWM of PID read at that moment).
  fleet_scale.py latency SERVER PORT WORK COUNT BUDGET_S TIMEOUT_S
      COUNT changes, one at a time; after each, asks the changed name every 1 ms until the new
      address answers. Stops early after BUDGET_S. Prints "n p50_ms p99_ms max_ms timeouts".
  fleet_scale.py churn SERVER PORT WORK COUNT RATE WAIT_S BUDGET_S
      COUNT changes at RATE per second without waiting for each (fewer if BUDGET_S runs out:
      a Knot transaction is synchronous), then waits (up to WAIT_S)
      until the last one answers. Prints "n seconds last_visible_ms" (last_visible_ms: from
      the last change until it answered, "timeout" if it did not).
  fleet_scale.py waits DNSPERF_OUTPUT
      "completed lost p50_ms p99_ms max_ms" from a `dnsperf -v` output.
  fleet_scale.py report RESULTS_TSV > results.md

SERVER is fleetdns (WORK = the fleet folder of gen.py: edits cluster-1's manifests),
knot:<knot.conf> (zone-begin / zone-unset / zone-set / zone-commit on cluster-1.local through one knotc) or
k8s:<url> (a PUT of the Service to the fake Kubernetes API server serving cluster-1,
crates/fleetdns-k8s-fake/examples/serve_fake.rs).
Both change the same services: svc-<i>.ns-<i mod N>.svc.cluster-1.local for ten i spread over
the manifest files, each to a fresh address 10.200.x.y, in turn. The state of each service
(current address) is kept in WORK/changes-state.json, so successive calls continue.
"""

import json
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen  # noqa: E402  (bench/gen.py: the fleet's names and addresses)


# ------------------------------------------------------------------ DNS
class Asker:
    def __init__(self, port, timeout=0.05):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(timeout)
        self.qid = 0

    def a(self, name):
        """The set of A addresses answered for name, or None (no answer, error, timeout)."""
        self.qid = (self.qid + 1) & 0xFFFF
        q = struct.pack(">HHHHHH", self.qid, 0x0000, 1, 0, 0, 0)
        for label in name.rstrip(".").split("."):
            q += bytes([len(label)]) + label.encode()
        q += b"\x00" + struct.pack(">HH", 1, 1)
        try:
            self.sock.send(q)
            while True:
                r = self.sock.recv(65535)
                if len(r) >= 12 and struct.unpack(">H", r[:2])[0] == self.qid:
                    break
        except (socket.timeout, ConnectionRefusedError, OSError):
            return None
        return parse_a(r)


def skip_name(r, i):
    while True:
        n = r[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += 1 + n


def parse_a(r):
    flags, qd, an = struct.unpack(">HH H", r[2:8])
    if flags & 0xF != 0:
        return None
    i = 12
    for _ in range(qd):
        i = skip_name(r, i) + 4
    out = set()
    for _ in range(an):
        i = skip_name(r, i)
        typ, _cls, _ttl, rdlen = struct.unpack(">HHIH", r[i:i + 10])
        i += 10
        if typ == 1 and rdlen == 4:
            out.add(socket.inet_ntoa(r[i:i + 4]))
        i += rdlen
    return out


def proc_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


# ------------------------------------------------------------------ probes
def probes(C, S, N, H, E):
    last = S - 1
    out = []
    for c in range(C):
        out.append((f"{gen.service_names(c, last)}.ns-{last % N}.svc.cluster-{c}.local", [gen.cluster_ip(c, last)]))
    ex = [gen.cluster_ip(c, last) for c in range(C) if gen.service_names(c, last) == f"svc-{last}"]
    local = [gen.cluster_ip(0, last)] if gen.service_names(0, last) == f"svc-{last}" else []
    out.append((f"svc-{last}.ns-{last % N}.svc.clusterset.local", local or ex))
    if H:
        j = H - 1
        pod = gen.headless_pods(j, E)[E - 1]
        out.append((f"pod-{E - 1}.hl-{j}.ns-{j % N}.svc.cluster-0.local", [pod]))
        out.append((f"pod-{E - 1}.cluster-0.hl-{j}.ns-{j % N}.svc.clusterset.local", [pod]))
    return out


def first_answer(port, pid, t0_ns, probes_file, timeout):
    want = []
    for line in open(probes_file):
        name, ips = line.split()
        want.append((name, set(ips.split(","))))
    asker = Asker(port, 0.05)
    t0 = t0_ns / 1e9
    pending = list(want)
    while True:
        pending = [(n, w) for n, w in pending if asker.a(n) != w]
        if not pending:
            break
        # a name answered once stays answered unless the server regresses; re-check all at the end
        if time.time() - t0 > timeout:
            sys.exit(f"first-answer: not all names answered within {timeout} s: {[n for n, _ in pending]}")
        if pid and not os.path.exists(f"/proc/{pid}"):
            sys.exit("first-answer: the server exited")
        time.sleep(0.002)
    if any(asker.a(n) != w for n, w in want):
        return first_answer(port, pid, t0_ns, probes_file, timeout)
    t = time.time() - t0
    print(f"{t:.3f} {proc_kib(pid, 'VmRSS')} {proc_kib(pid, 'VmHWM')}")


# ------------------------------------------------------------------ changes
class Changer:
    def __init__(self, server, work):
        self.server, self.work = server, work
        meta = json.load(open(os.path.join(work, "fleet-meta.json")))
        self.S, self.N = meta["services"], meta["namespaces"]
        self.targets = sorted({(self.S * k) // 10 + 1 for k in range(10)} - {self.S})
        self.state_file = os.path.join(work, f"changes-state-{server.split(':')[0]}.json")
        try:
            st = json.load(open(self.state_file))
        except (OSError, ValueError):
            st = {"n": 0, "ip": {str(i): gen.cluster_ip(1, i) for i in self.targets}}
        self.n, self.ip = st["n"], st["ip"]
        self.texts = {}
        self.knotc_proc = None

    def knotc(self, cmd):
        """One command through one long-running knotc (its interactive mode, line-buffered by
        stdbuf), so a change costs no process start-ups."""
        if self.knotc_proc is None:
            conf = self.server.split(":", 1)[1]
            self.knotc_proc = subprocess.Popen(
                ["stdbuf", "-oL", "knotc", "-c", conf], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, bufsize=1)
        p = self.knotc_proc
        p.stdin.write(cmd + "\n")
        p.stdin.flush()
        line = p.stdout.readline()
        if line.strip() != "OK":
            p.stdin.write("zone-abort cluster-1.local\n")
            p.stdin.flush()
            sys.exit(f"knotc {cmd}: {line.strip() or 'no answer'}")

    def save(self):
        json.dump({"n": self.n, "ip": self.ip}, open(self.state_file, "w"))

    def name(self, i):
        return f"svc-{i}.ns-{i % self.N}.svc.cluster-1.local"

    def change(self):
        """Makes one change; returns (name, new address, monotonic time the change began)."""
        i = self.targets[self.n % len(self.targets)]
        k = 1 + self.n
        new = f"10.{200 + (k >> 16)}.{(k >> 8) & 255}.{k & 255}"
        old = self.ip[str(i)]
        self.n += 1
        t = time.monotonic()
        if self.server == "fleetdns":
            path = os.path.join(self.work, "fleet", "clusters", "cluster-1", f"services-{i // 100:04d}.yaml")
            text = self.texts.get(path) or open(path).read()
            a = f"clusterIP: {old}\n"
            assert a in text, f"{path}: {a!r} not found"
            text = text.replace(a, f"clusterIP: {new}\n").replace(f"clusterIPs: [{old}]", f"clusterIPs: [{new}]")
            self.texts[path] = text
            with open(path + ".tmp", "w") as f:
                f.write(text)
            os.replace(path + ".tmp", path)
        elif self.server.startswith("k8s:"):
            # A PUT of the whole Service (no resourceVersion: unconditional) to the fake API
            # server; fleetdns sees it as a MODIFIED watch event.
            ns = f"ns-{i % self.N}"
            body = json.dumps({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": f"svc-{i}", "namespace": ns},
                "spec": {"type": "ClusterIP", "clusterIP": new, "clusterIPs": [new], "ports": [
                    {"name": p, "protocol": "TCP", "port": n, "targetPort": n} for p, n in gen.PORTS]},
            }).encode()
            url = f"{self.server[4:]}/api/v1/namespaces/{ns}/services/svc-{i}"
            req = urllib.request.Request(url, data=body, method="PUT",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                r.read()
        else:
            owner = self.name(i) + "."
            for cmd in ("zone-begin cluster-1.local",
                        f"zone-unset cluster-1.local {owner} A",
                        f"zone-set cluster-1.local {owner} 5 A {new}",
                        "zone-commit cluster-1.local"):
                self.knotc(cmd)
        self.ip[str(i)] = new
        return self.name(i), new, t


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    return sorted_vals[max(0, math.ceil(p / 100 * len(sorted_vals)) - 1)]


def wait_visible(asker, name, new, t, timeout):
    while True:
        if asker.a(name) == {new}:
            return (time.monotonic() - t) * 1000
        if time.monotonic() - t > timeout:
            return None
        time.sleep(0.001)


def latency(server, port, work, count, budget, timeout):
    ch = Changer(server, work)
    asker = Asker(port, 0.05)
    lat, timeouts, start = [], 0, time.monotonic()
    try:
        for _ in range(count):
            if time.monotonic() - start > budget:
                break
            name, new, t = ch.change()
            ms = wait_visible(asker, name, new, t, timeout)
            if ms is None:
                timeouts += 1
                print(f"latency: {name} -> {new} not answered within {timeout} s", file=sys.stderr)
                if timeouts >= 3:
                    break
            else:
                lat.append(ms)
            time.sleep(0.02)
    finally:
        ch.save()
    lat.sort()
    f = lambda v: "nan" if v != v else f"{v:.1f}"
    print(f"{len(lat)} {f(pct(lat, 50))} {f(pct(lat, 99))} {f(lat[-1] if lat else float('nan'))} {timeouts}")


def churn(server, port, work, count, rate, wait, budget):
    ch = Changer(server, work)
    asker = Asker(port, 0.05)
    start = time.monotonic()
    n = 0
    try:
        for k in range(count):
            if time.monotonic() - start > budget:
                break
            due = start + k / rate
            d = due - time.monotonic()
            if d > 0:
                time.sleep(d)
            name, new, t = ch.change()
            n += 1
    finally:
        ch.save()
    secs = time.monotonic() - start
    ms = wait_visible(asker, name, new, t, wait) if n else None
    print(f"{n} {secs:.1f} {'timeout' if ms is None else f'{ms:.0f}'}")


# ------------------------------------------------------------------ dnsperf
def waits(path):
    lat, completed, lost = [], 0, 0
    import re
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("> "):
                try:
                    lat.append(float(line.split()[-1]) * 1e3)
                except ValueError:
                    pass
                continue
            m = re.match(r"\s*Queries completed:\s+(\d+)", line)
            if m:
                completed = int(m.group(1))
            m = re.match(r"\s*Queries lost:\s+(\d+)", line)
            if m:
                lost = int(m.group(1))
    lat.sort()
    g = lambda v: "nan" if v != v else f"{v:.3f}"
    print(f"{completed} {lost} {g(pct(lat, 50))} {g(pct(lat, 99))} {g(lat[-1] if lat else float('nan'))}")


# ------------------------------------------------------------------ report
def report(tsv):
    rows = {}
    with open(tsv) as f:
        for line in f:
            size, server, key, value = line.rstrip("\n").split("\t", 3)
            rows.setdefault(int(size), {}).setdefault(server, {})[key] = value

    def g(size, server, key, default="—"):
        return rows.get(size, {}).get(server, {}).get(key, default)

    def mib(kib):
        try:
            k = int(kib)
        except (TypeError, ValueError):
            return "—"
        return f"{k / 1024:.0f}" if k >= 0 else "—"

    def both(size, key, fmt=lambda v: v):
        return f"{fmt(g(size, 'fleetdns', key))} / {fmt(g(size, 'knot', key))}"

    def per_name(size, server):
        names = g(size, "fleetdns", "names", None) or g(size, "knot", "owners", None)
        rss = g(size, server, "rss_load_kib", None)
        try:
            return f"{int(rss) * 1024 / int(names):.0f}"
        except (TypeError, ValueError, ZeroDivisionError):
            return "—"

    def growth(size, server):
        try:
            a, b = int(g(size, server, "rss_load_kib")), int(g(size, server, "rss_churn_kib"))
            return f"{b / 1024:.0f} ({(b - a) * 100 / a:+.0f}%)"
        except (TypeError, ValueError, ZeroDivisionError):
            return "—"

    def peak(size, server):
        try:
            a = int(g(size, server, "rss_before_changes_kib"))
            b = int(g(size, server, "hwm_changes_kib"))
            return f"{b / 1024:.0f} ({(b - a) * 100 / a:+.0f}%)"
        except (TypeError, ValueError, ZeroDivisionError):
            return "—"

    def lat(size, server):
        n = g(size, server, "change_n", None)
        if n is None:
            return "—"
        t = g(size, server, "change_timeouts", "0")
        if n == "0":
            return f"none visible in time ({t} timed out)"
        s = f"{g(size, server, 'change_p50_ms')} / {g(size, server, 'change_p99_ms')} / {g(size, server, 'change_max_ms')} (n={n}"
        return s + (f", {t} timed out)" if t not in ("0", "") else ")")

    def qps(size, server, phase):
        try:
            return f"{int(g(size, server, phase + '_completed')) / float(g(size, server, phase + '_s')):.0f}"
        except (TypeError, ValueError, ZeroDivisionError):
            return "—"

    sizes = sorted(rows)
    out = []
    out.append("| S per cluster | names (fleetdns; Knot owners / records) | RSS at load, MiB: fleetdns / Knot (peak) | RSS per name, B: fleetdns / Knot "
               "| start → first complete answer, s: fleetdns files / Knot / fleetdns etcd |")
    out.append("|---:|---:|---:|---:|---:|")
    for s in sizes:
        out.append(
            f"| {s:,} | {g(s, 'fleetdns', 'names')} ({g(s, 'knot', 'owners')} / {g(s, 'knot', 'records')}) "
            f"| {mib(g(s, 'fleetdns', 'rss_load_kib'))} ({mib(g(s, 'fleetdns', 'hwm_load_kib'))}) / "
            f"{mib(g(s, 'knot', 'rss_load_kib'))} ({mib(g(s, 'knot', 'hwm_load_kib'))}) "
            f"| {per_name(s, 'fleetdns')} / {per_name(s, 'knot')} "
            f"| {g(s, 'fleetdns', 'start_s')} / {g(s, 'knot', 'start_s')} / {g(s, 'fleetdns-etcd', 'start_s')} |")
    out.append("")
    out.append("| S per cluster | server | one change visible, ms: p50 / p99 / max | RSS after changes, MiB (vs load) "
               "| peak RSS during the changes, MiB (vs RSS before them) "
               "| query wait at 20k q/s, ms: p99 quiet / p99 during changes / max during | lost quiet / during | answered q/s quiet / during | changes made during |")
    out.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for s in sizes:
        for server in ("fleetdns", "knot"):
            if "rss_load_kib" not in rows[s].get(server, {}):
                continue
            out.append(
                f"| {s:,} | {server} | {lat(s, server)} | {growth(s, server)} (after {g(s, server, 'churn_n')}) "
                f"| {peak(s, server)} "
                f"| {g(s, server, 'quiet_p99_ms')} / {g(s, server, 'busy_p99_ms')} / {g(s, server, 'busy_max_ms')} "
                f"| {g(s, server, 'quiet_lost')} / {g(s, server, 'busy_lost')} "
                f"| {qps(s, server, 'quiet')} / {qps(s, server, 'busy')} | {g(s, server, 'busy_changes')} |")
    if any("fleetdns-k8s" in rows[s] for s in sizes):
        out.append("")
        out.append("| S per cluster | one change visible through a Kubernetes watch event (fake API server), ms: p50 / p99 / max | start → first answer, s |")
        out.append("|---:|---:|---:|")
        for s in sizes:
            if "fleetdns-k8s" in rows[s]:
                out.append(f"| {s:,} | {lat(s, 'fleetdns-k8s')} | {g(s, 'fleetdns-k8s', 'start_s')} |")
    print("\n".join(out))


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # runs the `finally`s (state saved)
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "probes":
        C, S, N, H, E = map(int, a)
        for name, ips in probes(C, S, N, H, E):
            print(name, ",".join(sorted(ips)))
    elif cmd == "first-answer":
        first_answer(int(a[0]), int(a[1]), int(a[2]), a[3], float(a[4]))
    elif cmd == "latency":
        latency(a[0], int(a[1]), a[2], int(a[3]), float(a[4]), float(a[5]))
    elif cmd == "churn":
        churn(a[0], int(a[1]), a[2], int(a[3]), float(a[4]), float(a[5]), float(a[6]))
    elif cmd == "waits":
        waits(a[0])
    elif cmd == "report":
        report(a[0])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
