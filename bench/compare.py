#!/usr/bin/env python3
"""Asks two DNS servers the same questions with dig and compares their answers.

usage: compare.py NAMES_FILE LABEL_A ADDR_A PORT_A LABEL_B ADDR_B PORT_B [--report FILE]

NAMES_FILE has "<name> <type>" lines. Each name is asked twice per server: with dig's
defaults (EDNS) and with +noedns (as dnsperf asks). Compared:
  * rcode and the answer section as a sorted list of (owner, TTL, class, type, rdata),
  * the authority section the same way, and the additional section as a set,
  * duplicate copies in the additional section (Knot repeats a target's A record once per SRV
    record naming it) and the AA flag: reported as warnings, not failures.
SOA serials are masked: fleetdns uses its snapshot time as the serial, Knot the zone file's.
Exit status 1 if any rcode, answer, authority or additional record differs, 2 if dig failed.
"""

import subprocess
import sys


def dig(addr, port, name, qtype, edns):
    cmd = ["dig", f"@{addr}", "-p", str(port), name, qtype, "+norec", "+time=2", "+tries=2",
           "+nocookie", "+noall", "+comments", "+answer", "+authority", "+additional"]
    if not edns:
        cmd.append("+noedns")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    if out.returncode != 0:
        raise RuntimeError(f"dig {name} {qtype} @{addr}#{port} failed: {out.stdout}{out.stderr}")
    return parse(out.stdout)


def parse(text):
    res = {"rcode": None, "flags": set(), "answer": [], "authority": [], "additional": []}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(";; ->>HEADER<<-"):
            res["rcode"] = line.split("status:")[1].split(",")[0].strip()
        elif line.startswith(";; flags:"):
            res["flags"] = set(line.split(";")[2].split(":")[1].split())
        elif line.startswith(";; ANSWER SECTION"):
            section = "answer"
        elif line.startswith(";; AUTHORITY SECTION"):
            section = "authority"
        elif line.startswith(";; ADDITIONAL SECTION"):
            section = "additional"
        elif not line or line.startswith(";"):
            continue
        elif section:
            f = line.split()
            owner, ttl, klass, rtype, rdata = f[0].lower(), f[1], f[2], f[3], f[4:]
            if rtype == "SOA" and len(rdata) == 7:
                rdata = rdata[:2] + ["<serial>"] + rdata[3:]
            rdata = [x.lower() if x.endswith(".") else x for x in rdata]
            res[section].append(" ".join([owner, ttl, klass, rtype] + rdata))
    for s in ("answer", "authority", "additional"):
        res[s] = sorted(res[s])
    if res["rcode"] is None:
        raise RuntimeError(f"no DNS header in dig output:\n{text}")
    return res


def show(r):
    return (f"rcode={r['rcode']} aa={'aa' in r['flags']} answer={r['answer']} "
            f"authority={r['authority']} additional={r['additional']}")


def main():
    args = sys.argv[1:]
    report = None
    if "--report" in args:
        i = args.index("--report")
        report = args[i + 1]
        del args[i:i + 2]
    names_file, la, aa, pa, lb, ab, pb = args
    failures, warnings, checked = [], [], 0
    with open(names_file) as f:
        questions = [l.split() for l in f if l.strip()]
    try:
        for name, qtype in questions:
            for edns in (True, False):
                ra = dig(aa, pa, name, qtype, edns)
                rb = dig(ab, pb, name, qtype, edns)
                checked += 1
                tag = f"{name} {qtype} ({'edns' if edns else 'no edns'})"
                if (ra["rcode"], ra["answer"], ra["authority"], set(ra["additional"])) != \
                        (rb["rcode"], rb["answer"], rb["authority"], set(rb["additional"])):
                    failures.append(f"DIFFERENT {tag}\n  {la}: {show(ra)}\n  {lb}: {show(rb)}")
                else:
                    if ra["additional"] != rb["additional"]:
                        warnings.append(f"additional section has the same records but not the same copies for {tag}\n  {la}: {ra['additional']}\n  {lb}: {rb['additional']}")
                    if ("aa" in ra["flags"]) != ("aa" in rb["flags"]):
                        warnings.append(f"AA flag differs for {tag}: {la} {sorted(ra['flags'])}, {lb} {sorted(rb['flags'])}")
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"compare: {e}", file=sys.stderr)
        sys.exit(2)
    lines = [f"compared {checked} questions ({len(questions)} names x EDNS on/off): "
             f"{len(failures)} different, {len(warnings)} warnings"]
    lines += failures + [f"WARNING {w}" for w in warnings]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if report:
        with open(report, "w") as f:
            f.write(text)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
