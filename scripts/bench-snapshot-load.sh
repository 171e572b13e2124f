#!/usr/bin/env bash
# Durable writes while snapshots are being written, on a big tree (TARGETS.md: "< 5 %
# throughput drop, no p99 spike"). Each run starts a fresh server, creates BENCH_NODES
# znodes of 100 B through loadgen's setup, then measures a closed-loop setData load over
# them. Label "none" runs with snapCount=1000000000 (no snapshot in the window), "snap"
# with BENCH_SNAPCOUNT (default 100000: a snapshot every 50-100 k writes, which under this
# load is one after the other, so the whole window is spent next to a snapshot being written).
# Labels alternate from round to round; every server in BENCH_SERVERS runs every label.
# Two readings: "snap" against "none" across runs (fresh servers, so machine noise
# between runs counts), and, inside each corral "snap" run, 100 ms intervals that
# overlap a snapshot being written against those that do not (same process, same
# tree, interleaved in time: loadgen's --series-ms lined up with the server log).
#
#   scripts/bench-snapshot-load.sh
#   BENCH_SERVERS="corral zookeeper" BENCH_ROUNDS=3 scripts/bench-snapshot-load.sh
#
# Knobs (environment): BENCH_NODES (300000), BENCH_ROUNDS (2), BENCH_WARMUP_S (2),
# BENCH_DURATION_S (20), BENCH_CONCURRENCY ("64x8" = connections x outstanding),
# BENCH_SNAPCOUNT (100000), BENCH_SETTLE_S (5: pause after each run), BENCH_SERVERS ("corral"; names: corral, zookeeper,
# or name=/path/to/corral), BENCH_OUT (perf/snapshot-load.jsonl).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

nodes="${BENCH_NODES:-300000}"
rounds="${BENCH_ROUNDS:-2}"
warmup="${BENCH_WARMUP_S:-2}"
duration="${BENCH_DURATION_S:-20}"
concurrency="${BENCH_CONCURRENCY:-64x8}"
snapcount="${BENCH_SNAPCOUNT:-100000}"
servers="${BENCH_SERVERS:-corral}"
out="${BENCH_OUT:-perf/snapshot-load.jsonl}"

source "$repo/scripts/bench-lib.sh"

# Snapshot log lines: corral "snapshot <path> written", the reference "Snapshotting: 0x.. to".
snapshots_logged() { grep -c -E 'snapshot .* written|Snapshotting: 0x' "$1" || true; }

mkdir -p "$(dirname "$out")"
: > "$out.tmp"
run_id="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
c="${concurrency%x*}"; o="${concurrency#*x}"
for (( round = 1; round <= rounds; round++ )); do
  labels=(none snap); (( round % 2 == 0 )) && labels=(snap none)
  for spec in $servers; do
    server="${spec%%=*}"; bin="$corral"; [[ "$spec" == *=* ]] && bin="${spec#*=}"
    for label in "${labels[@]}"; do
      sc=1000000000; [[ "$label" == snap ]] && sc="$snapcount"
      name="$server-$label"
      log "round $round: $name (snapCount=$sc): starting, creating $nodes znodes"
      if [[ "$server" == zookeeper ]]; then start_zookeeper "$name" "snapCount=$sc"
      else start_corral "$name" "$bin" "snapCount=$sc"; fi
      "$loadgen" -s "${addr[$name]}" -c 16 -o 64 -k "$nodes" --value-size 100 -r 100 \
        -w 0 -d 0.5 --no-progress >/dev/null
      before="$(snapshots_logged "${dir[$name]}/server.log")"
      log "round $round: $name: measuring ${c}x${o} setData for ${duration} s"
      json="$("$loadgen" -s "${addr[$name]}" --server-pid "${pid[$name]}" --json --no-progress \
        --skip-setup -c "$c" -o "$o" -k "$nodes" --value-size 100 -r 0 -w "$warmup" -d "$duration" \
        --series-ms 100)"
      after="$(snapshots_logged "${dir[$name]}/server.log")"
      server_log="$(dirname "$out")/snapshot-load-$name-$round.log"
      cp "${dir[$name]}/server.log" "$server_log"
      stop_server "$name"
      # Deleting a run's files makes the disk discard them (ext4 mounted with `discard`):
      # let that finish before the next run measures syncs.
      sync; sleep "${BENCH_SETTLE_S:-5}"
      python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(server=sys.argv[2], label=sys.argv[3], round=int(sys.argv[4]), snapshots=int(sys.argv[5]), run_id=sys.argv[6], server_log=sys.argv[7]); print(json.dumps(r, separators=(",",":")))' \
        "$json" "$server" "$label" "$round" "$((after - before))" "$run_id" "$server_log" >> "$out.tmp"
    done
  done
