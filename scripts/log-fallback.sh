#!/usr/bin/env bash
# What a fallocated log segment costs: standalone corral writes with its log in
# zero-filled segments (as normal) against the same binary whose preallocation thread
# never finishes a spare (an LD_PRELOAD shim holds that thread's fsync for the whole
# run), so every roll waits ROLL_SPARE_WAIT_MS_MAX and goes on in a fallocated
# segment. Alternates the two, a fresh server per round; one line per point.
#
#   scripts/log-fallback.sh
#   FALLBACK_ROUNDS=3 FALLBACK_CONCURRENCY="4x1 16x4 64x8" scripts/log-fallback.sh
#
# Knobs (environment): FALLBACK_ROUNDS (2), FALLBACK_CONCURRENCY ("4x1 16x4"),
# FALLBACK_SECONDS (6 measured, after 2 of warm-up). Needs cc (builds the shim from
# tests/common/stall_sync_shim.c).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
source "$repo/scripts/bench-lib.sh"
rounds="${FALLBACK_ROUNDS:-2}"
points="${FALLBACK_CONCURRENCY:-4x1 16x4}"
secs="${FALLBACK_SECONDS:-6}"

shim="$work/stall_sync_shim.so"
cc -shared -fPIC -O2 -o "$shim" tests/common/stall_sync_shim.c -ldl -lpthread

for r in $(seq 1 "$rounds"); do
  for mode in $(round_order "$r" zero-filled fallocated); do
    name="$mode-$r"
    stall="$work/stall-$name"
    [[ $mode == fallocated ]] && touch "$stall"
    LD_PRELOAD="$shim" STALL_SYNC_FILE="$stall" STALL_SYNC_THREAD=corral-prealloc \
      start_corral "$name" "$corral"
    for p in $points; do
      c="${p%x*}"; o="${p#*x}"
      line="$("$loadgen" -s "${addr[$name]}" --no-progress -w 2 -d "$secs" --value-size 100 \
        --keys 1000 -r 0 -c "$c" -o "$o" | awk '$1 == "all" { print $4 " writes/s, p50 " $6 " us, p99 " $8 " us" }')"
      echo "round $r, $mode, $p: $line"
    done
    echo "round $r, $mode: $(grep -c 'goes on in\|go on in' "${dir[$name]}/server.log" || true) roll(s) into a fallocated segment"
    rm -f "$stall"
    stop_server "$name"
  done
done
