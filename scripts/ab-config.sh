#!/usr/bin/env bash
# Alternated A/B of corral configurations (one binary): for each round, for each
# named config, a fresh standalone server with the side-by-side settings
# (forceSync=yes, maxClientCnxns=0) plus that config's lines, one loadgen run
# against it, then the server is stopped. Prints req/s and server CPU per request.
#
#   scripts/ab-config.sh "shard=corral.sequencerCore=shard own=corral.sequencerCore=own" \
#       -r 0 -c 4 -o 1 -w 2 -d 5
#
# Specs are name=lines, lines separated by \n (e.g. "two=corral.shardCores=2\ncorral.sequencerCore=own").
# Knobs: AB_ROUNDS (3), AB_CORRAL (target/release/corral), AB_LOADGEN (target/release/loadgen).
set -euo pipefail
cd "$(dirname "$0")/.."
specs="$1"; shift
rounds="${AB_ROUNDS:-3}"
corral="${AB_CORRAL:-target/release/corral}"
loadgen="${AB_LOADGEN:-target/release/loadgen}"
[[ -x "$corral" && -x "$loadgen" ]] || cargo build --release --workspace
for round in $(seq "$rounds"); do
  for spec in $specs; do
    name="${spec%%=*}"; extra="${spec#*=}"
    dir=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'tickTime=2000\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\nforceSync=yes\nmaxClientCnxns=0\n%b\n' \
      "$dir" "$port" "$extra" > "$dir/zoo.cfg"
    "$corral" server --config "$dir/zoo.cfg" > "$dir/log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      sleep 0.1
    done
    out=$("$loadgen" -s "127.0.0.1:$port" --server-pid "$pid" --no-progress "$@" 2>&1 || true)
    rate=$(grep -oE '[0-9]+ req/s, ' <<<"$out" | head -1 | cut -d' ' -f1)
    p50=$(awk '$1=="all"{print $6}' <<<"$out")
    cpu=$(grep -oE 'server CPU: +[0-9.]+' <<<"$out" | grep -oE '[0-9.]+$')
    echo "round $round $name: ${rate:-?} req/s, p50 ${p50:-?} us, server CPU ${cpu:-?} us/request"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
  done
done
