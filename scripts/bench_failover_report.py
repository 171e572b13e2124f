#!/usr/bin/env python3
"""Helpers of scripts/bench-failover.sh.

    bench_failover_report.py timeline KILL_UNIX_MS LOG...   # one JSON object on stdout
    bench_failover_report.py summary perf/failover.jsonl     # markdown tables on stdout

`timeline` reads the survivors' server logs (corral's tracing lines or the reference's
slf4j lines, both stamped in UTC) and returns the election events after the kill, in ms
from the kill: when each survivor started looking, when it decided (took a role), when
it served again, how many times it started looking (more than once: the first election
did not hold), and the lines themselves.

`summary` prints one row per run and min/median/max per server kind."""
import json
import re
import statistics
import sys
from datetime import datetime, timezone

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z\s")
# (event, pattern) in the order they are tried; a line is one event at most.
EVENTS = [
    # corral
    ("looking", re.compile(r"role: Looking")),
    ("serving", re.compile(r"role: (Leading \{ epoch: Some\(\d+\), established: true|Following \{ leader: \d+, serving: true)")),
    ("decided", re.compile(r"role: (Leading|Following) ")),
    ("dropped", re.compile(r"leaving the leader|timeout waiting for a quorum")),
    # the reference
    ("looking", re.compile(r"QuorumPeer - LOOKING$")),
    ("serving", re.compile(r"Peer state changed: (leading|following) - broadcast")),
    ("decided", re.compile(r"Peer state changed: (leading|following)$")),
    ("dropped", re.compile(r"Unexpected exception, tries=|Exception when following the leader|shutdown of leader")),
    ("note", re.compile(r"LEADER ELECTION TOOK|Getting a diff|Notification time out")),
]
WINDOW_MS = 120_000


def stamp_ms(line):
    m = STAMP.match(line)
    if not m:
        return None
    t = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
    return t.timestamp() * 1e3


def classify(line):
    for name, pat in EVENTS:
        if pat.search(line):
            return name
    return None


def timeline(kill_ms, logs):
    members = []
    for i, path in enumerate(logs):
        ev = []
        try:
            text = open(path, errors="replace").read()
        except OSError:
            text = ""
        for raw in text.splitlines():
            line = ANSI.sub("", raw)
            t = stamp_ms(line)
            if t is None or not (kill_ms - 5 <= t <= kill_ms + WINDOW_MS):
                continue
            what = classify(line)
            if what:
                ev.append((round(t - kill_ms, 1), what, line[STAMP.match(line).end():][:200]))
        first = lambda w: next((t for t, e, _ in ev if e == w), None)
        last = lambda w: next((t for t, e, _ in reversed(ev) if e == w), None)
        members.append({
            "log": path,
            "looking_ms": first("looking"),
            "decided_ms": last("decided"),
            "serving_ms": first("serving"),
            "elections": sum(1 for _, e, _ in ev if e == "looking"),
            "events": ev,
        })
    return {"members": members}


def fmt(x):
    return f"{x:.0f}" if x is not None else "–"


def summary(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    kinds = sorted({r["server"] for r in rows}, key=lambda s: (s != "zookeeper", s))
    print("| server | run | killed | first write ms | survivors looking ms | decided ms (last) | serving ms | elections per survivor |")
    print("|---|---:|---|---:|---|---|---|---|")
    for r in rows:
        ms = r["timeline"]["members"]
        col = lambda k: " / ".join(fmt(m[k]) for m in ms)
        killed = r["killed"] + (f" ({r['killed_kind']})" if r["server"] == "mixed" else "")
        print(f"| {r['server']} | {r['run']} | {killed} | {fmt(r['first_write_ms'])} | {col('looking_ms')} "
              f"| {col('decided_ms')} | {col('serving_ms')} | {' / '.join(str(m['elections']) for m in ms)} |")
    print()
    print("| server | runs | min ms | median ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    med = {}
    inf = float("inf")
    for k in kinds:
        # A run without a write (the tool gave up) counts as longer than any other.
        v = sorted(r["first_write_ms"] if r["first_write_ms"] is not None else inf
                   for r in rows if r["server"] == k)
        if not v:
            continue
        med[k] = statistics.median(v)
        show = lambda x: f"{x:.0f}" if x != inf else "none (gave up)"
        print(f"| {k} | {len(v)} | {show(v[0])} | {show(med[k])} | {show(v[-1])} |")
    zk = med.get("zookeeper")
    for k in kinds:
        if k != "zookeeper" and zk and med.get(k, inf) != inf:
            print(f"\nmedian {k} / zookeeper: {med[k] / zk:.2f}")


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "timeline":
        print(json.dumps(timeline(float(sys.argv[2]), sys.argv[3:]), separators=(",", ":")))
    elif len(sys.argv) == 3 and sys.argv[1] == "summary":
        summary(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
