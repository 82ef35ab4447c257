#!/usr/bin/env python3
"""Medians of bench/answer-path.sh's runs as markdown tables (stdlib only).

usage: summarize_answer_path.py results.tsv sizes.txt rebuild.txt
"""

import csv
import statistics
import sys
from collections import defaultdict


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med(rows, key):
    vals = [num(r[key]) for r in rows if num(r[key]) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, digits=2):
    if v is None:
        return "n/a"
    if digits == 0:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def spread(rows, key, digits=2):
    vals = [num(r[key]) for r in rows if num(r[key]) is not None]
    if not vals:
        return "n/a"
    return f"{fmt(min(vals), digits)}–{fmt(max(vals), digits)}"


def main():
    res, sizes, rebuild = sys.argv[1:4]
    runs = defaultdict(list)
    with open(res) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            runs[(r["test"], r["server"], r["mix"])].append(r)
    n_rounds = max((len(v) for v in runs.values()), default=0)

    def g(test, server, mix):
        return runs.get((test, server, mix), [])

    print(f"Medians of {n_rounds} runs each (min–max in brackets where it matters).")
    print()
    print("### CPU per query at a fixed rate, four mixes")
    print()
    print("| mix | Knot CPU µs/q | fleetdns CPU µs/q | fleetdns / Knot (target ≤ 0.90) | Knot p50 / p99 ms | fleetdns p50 / p99 ms | lost % Knot / fleetdns |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mix in ["clusterset", "headless", "nxdomain", "types"]:
        k, d = g("fixed", "knot", mix), g("fixed", "fleetdns", mix)
        if not k and not d:
            continue
        kc, dc = med(k, "cpu_us"), med(d, "cpu_us")
        ratio = f"{dc / kc:.2f}" if kc and dc else "n/a"
        print(
            f"| {mix} | {fmt(kc)} ({spread(k, 'cpu_us')}) | {fmt(dc)} ({spread(d, 'cpu_us')}) | {ratio} | "
            f"{fmt(med(k, 'p50_ms'), 3)} / {fmt(med(k, 'p99_ms'), 3)} | {fmt(med(d, 'p50_ms'), 3)} / {fmt(med(d, 'p99_ms'), 3)} | "
            f"{fmt(med(k, 'lost'))} / {fmt(med(d, 'lost'))} |"
        )
    print()
    print("### Saturation (dnsperf -q 1000, clusterset mix) and drops at 1000 outstanding")
    print()
    print("| server | q/s | CPU µs/q | lost % | socket drops (/proc/net/udp) | Udp InErrors | Udp RcvbufErrors | client CPU % |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for server in ["knot", "fleetdns"]:
        r = g("saturation", server, "clusterset")
        if r:
            print(
                f"| {server} | {fmt(med(r, 'qps'), 0)} ({spread(r, 'qps', 0)}) | {fmt(med(r, 'cpu_us'))} | {fmt(med(r, 'lost'))} | "
                f"{fmt(med(r, 'sock_drops'), 0)} (max {spread(r, 'sock_drops', 0).split('–')[-1]}) | {fmt(med(r, 'snmp_inerrors'), 0)} | "
                f"{fmt(med(r, 'snmp_rcvbuf'), 0)} | {fmt(med(r, 'client_pct'), 0)} |"
            )
    print()
    print("### TCP: 10 long-lived connections (dnsperf -m tcp -c 10 -q 100)")
    print()
    print("| server | q/s | CPU µs/q | lost % |")
    print("|---|---:|---:|---:|")
    for server in ["knot", "fleetdns"]:
        r = g("tcp", server, "clusterset")
        if r:
            print(f"| {server} | {fmt(med(r, 'qps'), 0)} ({spread(r, 'qps', 0)}) | {fmt(med(r, 'cpu_us'))} | {fmt(med(r, 'lost'))} |")
    print()
    print("### UDP workers: 1 vs 2 (server may use both CPUs, dnsperf -c 16 on CPU 1; saturation)")
    print()
    print("| server | workers | q/s | CPU µs/q | lost % |")
    print("|---|---:|---:|---:|---:|")
    for server in ["knot-1w", "knot-2w", "fleetdns-1w", "fleetdns-2w"]:
        r = g("workers", server, "clusterset")
        if r:
            name, w = server.rsplit("-", 1)
            print(f"| {name} | {w[0]} | {fmt(med(r, 'qps'), 0)} ({spread(r, 'qps', 0)}) | {fmt(med(r, 'cpu_us'))} | {fmt(med(r, 'lost'))} |")
    print()

    size_rows = defaultdict(list)
    try:
        with open(sizes) as f:
            for line in f:
                kv = dict(p.split("=", 1) for p in line.split())
                size_rows[int(kv["services"])].append(kv)
    except FileNotFoundError:
        pass
    if size_rows:
        print("### Fleet size: answer table build (examples/table_build.rs; 3 clusters, 10 endpoints per service, 1 in 10 headless)")
        print()
        print("| services per cluster | exports | names | records | build ms (merge + compile) | rebuild after one change ms | RSS: snapshot only MiB | + one table MiB | two tables (during a swap) MiB | peak MiB |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in sorted(size_rows):
            r = size_rows[n]
            mib = lambda k: fmt(med(r, k) / 1024, 0) if med(r, k) is not None else "n/a"  # noqa: E731
            print(
                f"| {n} | {r[0]['exports']} | {r[0]['names']} | {r[0]['records']} | {fmt(med(r, 'build_ms'), 0)} | "
                f"{fmt(med(r, 'rebuild_one_change_ms'), 0)} | {mib('rss_snapshot_kib')} | {mib('rss_one_table_kib')} | "
                f"{mib('rss_two_tables_kib')} | {mib('hwm_kib')} |"
            )
        print()

    rb = [r for (t, _, _), rs in runs.items() if t.startswith("rebuild") for r in rs]
    if rb:
        print("### Queries during rebuilds (fixed rate, 80/10/10 mix, rebuild fleet)")
        print()
        print("| server | while | q/s | lost % | p50 ms | p99 ms | CPU µs/q |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for server in ["knot", "fleetdns"]:
            for test, label in [("rebuild-quiet", "no changes"), ("rebuild-busy", "changes every 0.5 s")]:
                r = g(test, server, "mixed")
                if r:
                    print(
                        f"| {server} | {label} | {fmt(med(r, 'qps'), 0)} | {fmt(med(r, 'lost'))} ({spread(r, 'lost')}) | "
                        f"{fmt(med(r, 'p50_ms'), 3)} | {fmt(med(r, 'p99_ms'), 3)} ({spread(r, 'p99_ms', 3)}) | {fmt(med(r, 'cpu_us'))} |"
                    )
        try:
            with open(rebuild) as f:
                print()
                for line in f:
                    print(f"- {line.strip()}")
        except FileNotFoundError:
            pass
        print()

    print("### Every run")
    print()
    print("| round | test | server | mix | q/s | lost % | p99 ms | CPU µs/q | other load on server CPU % | client CPU % | socket drops |")
    print("|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for key in sorted(runs):
        for r in runs[key]:
            print(
                f"| {r['round']} | {r['test']} | {r['server']} | {r['mix']} | {r['qps']} | {r['lost']} | {r['p99_ms']} | "
                f"{r['cpu_us']} | {r['other_pct']} | {r['client_pct']} | {r['sock_drops']} |"
            )


if __name__ == "__main__":
    main()
