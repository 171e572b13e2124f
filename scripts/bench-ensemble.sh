#!/usr/bin/env bash
# Ensemble side by side: 3 Apache ZooKeeper members (Debian package) against 3 corral
# members, each ensemble on 127.0.0.1 (distinct ports and dataDirs, tickTime 2000,
# initLimit 10, syncLimit 5, forceSync=yes), driven by the same loadgen with its
# connections spread over the three members (connection i to member i % 3, reads served
# by the member, writes through the leader). One kind runs at a time: start 3 members,
# wait for a leader, run every point, stop them; then the other kind. Server CPU per
# request is the sum over the three processes (/proc). Writes perf/ensemble.jsonl and
# prints the tables PERF.md's "Ensemble (quorum mode)" section quotes.
#
#   scripts/bench-ensemble.sh                  # both kinds, ratios 0 90 100 (about 12 minutes)
#   BENCH_QUICK=1 scripts/bench-ensemble.sh    # 1 s warm-up, 2 s per point (smoke test)
#
# Knobs (environment): BENCH_WARMUP_S (5), BENCH_DURATION_S (10), BENCH_RATIOS ("0 90 100"),
# BENCH_CONCURRENCY ("4x1 16x4 64x8" = connections x outstanding), BENCH_VALUE_SIZE (100),
# BENCH_KEYS (1000), BENCH_SERVERS ("zookeeper corral"; corral builds as name=/path),
# BENCH_ROUNDS (1; each further round runs the kinds in the reverse order),
# BENCH_OUT (perf/ensemble.jsonl), BENCH_CORRAL_CFG (extra zoo.cfg lines for corral),
# BENCH_ZK_CFG (extra zoo.cfg lines for the reference). Quorum TLS on both kinds:
#   cfg="$(scripts/quorum-tls-keys.sh /tmp/qk)"; BENCH_CORRAL_CFG="$cfg" BENCH_ZK_CFG="$cfg" ...
# Everything binds 127.0.0.1; every member is killed on exit.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

warmup="${BENCH_WARMUP_S:-5}"
duration="${BENCH_DURATION_S:-10}"
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then warmup=1; duration=2; fi
ratios="${BENCH_RATIOS:-0 90 100}"
concurrency="${BENCH_CONCURRENCY:-4x1 16x4 64x8}"
value_size="${BENCH_VALUE_SIZE:-100}"
keys="${BENCH_KEYS:-1000}"
servers="${BENCH_SERVERS:-zookeeper corral}"
rounds="${BENCH_ROUNDS:-1}"
corral_cfg="${BENCH_CORRAL_CFG:-}"
zk_cfg="${BENCH_ZK_CFG:-}"
out="${BENCH_OUT:-perf/ensemble.jsonl}"

source "$repo/scripts/bench-lib.sh"

mkdir -p "$(dirname "$out")"
: > "$out.tmp"
run_id="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

point() { # server ensemble-name round label loadgen-args...
  local s="$1" name="$2" round="$3" label="$4"; shift 4
  log "$s: $label"
  local json
  if json="$("$loadgen" -s "$(ensemble_addrs "$name")" --server-pid "$(ensemble_pids "$name")" \
        --json --no-progress --label "$s $label" -w "$warmup" -d "$duration" \
        --value-size "$value_size" --keys "$keys" "$@")"; then
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(server=sys.argv[2], point=sys.argv[3], run_id=sys.argv[4], round=int(sys.argv[5]), mode="ensemble"); print(json.dumps(r, separators=(",",":")))' \
      "$json" "$s" "$label" "$run_id" "$round" >> "$out.tmp"
  else
    log "!!!!! $s failed at $label"
  fi
}

run_kind() { # spec round
  local spec="$1" round="$2" s bin name
  s="${spec%%=*}"; bin="$corral"; [[ "$spec" == *=* ]] && bin="${spec#*=}"
  name="ens-$s-$round"
  local k=corral; [[ "$s" == zookeeper ]] && k=zookeeper
  log "round $round: starting 3 $s members"
  if ! start_ensemble "$k" "$name" "$bin" "$([[ $k == corral ]] && echo "$corral_cfg" || echo "$zk_cfg")"; then
    log "!!!!! $s is NOT in this round: its ensemble did not start"
    stop_ensemble "$name"; return 0
  fi
  local conc c o r
  for conc in $concurrency; do
    c="${conc%x*}"; o="${conc#*x}"
    for r in $ratios; do
      point "$s" "$name" "$round" "read=$r c=$c o=$o" -r "$r" -c "$c" -o "$o"
    done
  done
  # Where the leader ended up (the sweep must not have caused an election).
  log "$s: leader after the sweep: $(ensemble_leader "$name" || echo none)"
  stop_ensemble "$name"
}

for (( round = 1; round <= rounds; round++ )); do
  mapfile -t order < <(round_order "$round" $servers)
  for spec in "${order[@]}"; do run_kind "$spec" "$round"; done
done

mv "$out.tmp" "$out"
python3 scripts/bench_ensemble_report.py "$out"
log "done; raw reports in $out"
