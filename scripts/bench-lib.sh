# Shared by the bench scripts (sourced, not run): installs the reference server if
# missing, builds loadgen and corral, and starts servers on free loopback ports in a
# temporary work dir that is removed, with every server started, on exit.
#
# Provides: log, free_port, write_cfg DIR PORT, wait_ready NAME PORT PID,
# start_zookeeper NAME [EXTRA_CFG], start_corral NAME BINARY [EXTRA_CFG],
# stop_server NAME, first_answer PORT [TIMEOUT]; the arrays addr[NAME], pid[NAME],
# dir[NAME]; $loadgen, $corral, $failover, $work.
# Ensembles (3 members on 127.0.0.1, members NAME.1..NAME.3, each also in addr/pid/dir;
# of one kind, or KIND "mixed": per sid the kinds in $ENSEMBLE_MIXED_KINDS, by default
# "zookeeper zookeeper corral"): start_ensemble KIND NAME [BINARY] [EXTRA_CFG], ensemble_leader NAME
# (waits for one leader, prints its member name), ensemble_addrs NAME, ensemble_pids NAME
# (comma-separated, sid order), reap_member MEMBER (after it was killed),
# launch_member MEMBER (starts it again on its files), stop_ensemble NAME;
# srvr_field PORT FIELD [TIMEOUT], srvr_mode PORT, srvr_zxid PORT (the server's last
# zxid, decimal); round_order ROUND WORD... (reversed on even rounds).

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
failover="$target_dir/release/failover"

# BENCH_TMPDIR: where the servers' data dirs go (/tmp; /dev/shm stands in for a disk whose
# fsync costs next to nothing, e.g. NVMe with power-loss protection).
work="$(mktemp -d "${BENCH_TMPDIR:-/tmp}/corral-bench.XXXXXX")"
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

