#!/usr/bin/env bash
# The tail of durable writes over time: a closed-loop setData load (64 x 8 by default)
# for TAIL_SECONDS against each server, standalone and as a 3-member ensemble on
# 127.0.0.1, with loadgen's latency series in TAIL_WINDOW_MS windows. Prints one line
# per run: throughput, server CPU per write, p50 / p99 / p99.9 / max, and how many
# windows had a p99 above TAIL_SPIKE_MS (the periodic stalls a log segment roll used
# to cause; PERF.md, "Log segment rolls and the write tail"). The servers alternate
# order every round; each run starts a fresh server (or ensemble).
#
#   scripts/bench-write-tail.sh                                   # corral, both modes, 3 rounds
#   TAIL_SERVERS="old=/tmp/corral-old new=target/release/corral" scripts/bench-write-tail.sh
#   TAIL_SERVERS="zookeeper corral" TAIL_MODES=ensemble scripts/bench-write-tail.sh
#
# Knobs (environment): TAIL_SERVERS ("corral"; "zookeeper", or corral builds as
# name=/path), TAIL_MODES ("standalone ensemble"), TAIL_ROUNDS (3), TAIL_CONCURRENCY
# (64x8), TAIL_SECONDS (20), TAIL_WARMUP_S (3), TAIL_WINDOW_MS (500), TAIL_SPIKE_MS
# (20), TAIL_KEYS (1000 znodes of 100 bytes written over; more makes every snapshot
# bigger), BENCH_CORRAL_CFG (extra zoo.cfg lines for corral), TAIL_OUT (a directory for
# the raw loadgen reports; none by default).
# Everything binds 127.0.0.1; every server is killed on exit.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

servers="${TAIL_SERVERS:-corral}"
modes="${TAIL_MODES:-standalone ensemble}"
rounds="${TAIL_ROUNDS:-3}"
conc="${TAIL_CONCURRENCY:-64x8}"
seconds="${TAIL_SECONDS:-20}"
warmup="${TAIL_WARMUP_S:-3}"
window_ms="${TAIL_WINDOW_MS:-500}"
spike_ms="${TAIL_SPIKE_MS:-20}"
keys="${TAIL_KEYS:-1000}"
corral_cfg="${BENCH_CORRAL_CFG:-}"
out_dir="${TAIL_OUT:-}"

source "$repo/scripts/bench-lib.sh"
[[ -n "$out_dir" ]] && mkdir -p "$out_dir"
c="${conc%x*}"; o="${conc#*x}"

summary() { # report.json mode server round
  python3 - "$@" "$spike_ms" <<'PY'
import json, sys
path, mode, server, rnd, spike_ms = sys.argv[1:6]
r = json.load(open(path)); a = r["all"]; cpu = r.get("server_cpu", {})
windows = r.get("series", [])
spikes = sum(1 for w in windows if w["p99_us"] > float(spike_ms) * 1000)
worst = max((w["p99_us"] for w in windows), default=0)
print("%-10s round %s  %-10s %8.0f writes/s  cpu %5.1f us  p50 %5.2f  p99 %6.2f  p99.9 %6.2f"
      "  max %6.2f ms  windows with p99 > %s ms: %2d/%d (worst %.1f ms)" % (
          mode, rnd, server, r["ops_per_s"], cpu.get("us_per_op", 0), a["p50_us"] / 1e3,
          a["p99_us"] / 1e3, a.get("p999_us", 0) / 1e3, a["max_us"] / 1e3, spike_ms,
          spikes, len(windows), worst / 1e3))
PY
}

run() { # mode spec round
  local mode="$1" spec="$2" round="$3" s bin k name addrs pids json
  s="${spec%%=*}"; bin="$corral"; [[ "$spec" == *=* ]] && bin="${spec#*=}"
  k=corral; [[ "$s" == zookeeper ]] && k=zookeeper
  local extra=""; [[ $k == corral ]] && extra="$corral_cfg"
  name="tail-$mode-$s-$round"
  if [[ $mode == ensemble ]]; then
    start_ensemble "$k" "$name" "$bin" "$extra" || { log "!!!!! $s did not start"; stop_ensemble "$name"; return 0; }
    addrs="$(ensemble_addrs "$name")"; pids="$(ensemble_pids "$name")"
  else
    if [[ $k == zookeeper ]]; then start_zookeeper "$name"
    else start_corral "$name" "$bin" "$extra"; fi || { log "!!!!! $s did not start"; return 0; }
    addrs="${addr[$name]}"; pids="${pid[$name]}"
  fi
  json="$work/$name.json"
  "$loadgen" -s "$addrs" --server-pid "$pids" --json --no-progress -w "$warmup" -d "$seconds" \
    --series-ms "$window_ms" --value-size 100 --keys "$keys" -r 0 -c "$c" -o "$o" > "$json" \
    || log "!!!!! loadgen failed against $s"
  if [[ $mode == ensemble ]]; then stop_ensemble "$name"; else stop_server "$name"; fi
  [[ -s "$json" ]] && summary "$json" "$mode" "$s" "$round"
  [[ -n "$out_dir" && -s "$json" ]] && cp "$json" "$out_dir/"
  return 0
}

log "writes at $conc, $seconds s per run, $window_ms ms windows; servers: $servers; modes: $modes"
for (( round = 1; round <= rounds; round++ )); do
  mapfile -t order < <(round_order "$round" $servers)
  for mode in $modes; do
    for spec in "${order[@]}"; do run "$mode" "$spec" "$round"; done
  done
done
