#!/usr/bin/env bash
# The read path against a ping (issue 14): server CPU per 100-byte getData and per ping,
# measured in the same run, for corral and Apache ZooKeeper, at 4x1, 16x4 and 64x8
# (connections x outstanding), with loadgen's default batching (a connection's ready
# requests in one write) and with --write-per-request (one write syscall per request).
# One server runs at a time, standalone, with the side-by-side bench's settings
# (scripts/bench-lib.sh: forceSync=yes, maxClientCnxns=0, ZooKeeper -Xms2g -Xmx2g).
# Raw loadgen reports go to perf/read-vs-ping.jsonl (one per line, tagged); the table
# is printed by scripts/read_vs_ping_report.py.
#
#   scripts/bench-read-vs-ping.sh                     # one round, about 5 minutes
#   BENCH_ROUNDS=3 scripts/bench-read-vs-ping.sh      # medians over 3 rounds
#
# Knobs (environment): BENCH_ROUNDS (1; the server order flips every round),
# BENCH_WARMUP_S (3), BENCH_DURATION_S (5), BENCH_CONCURRENCY ("4x1 16x4 64x8"),
# BENCH_MODES ("batched per-request"), BENCH_SERVERS ("corral zookeeper"),
# BENCH_OUT (perf/read-vs-ping.jsonl).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

rounds="${BENCH_ROUNDS:-1}"
warmup="${BENCH_WARMUP_S:-3}"
duration="${BENCH_DURATION_S:-5}"
concurrency="${BENCH_CONCURRENCY:-4x1 16x4 64x8}"
modes="${BENCH_MODES:-batched per-request}"
servers="${BENCH_SERVERS:-corral zookeeper}"
out="${BENCH_OUT:-perf/read-vs-ping.jsonl}"
value_size=100
keys=1000

source "$repo/scripts/bench-lib.sh"

mkdir -p "$(dirname "$out")"
: > "$out.tmp"
run_id="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# One loadgen run against server $1; its JSON report, tagged, appended to $out.tmp.
measure() { # server round mode kind c o
  local s="$1" round="$2" mode="$3" kind="$4" c="$5" o="$6" json
  local args=(-c "$c" -o "$o")
  if [[ "$kind" == ping ]]; then args+=(--ping); else args+=(-r 100); fi
  if [[ "$mode" == per-request ]]; then args+=(--write-per-request); fi
  log "$s round $round: $mode $kind c=$c o=$o"
  if json="$("$loadgen" -s "${addr[$s]}" --server-pid "${pid[$s]}" --json --no-progress \
        --label "$s $mode $kind c=$c o=$o" -w "$warmup" -d "$duration" \
        --value-size "$value_size" --keys "$keys" "${args[@]}")"; then
    python3 -c '
import json, sys
r = json.loads(sys.argv[1])
r.update(server=sys.argv[2], round=int(sys.argv[3]), mode=sys.argv[4], kind=sys.argv[5],
         point=sys.argv[6], run_id=sys.argv[7], loadavg=open("/proc/loadavg").read().split()[:3])
print(json.dumps(r, separators=(",", ":")))' \
      "$json" "$s" "$round" "$mode" "$kind" "${c}x${o}" "$run_id" >> "$out.tmp"
  else
    log "!!!!! $s failed at $mode $kind c=$c o=$o"
  fi
}

# Every point on one freshly started server, then it is stopped (one server at a time).
# getData and ping alternate which goes first, so drift hits both alike.
one_server() { # server round
  local s="$1" round="$2" conc mode c o flip=0
  log "starting $s"
  if [[ "$s" == zookeeper ]]; then start_zookeeper "$s"; else start_corral "$s" "$corral"; fi
  # Creates the keys and warms the JIT / caches; not recorded.
  "$loadgen" -s "${addr[$s]}" --no-progress -r 100 -c 16 -o 4 -w 0 -d "$warmup" \
    --value-size "$value_size" --keys "$keys" >/dev/null
  for conc in $concurrency; do
    c="${conc%x*}"; o="${conc#*x}"
    for mode in $modes; do
      if (( flip )); then kinds="ping get"; else kinds="get ping"; fi
      flip=$(( 1 - flip ))
      for kind in $kinds; do measure "$s" "$round" "$mode" "$kind" "$c" "$o"; done
    done
  done
  stop_server "$s"
  # Forget its pid, so the exit trap never signals a recycled one.
  local p keep=()
  for p in "${pids[@]}"; do [[ "$p" == "${pid[$s]}" ]] || keep+=("$p"); done
  pids=("${keep[@]}")
}

for (( round = 1; round <= rounds; round++ )); do
  mapfile -t order < <(round_order "$round" $servers)
  for s in "${order[@]}"; do one_server "$s" "$round"; done
done

mv "$out.tmp" "$out"
log "results in $out (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
python3 scripts/read_vs_ping_report.py "$out"
