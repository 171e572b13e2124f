#!/usr/bin/env bash
# What a write costs a 3-member corral ensemble in sleeps and system calls: starts 3
# members on 127.0.0.1 (the ensemble benchmark's settings), runs a write load spread
# over them, and counts, per member thread over a window, context switches,
# membarrier calls (glommio issues one before every sleep), fdatasync calls,
# io_uring_enter calls and io_uring submissions; then prints each per write, with
# loadgen's throughput and the servers' CPU per write. PERF.md, "Ensemble: where a
# write's CPU goes at low concurrency".
#
#   scripts/ensemble-wakeups.sh                    # 1 x 1 (one client, one write in flight)
#   WAKEUPS_CONCURRENCY=4x1 scripts/ensemble-wakeups.sh
#   BENCH_CORRAL_CFG=forceSync=no scripts/ensemble-wakeups.sh
#
# Knobs (environment): WAKEUPS_CONCURRENCY (1x1), WAKEUPS_SECONDS (4, the counted
# window), BENCH_CORRAL_CFG (extra zoo.cfg lines), CORRAL (the binary).
# Needs `perf` (linux-perf) and root or perf_event_paranoid <= 1 (tracepoints).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
conc="${WAKEUPS_CONCURRENCY:-1x1}"
secs="${WAKEUPS_SECONDS:-4}"
corral_cfg="${BENCH_CORRAL_CFG:-}"

source "$repo/scripts/bench-lib.sh"
command -v perf >/dev/null || { log "perf is not installed"; exit 1; }
out="$work/wakeups"; mkdir -p "$out"

start_ensemble corral wake "${CORRAL:-$corral}" "$corral_cfg"
leader="$(ensemble_leader wake)"
conns="${conc%x*}"; outstanding="${conc#*x}"
warmup=3
"$loadgen" -s "$(ensemble_addrs wake)" --server-pid "$(ensemble_pids wake)" --no-progress \
  -w "$warmup" -d $((secs + 3)) --value-size 100 --keys 1000 -r 0 -c "$conns" -o "$outstanding" \
  > "$out/loadgen.txt" 2>&1 &
lg=$!
sleep $((warmup + 1))

events=context-switches,syscalls:sys_enter_membarrier,syscalls:sys_enter_fdatasync
events+=,syscalls:sys_enter_io_uring_enter,io_uring:io_uring_submit_req
# The leader's zxid before and after the window: the writes committed in it (one
# epoch: no election during the run).
z0="$(srvr_zxid "${port_of[$leader]}")"
counting=()
for m in ${ens_members[wake]}; do
  perf stat -x, --per-thread -e "$events" -p "${pid[$m]}" -o "$out/$m.csv" -- sleep "$secs" &
  counting+=("$!")
done
wait "${counting[@]}"
z1="$(srvr_zxid "${port_of[$leader]}")"
writes=$((z1 - z0))
wait "$lg" || true
stop_ensemble wake

log "$writes writes committed in the ${secs} s window ($conc, leader $leader)"
printf '%-10s %-22s %9s %9s %9s %9s %9s\n' member thread ctx-sw membar fdatasync uring-ent uring-sqe
for m in $(echo "${ens_members[wake]}" | tr ' ' '\n' | sort); do
  python3 - "$out/$m.csv" "$writes" "$m$([[ $m == "$leader" ]] && echo '*')" <<'PY'
import collections, sys
path, writes, member = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cols = ["context-switches", "syscalls:sys_enter_membarrier", "syscalls:sys_enter_fdatasync",
        "syscalls:sys_enter_io_uring_enter", "io_uring:io_uring_submit_req"]
per = collections.defaultdict(dict)
for line in open(path):
    f = line.strip().split(",")
    if len(f) < 4 or not f[1].replace(".", "").isdigit():
        continue
    thread, value, event = f[0], f[1], f[3]
    per[thread][event] = float(value)
for thread, ev in sorted(per.items()):
    if sum(ev.values()) < writes / 100:
        continue
    cells = " ".join("%9.2f" % (ev.get(c, 0) / max(writes, 1)) for c in cols)
    print("%-10s %-22s %s" % (member, thread, cells))
PY
done
echo "(per committed write; * the leader)"
grep -E "req/s|server CPU" "$out/loadgen.txt" || true
