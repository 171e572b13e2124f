#!/usr/bin/env bash
# Alternated A/B of corral configurations (one binary): for each round, for each
# named config, a fresh standalone server with the side-by-side settings
# (scripts/bench-lib.sh: forceSync=yes, maxClientCnxns=0) plus that config's lines,
# one loadgen run against it, then the server is stopped. Prints req/s, p50 and
# server CPU per request.
#
#   scripts/ab-config.sh "shard=corral.sequencerCore=shard own=corral.sequencerCore=own" \
#       -r 0 -c 4 -o 1 -w 2 -d 5
#
# Specs are name=lines, lines separated by \n (e.g. "two=corral.shardCores=2\ncorral.sequencerCore=own").
# Knobs: AB_ROUNDS (3), AB_CORRAL (the release build of this tree).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
specs="$1"; shift
rounds="${AB_ROUNDS:-3}"
source "$repo/scripts/bench-lib.sh"
bin="${AB_CORRAL:-$corral}"
for round in $(seq "$rounds"); do
  for spec in $specs; do
    name="${spec%%=*}"
    start_corral "$name" "$bin" "$(printf '%b' "${spec#*=}")"
    out=$("$loadgen" -s "${addr[$name]}" --server-pid "${pid[$name]}" --no-progress "$@" 2>&1 || true)
    rate=$(grep -oE '[0-9]+ req/s, ' <<<"$out" | head -1 | cut -d' ' -f1)
    p50=$(awk '$1=="all"{print $6}' <<<"$out")
    cpu=$(grep -oE 'server CPU: +[0-9.]+' <<<"$out" | grep -oE '[0-9.]+$')
    echo "round $round $name: ${rate:-?} req/s, p50 ${p50:-?} us, server CPU ${cpu:-?} us/request"
    stop_server "$name"
  done
done
