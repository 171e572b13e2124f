# Shared by the bench scripts (sourced, not run): installs the reference server if
# missing, builds loadgen and corral, and starts servers on free loopback ports in a
# temporary work dir that is removed, with every server started, on exit.
#
# Provides: log, free_port, write_cfg DIR PORT, wait_ready NAME PORT PID,
# start_zookeeper NAME [EXTRA_CFG], start_corral NAME BINARY [EXTRA_CFG],
# stop_server NAME; the arrays addr[NAME], pid[NAME], dir[NAME]; $loadgen, $corral, $work.

log() { echo "[bench $(date -u +%H:%M:%S)] $*" >&2; }

# ---- what the script needs -------------------------------------------------------------
if [[ ! -f /usr/share/java/zookeeper.jar ]] || ! command -v java >/dev/null; then
  log "installing Apache ZooKeeper (Debian package zookeeper)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq zookeeper default-jre-headless >/dev/null
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

declare -A addr pid dir
start_zookeeper() { # name [extra zoo.cfg lines]
  local d="$work/$1" port; port="$(free_port)"; write_cfg "$d" "$port"
  [[ -n "${2:-}" ]] && printf '%s\n' "$2" >> "$d/zoo.cfg"
  local cp="" j
  for j in zookeeper zookeeper-jute slf4j-api slf4j-simple metrics-core commons-cli snappy-java \
           jackson-databind jackson-core jackson-annotations netty-handler netty-common netty-buffer \
           netty-transport netty-codec netty-resolver netty-transport-native-epoll \
           netty-transport-native-unix-common; do
    [[ -f "/usr/share/java/$j.jar" ]] && cp="$cp${cp:+:}/usr/share/java/$j.jar"
  done
  java -Xms2g -Xmx2g -cp "$cp" org.apache.zookeeper.server.quorum.QuorumPeerMain "$d/zoo.cfg" \
    >"$d/server.log" 2>&1 &
  pid[$1]=$!; pids+=("$!"); addr[$1]="127.0.0.1:$port"; dir[$1]="$d"
  wait_ready "$1" "$port" "${pid[$1]}"
}
start_corral() { # name binary [extra zoo.cfg lines]
  local d="$work/$1" port; port="$(free_port)"; write_cfg "$d" "$port"
  [[ -n "${3:-}" ]] && printf '%s\n' "$3" >> "$d/zoo.cfg"
  [[ -x "$2" ]] || { log "no corral binary at $2"; return 1; }
  "$2" server --config "$d/zoo.cfg" >"$d/server.log" 2>&1 &
  pid[$1]=$!; pids+=("$!"); addr[$1]="127.0.0.1:$port"; dir[$1]="$d"
  wait_ready "$1" "$port" "${pid[$1]}" || { tail -5 "$d/server.log" >&2 || true; return 1; }
}
stop_server() { # name: kills it and removes its directory (data included)
  kill "${pid[$1]}" 2>/dev/null || true
  wait "${pid[$1]}" 2>/dev/null || true
  rm -rf "${dir[$1]}"
}
