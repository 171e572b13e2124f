#!/usr/bin/env bash
# Where a corral leader's write path spends its time: 3 corral members on 127.0.0.1
# (the ensemble benchmark's settings), a write-only loadgen load spread over the members,
# then `perf record -g` on the leader's process for a few seconds, and per-thread CPU of
# every member over the same window (/proc/PID/task/*/stat). Prints the per-thread table
# and perf's top symbols (self time) for the leader; keeps perf.data under perf/.
#
#   scripts/profile-ensemble-leader.sh                     # 64 x 8, 0 % reads
#   PROFILE_CONCURRENCY=4x1 scripts/profile-ensemble-leader.sh
#
# Knobs (environment): PROFILE_CONCURRENCY (64x8), PROFILE_SECONDS (8), PROFILE_WARMUP_S (4),
# PROFILE_OUT (perf/leader-write-path), BENCH_CORRAL_CFG (extra zoo.cfg lines),
# PROFILE_TARGET (leader; `follower` profiles one of the followers instead),
# PROFILE_CALLGRAPH (fp; `dwarf` also unwinds through libc, e.g. to see who calls malloc:
# `perf report -i OUT/perf.data --no-children -S _int_malloc -G`).
# Needs `perf` (linux-perf) and root or perf_event_paranoid <= 1.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
conc="${PROFILE_CONCURRENCY:-64x8}"
secs="${PROFILE_SECONDS:-8}"
warmup="${PROFILE_WARMUP_S:-4}"
out="${PROFILE_OUT:-perf/leader-write-path}"
corral_cfg="${BENCH_CORRAL_CFG:-}"

source "$repo/scripts/bench-lib.sh"
command -v perf >/dev/null || { log "perf is not installed"; exit 1; }
mkdir -p "$out"

start_ensemble corral prof "$corral" "$corral_cfg"
leader="$(ensemble_leader prof)"
lpid="${pid[$leader]}"
if [[ "${PROFILE_TARGET:-leader}" == follower ]]; then
  for m in ${ens_members[prof]}; do [[ $m != "$leader" ]] && { lpid="${pid[$m]}"; break; }; done
fi
log "leader $leader; profiling pid $lpid (${PROFILE_TARGET:-leader}); load ${conc} writes for $((warmup + secs + 2)) s"

conns="${conc%x*}"; outstanding="${conc#*x}"
"$loadgen" -s "$(ensemble_addrs prof)" --no-progress -w 0 -d $((warmup + secs + 2)) \
  --value-size 100 --keys 1000 -r 0 -c "$conns" -o "$outstanding" > "$out/loadgen.txt" &
lg=$!
sleep "$warmup"

# Per-thread CPU ticks of every member, before and after the window.
thread_ticks() { # pid: "tid name utime stime" per thread
  local t
  for t in /proc/"$1"/task/*; do
    awk '{ n=$2; for (i=3; i<=NF && substr(n, length(n)) != ")"; i++) n = n " " $i;
           print FILENAME, n, $(i+11), $(i+12) }' "$t/stat" 2>/dev/null | sed 's#/proc/[0-9]*/task/##; s#/stat##'
  done
}
declare -A before
for m in ${ens_members[prof]}; do
  while read -r tid name ut st; do before["$m $tid"]="$ut $st"; done < <(thread_ticks "${pid[$m]}")
done
callgraph="${PROFILE_CALLGRAPH:-fp}"
perf record --call-graph "$callgraph" -p "$lpid" -o "$out/perf.data" -- sleep "$secs" 2> "$out/perf-record.txt"
hz="$(getconf CLK_TCK)"
{
  printf '%-10s %-8s %-20s %8s %8s\n' member tid thread user_s sys_s
  for m in ${ens_members[prof]}; do
    while read -r tid name ut st; do
      read -r ut0 st0 <<< "${before["$m $tid"]:-0 0}"
      du=$((ut - ut0)); ds=$((st - st0))
      (( du + ds > 0 )) || continue
      printf '%-10s %-8s %-20s %8.2f %8.2f\n' "$m$([[ $m == "$leader" ]] && echo '*')" "$tid" "$name" \
        "$(echo "$du / $hz" | bc -l)" "$(echo "$ds / $hz" | bc -l)"
    done < <(thread_ticks "${pid[$m]}")
  done
} | tee "$out/threads.txt"
wait "$lg" || true
tail -5 "$out/loadgen.txt"
perf report -i "$out/perf.data" --no-children --sort comm,sym --stdio 2>/dev/null \
  | grep -v '^#' | grep -E '^ +[0-9]' | head -40 | tee "$out/top-symbols.txt"
stop_ensemble prof
log "kept $out/{perf.data,threads.txt,top-symbols.txt,loadgen.txt}"
