#!/usr/bin/env python3
"""The soak's helpers (stdlib only; bench/soak.sh runs them).

  soak.py init WORK CLUSTERS CHURN
      writes the churn services (churn-<c>-<k>.soak, CHURN per cluster) into every agent's
      cluster folder (WORK/agents/agent-<c>/cluster-<c>/churn.yaml) and the starting state.
  soak.py churn WORK DURATION
      the editor below alone for DURATION seconds (its edits in WORK/edits-saturation.csv),
      then every churn.yaml back to the starting state: the saturation is measured under it.
  soak.py drive WORK DURATION PORT
      for DURATION seconds, three threads:
      * editor: EDIT_RATE (10) changes per second, round-robin over the clusters' churn.yaml
        (change a ClusterIP, remove a service, add it back), each file replaced atomically;
        every change is logged with its time in WORK/edits.csv;
      * checker: every second asks CHECK_NAMES (8) names over UDP (6 churn names at random and
        2 static ones) and logs what came back in WORK/checks.csv;
      * sampler: every 5 s RSS, open fds and threads of the server and the agents
        (pids in WORK/pids/*.pid) into WORK/samples.csv.
  soak.py report WORK
      judges the checks against the edit history (see STALENESS), reads the per-minute dnsperf
      outputs, the samples and the events; writes WORK/results.md and WORK/soak.png (matplotlib)
      and prints the summary.

A check matches when its answer equals the name's state at some moment within the STALENESS
seconds before the query was sent (or any state it had since). While etcd is restarted the
server keeps its last known state and the agents publish again once etcd is back, so for a check
sent between an etcd stop and RECOVERY seconds after it is back the window starts STALENESS
seconds before the stop; those checks are counted apart.
"""

import csv
import glob
import json
import os
import random
import re
import socket
import struct
import sys
import threading
import time

STALENESS = 5.0  # N: an answer may show the state of at most this many seconds ago
RECOVERY = 15.0  # after etcd is back: agents reconnect and republish within this
EDIT_RATE = float(os.environ.get("EDIT_RATE", "10"))
CHECK_NAMES = 8
NS = "soak"
ZONE = "clusterset.local"
# Static names of the gen.py fleet (cluster_id = cluster-0, local-first): never edited.
STATIC = {
    f"svc-0.ns-0.svc.{ZONE}": "10.96.0.1",   # every cluster exports it; cluster-0's ClusterIP
    f"local-9.ns-9.svc.{ZONE}": "10.96.0.10",  # only cluster-0 exports it
}
CREATED = "2024-01-01T00:00:00Z"


def churn_ip(c, rng):
    return f"10.{200 + c}.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"


def churn_doc(name, ip):
    return f"""---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {NS}
spec:
  type: ClusterIP
  clusterIP: {ip}
  clusterIPs: [{ip}]
  ports:
  - name: http
    protocol: TCP
    port: 80
    targetPort: 80
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata:
  name: {name}
  namespace: {NS}
  creationTimestamp: "{CREATED}"
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-abcde
  namespace: {NS}
  labels:
    kubernetes.io/service-name: {name}
addressType: IPv4
ports:
- name: http
  protocol: TCP
  port: 80
endpoints:
- addresses: [10.250.0.1]
  conditions:
    ready: true
"""


def fqdn(name):
    return f"{name}.{NS}.svc.{ZONE}"


def churn_path(work, c):
    return os.path.join(work, "agents", f"agent-{c}", f"cluster-{c}", "churn.yaml")


def write_churn(work, c, services):
    """services: {name: ip or None}; replaces the file atomically (the agent never reads half)."""
    path = churn_path(work, c)
    tmp = path + ".tmp"  # not *.yaml: the files source ignores it
    with open(tmp, "w") as f:
        for name in sorted(services):
            if services[name] is not None:
                f.write(churn_doc(name, services[name]))
    os.replace(tmp, path)


def cmd_init(work, clusters, churn):
    rng = random.Random(1)
    state = {}
    for c in range(clusters):
        services = {f"churn-{c}-{k}": churn_ip(c, rng) for k in range(churn)}
        os.makedirs(os.path.dirname(churn_path(work, c)), exist_ok=True)
        write_churn(work, c, services)
        state[str(c)] = services
    with open(os.path.join(work, "churn-state.json"), "w") as f:
        json.dump(state, f)