# Seconds since the epoch (float) at the first getData("/") answered with err 0 on a
# fresh session; polls every 5 ms for at most TIMEOUT (300) s; prints nothing and fails
# on timeout.
first_answer() { # port [timeout s]
  python3 - "$1" "${2:-300}" <<'PY'
import socket, struct, sys, time
port = int(sys.argv[1])
connect = struct.pack(">iqiqi16s?", 0, 0, 30000, 0, 16, b"\0" * 16, False)
path = b"/"
get = struct.pack(">iii", 1, 4, len(path)) + path + b"\0"
def frame(b): return struct.pack(">i", len(b)) + b
def read_frame(s):
    head = b""
    while len(head) < 4:
        c = s.recv(4 - len(head))
        if not c: raise ConnectionError("closed")
        head += c
    (n,) = struct.unpack(">i", head)
    body = b""
    while len(body) < n:
        c = s.recv(n - len(body))
        if not c: raise ConnectionError("closed")
        body += c
    return body
deadline = time.time() + float(sys.argv[2])
while time.time() < deadline:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(frame(connect))
        r = read_frame(s)
        _, timeout, sid = struct.unpack(">iiq", r[:16])
        if timeout > 0 and sid != 0:
            s.sendall(frame(get))
            xid, zxid, err = struct.unpack(">iqi", read_frame(s)[:16])
            if xid == 1 and err == 0:
                print(f"{time.time():.6f}")
                sys.exit(0)
        s.close()
    except OSError:
        pass
    time.sleep(0.005)
sys.exit(1)
PY
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
zk_classpath() {
  local cp="" j
  for j in zookeeper zookeeper-jute slf4j-api slf4j-simple metrics-core commons-cli snappy-java \
           jackson-databind jackson-core jackson-annotations netty-handler netty-common netty-buffer \
           netty-transport netty-codec netty-resolver netty-transport-native-epoll \
           netty-transport-native-unix-common; do
    [[ -f "/usr/share/java/$j.jar" ]] && cp="$cp${cp:+:}/usr/share/java/$j.jar"
  done
  echo "$cp"
}
start_zookeeper() { # name [extra zoo.cfg lines]
  local d="$work/$1" port; port="$(free_port)"; write_cfg "$d" "$port"
  [[ -n "${2:-}" ]] && printf '%s\n' "$2" >> "$d/zoo.cfg"
  java -Xms2g -Xmx2g -cp "$(zk_classpath)" org.apache.zookeeper.server.quorum.QuorumPeerMain "$d/zoo.cfg" \
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

# ---- ensembles ---------------------------------------------------------------------------
ENSEMBLE_SIZE=3
ENSEMBLE_LEADER_WAIT_S=120
ENSEMBLE_MIXED_KINDS="${ENSEMBLE_MIXED_KINDS:-zookeeper zookeeper corral}"
declare -A kind_of bin_of port_of ens_members

write_member_cfg() { # dir sid server-lines extra-lines
  mkdir -p "$1/data"
  echo "$2" > "$1/data/myid"
  cat > "$1/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$1/data
admin.enableServer=false
4lw.commands.whitelist=*
forceSync=yes
maxClientCnxns=0
reconfigEnabled=false
standaloneEnabled=false
CFG
  [[ -n "$4" ]] && printf '%s\n' "$4" >> "$1/zoo.cfg"
  printf '%s' "$3" >> "$1/zoo.cfg"
}

# Distinct free ports, n of them.
free_ports() { # n
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

launch_member() { # member: starts it on its dir (appending to its server.log)
  local m="$1" d="${dir[$1]}"
  echo "----- bench: starting $m -----" >> "$d/server.log"
  if [[ "${kind_of[$m]}" == zookeeper ]]; then
    # The side-by-side script's JVM settings; timestamps on log lines (UTC) so the
    # failover script can line the log up with the kill.
    java -Xms2g -Xmx2g -Duser.timezone=UTC -Dorg.slf4j.simpleLogger.showDateTime=true \
      "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS'Z'" \
      -cp "$(zk_classpath)" org.apache.zookeeper.server.quorum.QuorumPeerMain "$d/zoo.cfg" \
      >>"$d/server.log" 2>&1 &
  else
    "${bin_of[$m]}" server --config "$d/zoo.cfg" >>"$d/server.log" 2>&1 &
  fi
  pid[$m]=$!; pids+=("$!")
}

# Reaps a member that was killed and forgets its pid (so cleanup never signals a
# recycled pid).
reap_member() { # member
  local p="${pid[$1]}" q keep=()
  wait "$p" 2>/dev/null || true
  for q in "${pids[@]}"; do [[ "$q" == "$p" ]] || keep+=("$q"); done
  pids=("${keep[@]}")
  pid[$1]=""
}

# One line of a server's srvr answer ("Mode", "Zxid", ...), its value after ": ";
# empty if the server does not answer within TIMEOUT seconds (1).
srvr_field() { # port field [timeout]
  python3 - "$1" "$2" "${3:-1}" <<'PY' 2>/dev/null || true
import socket, sys
port, field, timeout = int(sys.argv[1]), sys.argv[2] + ": ", float(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
s.settimeout(timeout); s.sendall(b"srvr"); data = b""
while True:
    chunk = s.recv(4096)
    if not chunk: break
    data += chunk
for line in data.decode(errors="replace").splitlines():
    if line.startswith(field): print(line[len(field):].strip())
PY
}
# "Mode: ..." of a member's srvr answer (leader, follower, ...), empty if not serving.
srvr_mode() { srvr_field "$1" Mode; } # port
# The server's last zxid (srvr's "Zxid: 0x..."), decimal; fails if it does not answer.
srvr_zxid() { # port
  local z; z="$(srvr_field "$1" Zxid 5)"
  [[ -n "$z" ]] || { log "no srvr answer on port $1"; return 1; }
  echo $((z))
}

# The words in the order round ROUND runs them: as given on odd rounds, reversed on
# even ones, so that no server always goes first.
round_order() { # round word...
  local round="$1" i; shift
  local words=("$@")
  if (( round % 2 == 0 )); then
    for (( i = ${#words[@]} - 1; i >= 0; i-- )); do echo "${words[$i]}"; done
  else
    printf '%s\n' "${words[@]}"
  fi
}

# Waits (bounded) until every running member serves and exactly one leads; prints the
# leader's member name.
ensemble_leader() { # name
  local deadline=$((SECONDS + ENSEMBLE_LEADER_WAIT_S)) m mode leaders serving running
  while (( SECONDS < deadline )); do
    leaders=(); serving=0; running=0
    for m in ${ens_members[$1]}; do
      [[ -n "${pid[$m]}" ]] || continue
      running=$((running + 1))
      kill -0 "${pid[$m]}" 2>/dev/null || { log "$m exited"; tail -5 "${dir[$m]}/server.log" >&2; return 1; }
      mode="$(srvr_mode "${port_of[$m]}")"
      case "$mode" in
        leader) leaders+=("$m"); serving=$((serving + 1)) ;;
        follower) serving=$((serving + 1)) ;;
      esac
    done
    if (( running > 0 && serving == running && ${#leaders[@]} == 1 )); then
      echo "${leaders[0]}"; return 0
    fi
    sleep 0.2
  done
  log "$1: the members did not agree on one leader within $ENSEMBLE_LEADER_WAIT_S s"
  return 1
}

ensemble_addrs() { # name: client addresses of the running members, sid order
  local m out=""
  for m in ${ens_members[$1]}; do [[ -n "${pid[$m]}" ]] && out="$out${out:+,}${addr[$m]}"; done
  echo "$out"
}
ensemble_pids() { # name
  local m out=""
  for m in ${ens_members[$1]}; do [[ -n "${pid[$m]}" ]] && out="$out${out:+,}${pid[$m]}"; done
  echo "$out"
}

# Starts 3 members with fresh dirs under $work/NAME: all of KIND (zookeeper or corral), or
# for KIND "mixed" the kinds $ENSEMBLE_MIXED_KINDS names per sid. Waits for a leader and
# for a session handshake on every member.
start_ensemble() { # kind name [corral binary] [extra zoo.cfg lines]
  local k="$1" name="$2" b="${3:-$corral}" extra="${4:-}" sid m lines="" ports i=0 kinds
  [[ "$k" == zookeeper || -x "$b" ]] || { log "no corral binary at $b"; return 1; }
  if [[ "$k" == mixed ]]; then
    read -r -a kinds <<< "$ENSEMBLE_MIXED_KINDS"
    (( ${#kinds[@]} == ENSEMBLE_SIZE )) \
      || { log "ENSEMBLE_MIXED_KINDS names ${#kinds[@]} kinds for $ENSEMBLE_SIZE members"; return 1; }
  fi
  read -r -a ports <<< "$(free_ports $((3 * ENSEMBLE_SIZE)))"
  ens_members[$name]=""
  for (( sid = 1; sid <= ENSEMBLE_SIZE; sid++ )); do
    m="$name.$sid"
    ens_members[$name]+="$m "
    kind_of[$m]="$k"; [[ "$k" == mixed ]] && kind_of[$m]="${kinds[$((sid - 1))]}"
    case "${kind_of[$m]}" in zookeeper|corral) ;; *) log "unknown member kind ${kind_of[$m]}"; return 1 ;; esac
    bin_of[$m]="$b"; dir[$m]="$work/$name/m$sid"
    port_of[$m]="${ports[$i]}"; addr[$m]="127.0.0.1:${ports[$i]}"
    lines+="server.$sid=127.0.0.1:${ports[$((i + 1))]}:${ports[$((i + 2))]}:participant;127.0.0.1:${ports[$i]}"$'\n'
    i=$((i + 3))
  done
  for m in ${ens_members[$name]}; do write_member_cfg "${dir[$m]}" "${m##*.}" "$lines" "$extra"; done
  for m in ${ens_members[$name]}; do launch_member "$m"; done
  local leader; leader="$(ensemble_leader "$name")" || return 1
  for m in ${ens_members[$name]}; do
    wait_ready "$m" "${port_of[$m]}" "${pid[$m]}" || return 1
  done
  log "$name: serving, leader $leader"
}

# True when the process is gone or a zombie.
process_gone() { # pid
  local st
  st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
  st="${st##*) }"; [[ "${st%% *}" == Z || "${st%% *}" == X ]]
}

stop_ensemble() { # name: SIGTERM every member (SIGKILL after 10 s), reap, remove its files
  local m t
  for m in ${ens_members[$1]}; do [[ -n "${pid[$m]}" ]] && { kill "${pid[$m]}" 2>/dev/null || true; }; done
  for m in ${ens_members[$1]}; do
    [[ -n "${pid[$m]}" ]] || continue
    for (( t = 0; t < 100; t++ )); do process_gone "${pid[$m]}" && break; sleep 0.1; done
    process_gone "${pid[$m]}" || kill -9 "${pid[$m]}" 2>/dev/null || true
    reap_member "$m"
  done
  rm -rf "${work:?}/$1"
}
