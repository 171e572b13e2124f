#!/usr/bin/env python3
"""Turns the read-vs-ping results (JSON lines from scripts/bench-read-vs-ping.sh, one
loadgen report per line, tagged with "server", "mode", "kind", "point" and "round") into
markdown: per server, write mode and point, the server's CPU per getData and per ping
(user, sys, total, in µs per answered request), their ratio, ZooKeeper/corral CPU per
getData, and which of issue 14's read-path goals hold.

    python3 scripts/read_vs_ping_report.py perf/read-vs-ping.jsonl

With several rounds a cell is the median over rounds (the count is stated)."""
import json
import statistics
import sys

ZK, CO = "zookeeper", "corral"
MODES = ["batched", "per-request"]
# Issue 14's goals.
GET_OVER_PING_MAX = 1.3
ZK_OVER_CORRAL_DEEP_MIN = 10.0  # 64x8, loadgen's batching
PER_REQUEST_USER_US_MAX = 1.0
ZK_OVER_CORRAL_PER_REQUEST_MIN = 4.0


def point_key(p):
    c, o = p.split("x")
    return (int(c) * int(o), int(c))


def median(rows, server, mode, kind, point, *path):
    vals = []
    for r in rows:
        if (r["server"], r["mode"], r["kind"], r["point"]) != (server, mode, kind, point):
            continue
        v = r
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None:
            vals.append(v)
    return statistics.median(vals) if vals else None


def f(x, fmt="{:.2f}"):
    return fmt.format(x) if x is not None else "–"


def ratio(a, b):
    return a / b if a is not None and b else None


def cpu(rows, s, m, kind, p):
    return tuple(median(rows, s, m, kind, p, "server_cpu", k)
                 for k in ("user_us_per_op", "sys_us_per_op", "us_per_op"))


def cpu_table(rows, servers, modes, points):
    out = ["| server | writes | point | getData req/s | ping req/s "
           "| getData µs user / sys / **total** | ping µs user / sys / **total** "
           "| getData/ping | frames per write (get) | loadgen µs/req (get) |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in servers:
        for m in modes:
            for p in points:
                gu, gs, gt = cpu(rows, s, m, "get", p)
                pu, ps, pt = cpu(rows, s, m, "ping", p)
                if gt is None and pt is None:
                    continue
                out.append(
                    f"| {s} | {m} | {p.replace('x', ' × ')} "
                    f"| {f(median(rows, s, m, 'get', p, 'ops_per_s'), '{:,.0f}')} "
                    f"| {f(median(rows, s, m, 'ping', p, 'ops_per_s'), '{:,.0f}')} "
                    f"| {f(gu)} / {f(gs)} / **{f(gt)}** | {f(pu)} / {f(ps)} / **{f(pt)}** "
                    f"| {f(ratio(gt, pt), '{:.2f}×')} "
                    f"| {f(median(rows, s, m, 'get', p, 'io', 'frames_per_write'))} "
                    f"| {f(median(rows, s, m, 'get', p, 'loadgen_cpu', 'us_per_op'))} |")
    return out


def zk_ratio_table(rows, modes, points):
    out = ["| writes | point | ZooKeeper µs/getData | corral µs/getData | ZK/corral (getData) "
           "| ZK/corral (ping) |", "|---|---|---:|---:|---:|---:|"]
    for m in modes:
        for p in points:
            zg, cg = cpu(rows, ZK, m, "get", p)[2], cpu(rows, CO, m, "get", p)[2]
            zp, cp = cpu(rows, ZK, m, "ping", p)[2], cpu(rows, CO, m, "ping", p)[2]
            out.append(f"| {m} | {p.replace('x', ' × ')} | {f(zg)} | {f(cg)} "
                       f"| {f(ratio(zg, cg), '{:.1f}×')} | {f(ratio(zp, cp), '{:.1f}×')} |")
    return out


def verdict(ok):
    return "–" if ok is None else ("**holds**" if ok else "**does not hold**")


def goals(rows, modes, points):
    out = ["| goal | point | measured | verdict |", "|---|---|---:|---|"]
    for m in modes:
        for p in points:
            r = ratio(cpu(rows, CO, m, "get", p)[2], cpu(rows, CO, m, "ping", p)[2])
            out.append(f"| corral getData ≤ {GET_OVER_PING_MAX}× ping | {m} {p} "
                       f"| {f(r, '{:.2f}×')} "
                       f"| {verdict(None if r is None else r <= GET_OVER_PING_MAX)} |")
    deep = "64x8"
    if deep in points and "batched" in modes:
        r = ratio(cpu(rows, ZK, "batched", "get", deep)[2], cpu(rows, CO, "batched", "get", deep)[2])
        out.append(f"| ZooKeeper ≥ {ZK_OVER_CORRAL_DEEP_MIN:.0f}× corral CPU per read "
                   f"| batched {deep} | {f(r, '{:.1f}×')} "
                   f"| {verdict(None if r is None else r >= ZK_OVER_CORRAL_DEEP_MIN)} |")
    if "per-request" in modes:
        for p in points:
            u = cpu(rows, CO, "per-request", "get", p)[0]
            out.append(f"| corral user CPU per read ≤ {PER_REQUEST_USER_US_MAX:.0f} µs "
                       f"| per-request {p} | {f(u, '{:.3f}')} µs "
                       f"| {verdict(None if u is None else u <= PER_REQUEST_USER_US_MAX)} |")
        for p in points:
            r = ratio(cpu(rows, ZK, "per-request", "get", p)[2],
                      cpu(rows, CO, "per-request", "get", p)[2])
            out.append(f"| ZooKeeper ≥ {ZK_OVER_CORRAL_PER_REQUEST_MIN:.0f}× corral CPU per read "
                       f"| per-request {p} | {f(r, '{:.1f}×')} "
                       f"| {verdict(None if r is None else r >= ZK_OVER_CORRAL_PER_REQUEST_MIN)} |")
    return out


def report(rows):
    servers = sorted({r["server"] for r in rows}, key=lambda s: (s != CO, s))
    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    points = sorted({r["point"] for r in rows}, key=point_key)
    runs = sorted({r.get("run_id", "?") for r in rows})
    rounds = len({r.get("round", 1) for r in rows})
    loads = [float(r["loadavg"][0]) for r in rows if r.get("loadavg")]
    lines = [f"Run {', '.join(runs)}; {rounds} round(s), medians over rounds; "
             f"1-minute load average during the runs {min(loads):.1f}–{max(loads):.1f}."
             if loads else f"Run {', '.join(runs)}; {rounds} round(s).", "",
             "Server CPU (utime, stime from /proc/PID/stat) per request answered in the "
             "window; *batched* = loadgen's default (a connection's ready requests in one "
             "write), *per-request* = `--write-per-request` (one write syscall per request).",
             ""]
    lines += cpu_table(rows, servers, modes, points)
    if ZK in servers and CO in servers:
        lines += ["", "ZooKeeper's CPU per request over corral's:", ""]
        lines += zk_ratio_table(rows, modes, points)
    if CO in servers:
        lines += ["", "Issue 14's read-path goals:", ""]
        lines += goals(rows, modes, points)
    return "\n".join(lines)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1]) as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    rows = [r for r in rows if r.get("server_cpu")]
    if not rows:
        sys.exit(f"{sys.argv[1]}: no rows with server CPU")
    print(report(rows))


if __name__ == "__main__":
    main()
