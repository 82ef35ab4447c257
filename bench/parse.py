#!/usr/bin/env python3
"""Reads one dnsperf 2.x output and prints one tab-separated line:
completed  qps  lost_pct  avg_ms  p50_ms  p99_ms  rcodes

qps, lost %, average latency and completed queries come from dnsperf's own statistics.
p50/p99 are computed here (nearest rank) from the per-response lines that `dnsperf -v`
prints ("> NOERROR <name> <type> <latency seconds>"); without -v they are "n/a".
"""

import math
import re
import sys


def main():
    path = sys.argv[1]
    stats = {}
    lat = []
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("> "):
                parts = line.split()
                try:
                    lat.append(float(parts[-1]))
                except ValueError:
                    pass  # a timeout line carries no latency
                continue
            m = re.match(r"\s*Queries completed:\s+(\d+)", line)
            if m:
                stats["completed"] = int(m.group(1))
            m = re.match(r"\s*Queries lost:\s+(\d+) \(([\d.]+)%\)", line)
            if m:
                stats["lost_pct"] = float(m.group(2))
            m = re.match(r"\s*Queries per second:\s+([\d.]+)", line)
            if m:
                stats["qps"] = float(m.group(1))
            m = re.match(r"\s*Average Latency \(s\):\s+([\d.]+)", line)
            if m:
                stats["avg_ms"] = float(m.group(1)) * 1e3
            m = re.match(r"\s*Response codes:\s+(.*)", line)
            if m:
                stats["rcodes"] = re.sub(r"\s+", " ", m.group(1).strip())
    missing = [k for k in ("completed", "qps", "lost_pct", "avg_ms") if k not in stats]
    if missing:
        sys.exit(f"parse.py: {path}: dnsperf statistics missing ({', '.join(missing)})")

    lat.sort()

    def pct(p):
        if not lat:
            return "n/a"
        return f"{lat[max(0, math.ceil(p / 100 * len(lat)) - 1)] * 1e3:.3f}"

    print("\t".join([
        str(stats["completed"]),
        f"{stats['qps']:.0f}",
        f"{stats['lost_pct']:.2f}",
        f"{stats['avg_ms']:.3f}",
        pct(50),
        pct(99),
        stats.get("rcodes", ""),
    ]))


if __name__ == "__main__":
    main()
