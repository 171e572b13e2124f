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

log() { echo "[bench $(date -u +%H:%M:%S)] $*" >&2; }

# ---- what the script needs -------------------------------------------------------------
if [[ ! -f /usr/share/java/zookeeper.jar ]] || ! command -v java >/dev/null; then
  log "installing Apache ZooKeeper (Debian package zookeeper)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq zookeeper default-jre-headless >/dev/null
fi
if ! python3 -c 'import matplotlib' 2>/dev/null; then
  log "installing matplotlib (pip)"
  python3 -m pip install --quiet matplotlib
fi

log "building loadgen and corral (release)"
cargo build --release -p loadgen -p corral --bins >&2
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
loadgen="$target_dir/release/loadgen"
corral="$target_dir/release/corral"

work="$(mktemp -d /tmp/corral-bench.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

write_cfg() { # dir port
  mkdir -p "$1/data"
  cat > "$1/zoo.cfg" <<CFG
tickTime=2000
dataDir=$1/data
clientPort=$2
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=*
forceSync=yes
maxClientCnxns=0
CFG
}

# Ready = ruok answers imok and a session handshake succeeds (ZooKeeper says imok early).
wait_ready() { # name port pid
  local deadline=$((SECONDS + 60))
  while (( SECONDS < deadline )); do
    if ! kill -0 "$3" 2>/dev/null; then log "$1 exited during start-up"; return 1; fi
    if [[ "$(python3 - "$2" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.sendall(b"ruok"); print(s.recv(16).decode())
PY
)" == imok ]] && "$loadgen" -s "127.0.0.1:$2" --ping -c 1 -w 0 -d 0.2 --no-progress --skip-setup >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  log "$1 did not become ready on port $2 within 60 s"; return 1
}

declare -A addr pid
start_zookeeper() { # name
  local d="$work/$1" port; port="$(free_port)"; write_cfg "$d" "$port"
  local cp="" j
  for j in zookeeper zookeeper-jute slf4j-api slf4j-simple metrics-core commons-cli snappy-java \
           jackson-databind jackson-core jackson-annotations netty-handler netty-common netty-buffer \
           netty-transport netty-codec netty-resolver netty-transport-native-epoll \
           netty-transport-native-unix-common; do
    [[ -f "/usr/share/java/$j.jar" ]] && cp="$cp${cp:+:}/usr/share/java/$j.jar"
  done
  java -Xms2g -Xmx2g -cp "$cp" org.apache.zookeeper.server.quorum.QuorumPeerMain "$d/zoo.cfg" \
    >"$d/server.log" 2>&1 &
  pid[$1]=$!; pids+=("$!"); addr[$1]="127.0.0.1:$port"
  wait_ready "$1" "$port" "${pid[$1]}"
}
start_corral() { # name binary
  local d="$work/$1" port; port="$(free_port)"; write_cfg "$d" "$port"
  [[ -n "$corral_cfg" ]] && printf '%s\n' "$corral_cfg" >> "$d/zoo.cfg"
  [[ -x "$2" ]] || { log "no corral binary at $2"; return 1; }
  "$2" server --config "$d/zoo.cfg" >"$d/server.log" 2>&1 &
  pid[$1]=$!; pids+=("$!"); addr[$1]="127.0.0.1:$port"
  wait_ready "$1" "$port" "${pid[$1]}" || { tail -5 "$d/server.log" >&2 || true; return 1; }
}

live=()
for spec in $servers; do
  name="${spec%%=*}"
  log "starting $name"
  if [[ "$name" == zookeeper ]]; then started=start_zookeeper; else started=start_corral; fi
  bin="$corral"; [[ "$spec" == *=* ]] && bin="${spec#*=}"
  if "$started" "$name" "$bin"; then live+=("$name"); else log "!!!!! $name is NOT in this run: it could not be started (see above)"; fi
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
