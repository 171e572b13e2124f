#!/usr/bin/env bash
# Side by side: Apache ZooKeeper (Debian package) and corral on loopback, standalone,
# fsync on, driven by the same loadgen sweep in alternation. Writes perf/side-by-side.jsonl,
# regenerates the tables in PERF.md and the figure perf-throughput-vs-read-ratio.png.
#
#   scripts/bench-side-by-side.sh            # full sweep (about 20 minutes)
#   BENCH_QUICK=1 scripts/bench-side-by-side.sh   # 1 s warm-up, 2 s per point (smoke test)
#
# Knobs (environment): BENCH_WARMUP_S (5), BENCH_DURATION_S (10), BENCH_RATIOS ("0 50 90 99 100"),
# BENCH_CONCURRENCY ("4x1 16x4 64x8" = connections x outstanding), BENCH_VALUE_SIZE (100),
# BENCH_KEYS (1000), BENCH_SERVERS ("zookeeper corral"), BENCH_OUT (perf/side-by-side.jsonl),
# BENCH_REPORT (1: rewrite PERF.md tables and the figure; 0: only print a summary),
# BENCH_CORRAL_CFG (extra zoo.cfg lines for corral, e.g. $'snapCount=100000').
#
# A/B of corral builds: name each binary, e.g.
#   BENCH_SERVERS="zookeeper old=/tmp/corral-old new=target/release/corral" BENCH_REPORT=0 \
#   BENCH_RATIOS=0 scripts/bench-side-by-side.sh
# Every point runs once on each server, the order rotating from point to point.
# Everything binds 127.0.0.1; both servers are killed on exit.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

warmup="${BENCH_WARMUP_S:-5}"
duration="${BENCH_DURATION_S:-10}"
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then warmup=1; duration=2; fi
ratios="${BENCH_RATIOS:-0 50 90 99 100}"
concurrency="${BENCH_CONCURRENCY:-4x1 16x4 64x8}"
value_size="${BENCH_VALUE_SIZE:-100}"
keys="${BENCH_KEYS:-1000}"
servers="${BENCH_SERVERS:-zookeeper corral}"
report="${BENCH_REPORT:-1}"
corral_cfg="${BENCH_CORRAL_CFG:-}"
out="${BENCH_OUT:-perf/side-by-side.jsonl}"

source "$repo/scripts/bench-lib.sh"
if ! python3 -c 'import matplotlib' 2>/dev/null; then
  log "installing matplotlib (pip)"
  python3 -m pip install --quiet matplotlib
fi

live=()
for spec in $servers; do
  name="${spec%%=*}"
  log "starting $name"
  bin="$corral"; [[ "$spec" == *=* ]] && bin="${spec#*=}"
  ok=0
  if [[ "$name" == zookeeper ]]; then start_zookeeper "$name" && ok=1
  else start_corral "$name" "$bin" "$corral_cfg" && ok=1; fi
  if (( ok )); then live+=("$name"); else log "!!!!! $name is NOT in this run: it could not be started (see above)"; fi
done
(( ${#live[@]} > 0 )) || { log "no server could be started"; exit 1; }

mkdir -p "$(dirname "$out")"
: > "$out.tmp"
run_id="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
flip=0
point() { # label, loadgen args...   (one point on every live server, order rotating)
  local label="$1"; shift
  local n=${#live[@]} i order=()
  for (( i = 0; i < n; i++ )); do order+=("${live[$(( (i + flip) % n ))]}"); done
  flip=$(( (flip + 1) % n ))
  for s in "${order[@]}"; do
    log "$s: $label"
    local json
    if json="$("$loadgen" -s "${addr[$s]}" --server-pid "${pid[$s]}" --json --no-progress \
          --label "$s $label" -w "$warmup" -d "$duration" --value-size "$value_size" --keys "$keys" "$@")"; then
      python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["server"]=sys.argv[2]; r["point"]=sys.argv[3]; r["run_id"]=sys.argv[4]; print(json.dumps(r, separators=(",",":")))' \
        "$json" "$s" "$label" "$run_id" >> "$out.tmp"
    else
      log "!!!!! $s failed at $label"
    fi
  done
}

for conc in $concurrency; do
  c="${conc%x*}"; o="${conc#*x}"
  for r in $ratios; do
    point "read=$r c=$c o=$o" -r "$r" -c "$c" -o "$o"
  done
done
point "ping c=16 o=16" --ping -c 16 -o 16
# Latency at one offered rate both servers sustain: half of ZooKeeper's 90%-read
# throughput at 16x4 in this run (or 10k/s when ZooKeeper is not in the run).
rate="$(python3 - "$out.tmp" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
zk = [r for r in rows if r["server"] == "zookeeper" and r["point"] == "read=90 c=16 o=4"]
print(int(zk[0]["ops_per_s"] * 0.5) if zk else 10000)
PY
)"
point "fixed-rate=$rate read=90 c=16 o=4" -r 90 -c 16 -o 4 --rate "$rate"

mv "$out.tmp" "$out"
python3 - "$out" <<'PY' >&2
import json, sys
for r in (json.loads(l) for l in open(sys.argv[1])):
    a = r["all"]
    print(f'{r["point"]:<40} {r["server"]:<12} {r["ops_per_s"]:>12,.0f} ops/s  '
          f'p50 {a.get("p50_us", 0) / 1000:.3f} ms  p99 {a.get("p99_us", 0) / 1000:.3f} ms')
PY
if [[ "$report" == 1 ]]; then
  log "results in $out; regenerating PERF.md tables and the figure"
  python3 scripts/bench_report.py "$out" PERF.md perf-throughput-vs-read-ratio.png
fi
log "done"