done
mv "$out.tmp" "$out"

python3 - "$out" "$nodes" "$concurrency" <<'PY'
import datetime, json, re, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\n{sys.argv[2]} znodes of 100 B, setData {sys.argv[3]}, run {rows[0]['run_id']}\n")
print("| server | label | round | snapshots in warm-up + window | writes/s | p50 ms | p99 ms | p99.9 ms |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for r in rows:
    a = r["all"]
    print(f"| {r['server']} | {r['label']} | {r['round']} | {r['snapshots']} | {r['ops_per_s']:,.0f} "
          f"| {a['p50_us']/1000:.2f} | {a['p99_us']/1000:.2f} | {a['p999_us']/1000:.2f} |")
print()
for s in dict.fromkeys(r["server"] for r in rows):
    def mean(label, f):
        v = [f(r) for r in rows if r["server"] == s and r["label"] == label]
        return sum(v) / len(v)
    tn, ts = mean("none", lambda r: r["ops_per_s"]), mean("snap", lambda r: r["ops_per_s"])
    pn, ps = mean("none", lambda r: r["all"]["p99_us"]), mean("snap", lambda r: r["all"]["p99_us"])
    print(f"{s}: throughput with snapshots {100 * (ts / tn - 1):+.1f} %, p99 {100 * (ps / pn - 1):+.1f} % "
          f"(means over rounds, across runs)")

# Inside corral's snap runs: intervals overlapping a snapshot write against the rest.
ansi = re.compile(r"\x1b\[[0-9;]*m")
line_re = re.compile(r"^(\S+Z)\s.*snapshot \S+ written \(.*\) in ([0-9.]+)(ms|s|µs)")
unit = {"ms": 1.0, "s": 1000.0, "µs": 0.001}
print("\n| server | round | intervals during / outside a snapshot | writes per 100 ms, during / outside "
      "| median interval p99 ms, during / outside | worst interval p99 ms, during / outside |")
print("|---|---:|---:|---:|---:|---:|")
for r in rows:
    if r["label"] != "snap" or not r.get("series"):
        continue
    spans = []
    for l in open(r["server_log"], encoding="utf-8", errors="replace"):
        m = line_re.search(ansi.sub("", l))
        if m:
            end = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp() * 1e3
            spans.append((end - float(m.group(2)) * unit[m.group(3)], end))
    if not spans:
        continue
    during, outside = [], []
    for p in r["series"]:
        t0, t1 = p["start_unix_ms"], p["start_unix_ms"] + 100
        (during if any(a < t1 and b > t0 for a, b in spans) else outside).append(p)
    if not during or not outside:
        continue
    f = lambda v, k: statistics.mean(x[k] for x in v)
    med = lambda v: statistics.median(x["p99_us"] for x in v) / 1000
    worst = lambda v: max(x["p99_us"] for x in v) / 1000
    print(f"| {r['server']} | {r['round']} | {len(during)} / {len(outside)} | {f(during, 'count'):,.0f} / "
          f"{f(outside, 'count'):,.0f} ({100 * (f(during, 'count') / f(outside, 'count') - 1):+.1f} %) "
          f"| {med(during):.2f} / {med(outside):.2f} | {worst(during):.2f} / {worst(outside):.2f} |")
PY