# ------------------------------------------------------------------ a tiny DNS client (UDP, A)

def build_query(qid, name, qtype=1):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", qtype, 1)


def skip_name(msg, off):
    while True:
        n = msg[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n


RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def ask_a(sock, addr, name, qid, timeout=1.0):
    """The A answer as 'ip ip ...' (sorted), or NXDOMAIN/NODATA/SERVFAIL/.../TIMEOUT."""
    sock.settimeout(timeout)
    sock.sendto(build_query(qid, name), addr)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "TIMEOUT"
        sock.settimeout(left)
        try:
            msg, _ = sock.recvfrom(4096)
        except socket.timeout:
            return "TIMEOUT"
        rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", msg[:12])
        if rid != qid:
            continue  # a late answer to an earlier query
        rcode = flags & 0xF
        if rcode != 0:
            return RCODES.get(rcode, f"RCODE{rcode}")
        off = 12
        for _ in range(qd):
            off = skip_name(msg, off) + 4
        ips = []
        for _ in range(an):
            off = skip_name(msg, off)
            rtype, _, _, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
            off += 10
            if rtype == 1 and rdlen == 4:
                ips.append(socket.inet_ntoa(msg[off:off + 4]))
            off += rdlen
        return " ".join(sorted(ips)) if ips else "NODATA"


# ------------------------------------------------------------------ drive

def read_state(work):
    with open(os.path.join(work, "churn-state.json")) as f:
        return {int(c): s for c, s in json.load(f).items()}


def edit(work, state, stop_at, log_path, seed, lock):
    """EDIT_RATE changes per second until stop_at, round-robin over the clusters; each logged."""
    clusters = sorted(state)
    rng = random.Random(seed)
    interval = 1.0 / EDIT_RATE
    n = 0
    with open(log_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", "cluster", "name", "op", "value"])
        next_t = time.time()
        while time.time() < stop_at:
            c = clusters[n % len(clusters)]
            n += 1
            services = state[c]
            name = rng.choice(sorted(services))
            with lock:
                if services[name] is None:
                    op, services[name] = "add", churn_ip(c, rng)
                elif rng.random() < 0.8:
                    op, services[name] = "change-ip", churn_ip(c, rng)
                else:
                    op, services[name] = "remove", None
                # the time logged is before the write: the new state counts from then on
                t = time.time()
                write_churn(work, c, services)
            w.writerow([f"{t:.3f}", c, fqdn(name), op, services[name] or "NXDOMAIN"])
            f.flush()
            next_t += interval
            time.sleep(max(0.0, next_t - time.time()))


def cmd_churn(work, duration):
    """The edits alone for `duration` s (logged in WORK/edits-saturation.csv), then every churn
    file back to the starting state: the registry changes the saturation is measured under."""
    state = read_state(work)
    edit(work, state, time.time() + duration, os.path.join(work, "edits-saturation.csv"), 4,
         threading.Lock())
    for c, services in read_state(work).items():
        write_churn(work, c, services)


def cmd_drive(work, duration, port):
    state = read_state(work)
    clusters = sorted(state)
    stop_at = time.time() + duration
    lock = threading.Lock()
    errors = []

    def editor():
        edit(work, state, stop_at, os.path.join(work, "edits.csv"), 2, lock)

    def checker():
        rng = random.Random(3)
        addr = ("127.0.0.1", port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        names = [fqdn(n) for c in clusters for n in sorted(state[c])]
        qid = 0
        with open(os.path.join(work, "checks.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["sent", "received", "name", "answer"])
            next_t = time.time()
            while time.time() < stop_at:
                for name in rng.sample(names, CHECK_NAMES - len(STATIC)) + list(STATIC):
                    qid = (qid + 1) & 0xFFFF
                    sent = time.time()
                    try:
                        ans = ask_a(sock, addr, name, qid)
                    except OSError as e:  # e.g. ICMP port unreachable: the server is gone
                        ans = f"ERROR:{e.errno}"
                        time.sleep(0.1)
                    w.writerow([f"{sent:.3f}", f"{time.time():.3f}", name, ans])
                f.flush()
                next_t += 1.0
                time.sleep(max(0.0, next_t - time.time()))

    def sampler():
        with open(os.path.join(work, "samples.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["time", "process", "pid", "rss_kib", "fds", "threads"])
            next_t = time.time()
            while time.time() < stop_at:
                for pidfile in sorted(glob.glob(os.path.join(work, "pids", "*.pid"))):
                    proc = os.path.basename(pidfile)[:-4]
                    try:
                        pid = int(open(pidfile).read().strip())
                        status = open(f"/proc/{pid}/status").read()
                        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
                        thr = int(re.search(r"Threads:\s+(\d+)", status).group(1))
                        fds = len(os.listdir(f"/proc/{pid}/fd"))
                    except (OSError, ValueError, AttributeError):
                        w.writerow([f"{time.time():.3f}", proc, "", "", "", "gone"])
                        continue
                    w.writerow([f"{time.time():.3f}", proc, pid, rss, fds, thr])
                f.flush()
                next_t += 5.0
                time.sleep(max(0.0, next_t - time.time()))

    def guard(fn):
        def run():
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - reported, and the run fails
                errors.append(f"{fn.__name__}: {e!r}")
                raise
        return run

    threads = [threading.Thread(target=guard(fn), name=fn.__name__) for fn in (editor, checker, sampler)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit("soak.py drive: " + "; ".join(errors))


# ------------------------------------------------------------------ report

def read_events(work):
    """[(time, kind, detail)] from soak.sh's WORK/events.log."""
    ev = []
    with open(os.path.join(work, "events.log")) as f:
        for line in f:
            parts = line.split(maxsplit=2)
            if len(parts) >= 2:
                ev.append((float(parts[0]), parts[1], parts[2].strip() if len(parts) > 2 else ""))
    return ev


def windows(events, down, up, end):
    """[(start, end)] between each `down` event and the next `up` (or the run's end)."""
    out, start = [], None
    for t, kind, _ in events:
        if kind == down and start is None:
            start = t
        elif kind == up and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, end))
    return out


def dnsperf_stats(path):
    s = {"completed": 0, "lost": 0, "qps": 0.0, "avg_ms": None, "rcodes": {}}
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("> "):
                continue
            if m := re.match(r"\s*Queries completed:\s+(\d+)", line):
                s["completed"] = int(m.group(1))
            elif m := re.match(r"\s*Queries lost:\s+(\d+)", line):
                s["lost"] = int(m.group(1))
            elif m := re.match(r"\s*Queries per second:\s+([\d.]+)", line):
                s["qps"] = float(m.group(1))
            elif m := re.match(r"\s*Average Latency \(s\):\s+([\d.]+)", line):
                s["avg_ms"] = float(m.group(1)) * 1e3
            elif m := re.match(r"\s*Response codes:\s+(.*)", line):
                for code, n in re.findall(r"(\w+) (\d+)", m.group(1)):
                    s["rcodes"][code] = int(n)
    return s


def overlaps(a0, a1, wins):
    return any(a0 < w1 and a1 > w0 for w0, w1 in wins)


def cmd_report(work):
    meta = json.load(open(os.path.join(work, "meta.json")))
    t0, t_end = meta["start"], meta["end"]
    events = read_events(work)
    etcd_w = windows(events, "etcd-stop", "etcd-up", t_end)
    up_w = windows(events, "upstream-stop", "upstream-up", t_end)
    reloads = [e for e in events if e[1].startswith("reload")]

    # --- the checker's answers against the edit history
    with open(os.path.join(work, "churn-state.json")) as f:
        initial = {fqdn(n): ip for s in json.load(f).values() for n, ip in s.items()}
    history = {n: [(float("-inf"), v or "NXDOMAIN")] for n, v in initial.items()}
    history.update({n: [(float("-inf"), v)] for n, v in STATIC.items()})
    edits = 0
    with open(os.path.join(work, "edits.csv")) as f:
        for row in csv.DictReader(f):
            history[row["name"]].append((float(row["time"]), row["value"]))
            edits += 1

    def accepted(name, lo, hi):
        """Values the name had at some moment in [lo, hi]."""
        h = history[name]
        vals = set()
        for i, (t, v) in enumerate(h):
            t_next = h[i + 1][0] if i + 1 < len(h) else float("inf")
            if t <= hi and t_next >= lo:
                vals.add(v)
        return vals

    def staleness(name, sent, ans):
        """How long before `sent` the answered value stopped being the name's state (0: current)."""
        h = history[name]
        best = None
        for i, (t, v) in enumerate(h):
            if v != ans or t > sent:
                continue
            t_next = h[i + 1][0] if i + 1 < len(h) else float("inf")
            s = max(0.0, sent - t_next)
            best = s if best is None else min(best, s)
        return best

    recovery_w = [(a - 0.0, b + RECOVERY) for a, b in etcd_w]
    checks = mism = mism_etcd = timeouts = in_etcd = 0
    stale_outside = []
    mismatches = []
    with open(os.path.join(work, "checks.csv")) as f:
        for row in csv.DictReader(f):
            sent, recv, name, ans = float(row["sent"]), float(row["received"]), row["name"], row["answer"]
            checks += 1
            during = [w for w in recovery_w if w[0] <= sent <= w[1]]
            lo = (during[0][0] if during else sent) - STALENESS
            if during:
                in_etcd += 1
            ok = ans in accepted(name, lo, recv)
            if ans == "TIMEOUT" or ans.startswith("ERROR"):
                timeouts += 1
            if not ok:
                mism += 1
                mism_etcd += bool(during)
                if len(mismatches) < 20:
                    mismatches.append((sent - t0, name, ans, sorted(accepted(name, sent - STALENESS, recv))))
            elif not during:
                s = staleness(name, sent, ans)
                if s is not None:
                    stale_outside.append(s)
    stale_outside.sort()

    # --- dnsperf per minute
    minutes = []  # dicts
    with open(os.path.join(work, "minutes.tsv")) as f:
        for line in f:
            stream, seq, start, end, path, p50, p99 = line.rstrip("\n").split("\t")
            s = dnsperf_stats(path)
            start, end = float(start), float(end)
            bad = s["lost"] + sum(n for c, n in s["rcodes"].items() if c not in ("NOERROR", "NXDOMAIN"))
            minutes.append(dict(stream=stream, seq=int(seq), start=start, end=end, p50=p50, p99=p99,
                                bad=bad, in_flap=overlaps(start, end + 5, up_w), **s))
    load = [m for m in minutes if m["stream"] in ("udp", "tcp", "probe")]
    fwd = [m for m in minutes if m["stream"] == "forward"]
    failed_load = sum(m["bad"] for m in load)
    sent_load = sum(m["completed"] + m["lost"] for m in load)
    fwd_bad = sum(m["bad"] for m in fwd)
    fwd_sent = sum(m["completed"] + m["lost"] for m in fwd)

    # --- RSS and fds
    samples = {}
    with open(os.path.join(work, "samples.csv")) as f:
        for row in csv.DictReader(f):
            if row["rss_kib"]:
                samples.setdefault(row["process"], []).append(
                    (float(row["time"]) - t0, int(row["rss_kib"]), int(row["fds"]), int(row["threads"])))
    warm = meta["warmup"]

    def drift(proc, col):
        pts = [p for p in samples.get(proc, []) if p[0] >= warm]
        if len(pts) < 2:
            return None
        vals = [p[col] for p in pts]
        # drift: the median of the last fifth of the samples against the first fifth's (single
        # samples move with a table swap in flight or a TCP client connecting)
        k = max(1, len(vals) // 5)
        head, tail = sorted(vals[:k])[k // 2], sorted(vals[-k:])[k // 2]
        return dict(first=head, last=tail, min=min(vals), max=max(vals),
                    drift_pct=(tail - head) * 100.0 / head if head else 0.0)

    drifts = {p: (drift(p, 1), drift(p, 2)) for p in sorted(samples)}
    gone = 0
    with open(os.path.join(work, "samples.csv")) as f:
        gone = sum(1 for row in csv.DictReader(f) if row["threads"] == "gone")

    # --- the plot
    png = os.path.join(work, "soak.png")
    plot_note = ""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
        for proc, pts in sorted(samples.items()):
            ax1.plot([p[0] / 60 for p in pts], [p[1] / 1024 for p in pts], label=proc,
                     linewidth=2 if proc == "server" else 1)
        ax1.set_ylabel("RSS (MiB)")
        ax1.set_ylim(bottom=0)
        ax1.legend(loc="upper left", fontsize=8)
        ax1.axvline(warm / 60, color="grey", linestyle=":", linewidth=1)
        for stream, style in (("udp", "-"), ("tcp", "--"), ("probe", "-.")):
            ms = [m for m in minutes if m["stream"] == stream and m["p99"] not in ("n/a", "")]
            if ms:
                ax2.plot([(m["end"] - t0) / 60 for m in ms], [float(m["p99"]) for m in ms], style,
                         marker="o", label=f"p99 {stream}")
        ax2.set_ylabel("p99 per minute (ms)")
        ax2.set_xlabel("minutes since the load started")
        ax2.set_ylim(bottom=0)
        for ax in (ax1, ax2):
            for a, b in etcd_w:
                ax.axvspan((a - t0) / 60, (b - t0) / 60, color="red", alpha=0.15)
            for t, _, _ in reloads:
                ax.axvline((t - t0) / 60, color="green", alpha=0.3, linewidth=0.8)
        ax2.legend(loc="upper left", fontsize=8)
        ax1.set_title(f"fleetdns soak: {meta['duration'] // 60} min, {meta['rate_total']} q/s, "
                      f"{EDIT_RATE:g} registry changes/s (red: etcd down, green: reloads)")
        fig.tight_layout()
        fig.savefig(png, dpi=100)
    except ImportError:
        plot_note = "matplotlib missing: no plot"

    # --- results.md
    def fmt_drift(d, unit=""):
        if d is None:
            return "n/a"
        return (f"{d['first']}{unit} → {d['last']}{unit} ({d['drift_pct']:+.1f}%; "
                f"min {d['min']}, max {d['max']})")

    flat = all(d is None or abs(d["drift_pct"]) <= 10 for pair in drifts.values() for d in pair)
    q = lambda p: stale_outside[min(len(stale_outside) - 1, int(p * len(stale_outside)))] if stale_outside else 0
    L = []
    L.append(f"# fleetdns soak, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(t0))}\n")
    L.append(f"- command: `{meta['command']}`; commit {meta['commit']}; {meta['machine']}")
    L.append(f"- duration {meta['duration']} s of load (+ setup); fleet {meta['fleet']}; "
             f"{meta['churn']} churn services per cluster")
    under = (f"while the registry changed {EDIT_RATE:g} times a second" if meta.get("sat_churn")
             else "on the quiet fleet")
    L.append(f"- saturation (measured at the start {under}, {meta['sat_secs']} s each): UDP {meta['sat_udp']} q/s, "
             f"TCP {meta['sat_tcp']} q/s (10 connections); load = 80% of the UDP figure: "
             f"UDP {meta['rate_udp']} q/s + TCP {meta['rate_tcp']} q/s, plus a {meta['rate_probe']} q/s "
             f"UDP latency probe (dnsperf -v) and {meta['rate_forward']} q/s to the flapping forward zone")
    L.append(f"- faults: {sum(1 for e in events if e[1] == 'upstream-stop')} upstream stops (every "
             f"{meta['flap']} s), {len(etcd_w)} etcd restarts "
             f"({', '.join(f'{(a - t0) / 60:.1f}–{(b - t0) / 60:.1f} min' for a, b in etcd_w)}), "
             f"{len(reloads)} config reloads ({meta['reloads_logged']} `config reloaded` lines in the "
             f"server log, {meta['reload_errors']} reload errors)")
    L.append(f"- registry changes: {edits} in {meta['duration']} s ({edits / max(1, meta['duration']):.1f}/s)\n")
    L.append("## Verdict\n")
    L.append(f"| check | result |\n|---|---|")
    L.append(f"| failed queries (lost + SERVFAIL/REFUSED/other), authoritative streams | "
             f"**{failed_load}** of {sent_load} |")
    L.append(f"| forward zone (flapping upstream; not counted) | {fwd_bad} of {fwd_sent} failed, "
             f"{sum(m['bad'] for m in fwd if not m['in_flap'])} in minutes without a down window |")
    L.append(f"| checker: answers not matching the state of ≤ {STALENESS:g} s ago | **{mism}** of {checks} "
             f"({mism_etcd} of them within an etcd restart + {RECOVERY:g} s; {timeouts} timeouts) |")
    L.append(f"| checker: staleness of matching answers outside etcd restarts | p50 {q(0.5):.2f} s, "
             f"p99 {q(0.99):.2f} s, max {stale_outside[-1] if stale_outside else 0:.2f} s |")
    L.append(f"| checks within etcd restart windows (allowed the pre-restart state) | {in_etcd} |")
    L.append(f"| RSS / fds flat within 10% after the {warm} s warm-up | {'yes' if flat else 'NO'} |")
    L.append(f"| processes gone during the run (sampler) | {gone} samples |\n")
    L.append("## RSS and open fds after warm-up\n")
    L.append("Median of the first fifth of the samples after warm-up → median of the last fifth "
             "(drift), and the extremes over the whole time after warm-up.\n")
    L.append("| process | RSS KiB | fds |\n|---|---|---|")
    for p, (r, fd) in drifts.items():
        L.append(f"| {p} | {fmt_drift(r)} | {fmt_drift(fd)} |")
    L.append("\n## Per minute (dnsperf, 60 s runs back to back)\n")
    L.append("| min | stream | q/s | lost | bad rcodes | avg ms | p50 ms | p99 ms | upstream down in it |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for m in sorted(minutes, key=lambda m: (m["seq"], m["stream"])):
        badrc = m["bad"] - m["lost"]
        avg = f"{m['avg_ms']:.3f}" if m["avg_ms"] is not None else "n/a"
        L.append(f"| {m['seq']} | {m['stream']} | {m['qps']:.0f} | {m['lost']} | {badrc} | {avg} | "
                 f"{m['p50']} | {m['p99']} | {'yes' if m['in_flap'] else ''} |")
    if mismatches:
        L.append("\n## First checker mismatches\n")
        L.append("| t (s) | name | answer | expected (≤ N s ago) |\n|---|---|---|---|")
        for t, n, a, e in mismatches:
            L.append(f"| {t:.1f} | {n} | {a} | {' / '.join(e)} |")
    L.append("\n## How to read it\n")
    L.append(f"- N = {STALENESS:g} s: a checker answer matches when it equals the name's state at some "
             f"moment in the {STALENESS:g} s before the query (an edit goes file → agent poll 100 ms → "
             f"etcd → server watch → table rebuild). During an etcd restart and {RECOVERY:g} s after it "
             f"the window starts {STALENESS:g} s before etcd stopped: the server keeps its last known "
             f"state while the registry is away.")
    L.append("- p50/p99 come from the probe stream's `-v` lines (bench/parse.py) and are the latency "
             "under the full load; the load streams' own latency is dnsperf's average (their `-v` "
             "output at this rate would cost the client more than it measures).")
    L.append("- The machine was shared: other engineers built Rust on the same 2 cores, and "
             "`cargo mutants` ran niced during the recorded run; latency figures include that.")
    if plot_note:
        L.append(f"- {plot_note}")
    with open(os.path.join(work, "results.md"), "w") as f:
        f.write("\n".join(L) + "\n")

    print(f"soak: {meta['duration']} s, load UDP {meta['rate_udp']} + TCP {meta['rate_tcp']} q/s "
          f"(80% of saturation {meta['sat_udp']} q/s), {edits} registry changes")
    print(f"  failed queries (authoritative): {failed_load} of {sent_load}; forward zone: {fwd_bad} of {fwd_sent}")
    print(f"  checker mismatches: {mism} of {checks} (N = {STALENESS:g} s; {mism_etcd} during etcd restarts); "
          f"staleness outside etcd restarts p99 {q(0.99):.2f} s max {stale_outside[-1] if stale_outside else 0:.2f} s")
    for p, (r, fd) in drifts.items():
        print(f"  {p}: RSS {fmt_drift(r, ' KiB')}; fds {fmt_drift(fd)}")
    print(f"  RSS/fds flat within 10% after warm-up: {'yes' if flat else 'NO'}")
    print("  p99 per minute (probe, ms): " + " ".join(
        str(m["p99"]) for m in sorted(minutes, key=lambda m: m["seq"]) if m["stream"] == "probe"))
    print(f"  results: {os.path.join(work, 'results.md')}, {os.path.join(work, 'samples.csv')}, {png}")
    return 0 if failed_load == 0 and mism == 0 and flat and gone == 0 else 1


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "init":
        cmd_init(args[0], int(args[1]), int(args[2]))
    elif cmd == "churn":
        cmd_churn(args[0], float(args[1]))
    elif cmd == "drive":
        cmd_drive(args[0], float(args[1]), int(args[2]))
    elif cmd == "report":
        sys.exit(cmd_report(args[0]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
