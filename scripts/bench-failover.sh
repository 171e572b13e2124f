#!/usr/bin/env bash
# Failover time, measured the same way on Apache ZooKeeper (Debian package) and corral:
# for each kind, start 3 members on 127.0.0.1 (tickTime 2000, initLimit 10, syncLimit 5,
# forceSync=yes; bench-lib.sh's start_ensemble), wait for a leader, then per run:
# loadgen's `failover` tool opens one session on each survivor, writes through both
# (setData, one at a time), SIGKILLs the leader and measures from the kill to the first
# write that was sent after the leader was gone and succeeded (its clients reconnect to
# their own survivor every 5 ms, keeping their session). Then the old member is
# restarted on its files, the script waits until all three serve with one leader and
# runs again (same ensemble, whoever leads now is killed). Survivors' log lines are
# lined up with the kill (perf/failover.jsonl has the events; the summary table shows
# when each survivor started looking, decided and served again).
#
#   scripts/bench-failover.sh                         # both kinds, 5 runs each
#   BENCH_RUNS=3 BENCH_SERVERS=corral scripts/bench-failover.sh
#   BENCH_SERVERS="zookeeper mixed" scripts/bench-failover.sh   # a mixed ensemble beside
#       the reference: sids 1 and 2 ZooKeeper, sid 3 corral (ENSEMBLE_MIXED_KINDS)
#
# Knobs (environment): BENCH_RUNS (5), BENCH_SERVERS ("zookeeper corral"; corral builds as
# name=/path; "mixed" for members of both kinds, the corral ones from the default build),
# ENSEMBLE_MIXED_KINDS (the kinds of a mixed ensemble's sids 1..3: "zookeeper zookeeper
# corral"; the mixed rows name the kind of the leader each run killed), BENCH_BEFORE_S
# (1: steady writes before each kill), BENCH_SETTLE_S (2: pause after the restarted
# member serves), BENCH_OUT (perf/failover.jsonl), BENCH_CORRAL_CFG and
# BENCH_ZK_CFG (extra zoo.cfg lines per kind, as in bench-ensemble.sh, a mixed ensemble
# takes BENCH_ZK_CFG; quorum TLS on both:
#   cfg="$(scripts/quorum-tls-keys.sh /tmp/qk)"; BENCH_CORRAL_CFG="$cfg" BENCH_ZK_CFG="$cfg" ...).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

runs="${BENCH_RUNS:-5}"
servers="${BENCH_SERVERS:-zookeeper corral}"
before="${BENCH_BEFORE_S:-1}"
settle="${BENCH_SETTLE_S:-2}"
corral_cfg="${BENCH_CORRAL_CFG:-}"
zk_cfg="${BENCH_ZK_CFG:-}"
out="${BENCH_OUT:-perf/failover.jsonl}"

source "$repo/scripts/bench-lib.sh"

mkdir -p "$(dirname "$out")"
: > "$out.tmp"
run_id="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

one_run() { # server ensemble-name run
  local s="$1" name="$2" run="$3" leader m survivors="" logs=() json
  leader="$(ensemble_leader "$name")" || return 1
  for m in ${ens_members[$name]}; do
    [[ "$m" == "$leader" ]] && continue
    survivors="$survivors${survivors:+,}${addr[$m]}"; logs+=("${dir[$m]}/server.log")
  done
  log "$s run $run: killing leader $leader (pid ${pid[$leader]}); writing through $survivors"
  json="$("$failover" --kill-pid "${pid[$leader]}" -s "$survivors" --before-s "$before" --json)" || true
  reap_member "$leader"
  [[ -n "$json" ]] || { log "!!!!! $s run $run: the failover tool reported nothing"; return 1; }
  sleep 0.5 # let the survivors' last log lines reach the files
  local kill_ms tl
  kill_ms="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["kill_unix_ms"])' "$json")"
  tl="$(python3 scripts/bench_failover_report.py timeline "$kill_ms" "${logs[@]}")"
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(server=sys.argv[2], run=int(sys.argv[3]), killed=sys.argv[4], killed_kind=sys.argv[7], run_id=sys.argv[5], timeline=json.loads(sys.argv[6])); print(json.dumps(r, separators=(",",":")))' \
    "$json" "$s" "$run" "$leader" "$run_id" "$tl" "${kind_of[$leader]}" >> "$out.tmp"
  log "$s run $run: first write after $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["first_write_ms"])' "$json") ms"
  launch_member "$leader"
  ensemble_leader "$name" >/dev/null || return 1
  sleep "$settle"
}

for spec in $servers; do
  s="${spec%%=*}"; bin="$corral"; [[ "$spec" == *=* ]] && bin="${spec#*=}"
  k=corral; [[ "$s" == zookeeper || "$s" == mixed ]] && k="$s"
  name="fo-$s"
  log "starting 3 $s members"
  if ! start_ensemble "$k" "$name" "$bin" "$([[ $k == corral ]] && echo "$corral_cfg" || echo "$zk_cfg")"; then
    log "!!!!! $s is NOT in this run: its ensemble did not start"; stop_ensemble "$name"; continue
  fi
  sleep "$settle"
  for (( run = 1; run <= runs; run++ )); do
    one_run "$s" "$name" "$run" || { log "!!!!! $s: run $run failed; stopping this kind"; break; }
  done
  stop_ensemble "$name"
done

mv "$out.tmp" "$out"
python3 scripts/bench_failover_report.py summary "$out"
log "done; raw reports in $out"
