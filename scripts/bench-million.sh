#!/usr/bin/env bash
# A million znodes, side by side (issue 14): per server in BENCH_SERVERS and per round,
# a fresh server gets BENCH_NODES znodes of 100 B through loadgen's setup (default
# snapCount, so snapshots land during the load and a log tail follows the newest one),
# is killed with SIGKILL, and restarted on its files. Reported per run:
# - create time and RSS while serving before the kill;
# - log records after the newest snapshot at the kill (last zxid from `srvr` minus the
#   newest finished snapshot's zxid; both servers name snapshots by zxid);
# - restart to serving: from the restart's launch to the first answered getData("/")
#   on a new session, polled every 5 ms by one client for both servers (the reference
#   answers `ruok` and accepts TCP before its database is loaded, and refuses sessions
#   until it is; corral refuses them until recovery is done). For corral also the time
#   its own log line `corral serving on` gives (from its recovery summary's clock);
# - VmRSS and VmHWM from /proc/PID/status when serving and BENCH_SETTLE_S later.
#
#   scripts/bench-million.sh
#   BENCH_NODES=200000 BENCH_SERVERS=corral scripts/bench-million.sh      # quick
#   BENCH_SERVERS="zookeeper old=/tmp/corral-old new=target/release/corral" scripts/bench-million.sh
#
# Knobs (environment): BENCH_NODES (1000000), BENCH_ROUNDS (1), BENCH_SERVERS
# ("corral zookeeper"; names: corral, zookeeper, or name=/path/to/corral),
# BENCH_SETTLE_S (5), BENCH_OUT (perf/million.jsonl, appended to).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

nodes="${BENCH_NODES:-1000000}"
rounds="${BENCH_ROUNDS:-1}"
servers="${BENCH_SERVERS:-corral zookeeper}"
settle="${BENCH_SETTLE_S:-5}"
out="${BENCH_OUT:-perf/million.jsonl}"

source "$repo/scripts/bench-lib.sh"

# The newest finished snapshot's zxid (decimal, 0 if none): corral's dataDir
# `snapshot.<hex>` (temp files end in .tmp), the reference's version-2/snapshot.<hex>.
newest_snapshot_zxid() { # data dir
  python3 - "$1" <<'PY'
import os, re, sys
best = 0
for root in (sys.argv[1], os.path.join(sys.argv[1], "version-2")):
    if not os.path.isdir(root): continue
    for n in os.listdir(root):
        m = re.fullmatch(r"snapshot\.([0-9a-fA-F]+)", n)
        if m: best = max(best, int(m.group(1), 16))
print(best)
PY
}

status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

mkdir -p "$(dirname "$out")"
run_id="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
rows=()
for (( round = 1; round <= rounds; round++ )); do
  for spec in $servers; do
    server="${spec%%=*}"; bin="$corral"; [[ "$spec" == *=* ]] && bin="${spec#*=}"
    name="$server-$round"; kind=corral; [[ "$server" == zookeeper ]] && kind=zookeeper
    log "round $round: $name: fresh server, creating $nodes znodes of 100 B"
    if [[ "$kind" == zookeeper ]]; then start_zookeeper "$name"; else start_corral "$name" "$bin"; fi
    port="${addr[$name]##*:}"
    t0="$(date +%s.%N)"
    "$loadgen" -s "${addr[$name]}" -c 1 -o 1 -k "$nodes" --value-size 100 -r 100 -w 0 -d 0.1 \
      --no-progress >/dev/null
    create_s="$(python3 -c "import time; print(f'{time.time() - $t0:.2f}')")"
    rss_before="$(status_kb "${pid[$name]}" VmRSS)"
    last_zxid="$(srvr_zxid "$port")"
    kill -9 "${pid[$name]}"
    kind_of[$name]="$kind"; bin_of[$name]="$bin"
    reap_member "$name"
    snap_zxid="$(newest_snapshot_zxid "${dir[$name]}/data")"
    tail_records=$(( last_zxid - snap_zxid ))
    log "round $round: $name: killed at zxid $last_zxid, newest snapshot $snap_zxid ($tail_records records after it); restarting"
    sync; echo "----- bench: restart -----" >> "${dir[$name]}/server.log"
    launch_member "$name"
    launched="$(date +%s.%N)"
    answered="$(first_answer "$port")" || { log "$name: no answer after restart"; tail -5 "${dir[$name]}/server.log" >&2; exit 1; }
    rss_serving="$(status_kb "${pid[$name]}" VmRSS)"
    sleep "$settle"
    rss_settled="$(status_kb "${pid[$name]}" VmRSS)"
    hwm="$(status_kb "${pid[$name]}" VmHWM)"
    rss_anon="$(status_kb "${pid[$name]}" RssAnon)"; rss_file="$(status_kb "${pid[$name]}" RssFile)"
    # corral's own view: its recovery line says how long recovery took.
    recovery_line=""
    [[ "$kind" == corral ]] && recovery_line="$(sed -n '/----- bench: restart -----/,$p' "${dir[$name]}/server.log" \
      | sed 's/\x1b\[[0-9;]*m//g' | grep -E -m2 'recovery phases|recovered to zxid' | tr '\n' ' ' || true)"
    row="$(python3 - "$run_id" "$server" "$round" "$nodes" "$create_s" "$rss_before" "$last_zxid" \
      "$snap_zxid" "$tail_records" "$launched" "$answered" "$rss_serving" "$rss_settled" "$hwm" \
      "$recovery_line" "$rss_anon" "$rss_file" <<'PY'
import json, sys
a = sys.argv[1:]
print(json.dumps(dict(run_id=a[0], server=a[1], round=int(a[2]), nodes=int(a[3]),
    create_s=float(a[4]), rss_before_kill_mb=int(a[5]) / 1024, last_zxid=int(a[6]),
    snapshot_zxid=int(a[7]), log_records_after_snapshot=int(a[8]),
    restart_to_serving_s=round(float(a[10]) - float(a[9]), 3),
    rss_serving_mb=int(a[11]) / 1024, rss_settled_mb=int(a[12]) / 1024,
    vm_hwm_mb=int(a[13]) / 1024, rss_anon_mb=int(a[15]) / 1024,
    rss_file_mb=int(a[16]) / 1024, recovery_line=a[14]), separators=(",", ":")))
PY
)"
    echo "$row" >> "$out"; rows+=("$row")
    log "round $round: $name: $row"
    kill "${pid[$name]}" 2>/dev/null || true
    reap_member "$name"
    rm -rf "${dir[$name]}"
    sync
  done
done

printf '%s\n' "${rows[@]}" > "$work/rows.jsonl"
python3 - "$work/rows.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\n{rows[0]['nodes']:,} znodes of 100 B, run {rows[0]['run_id']}\n")
print("| server | round | create s | RSS before kill MB | log records after newest snapshot "
      "| restart to serving s | RSS serving MB | RSS +settle MB (anon + file) | VmHWM MB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['server']} | {r['round']} | {r['create_s']:.1f} | {r['rss_before_kill_mb']:.0f} "
          f"| {r['log_records_after_snapshot']:,} | {r['restart_to_serving_s']:.2f} "
          f"| {r['rss_serving_mb']:.0f} | {r['rss_settled_mb']:.0f} "
          f"({r['rss_anon_mb']:.0f} + {r['rss_file_mb']:.0f}) | {r['vm_hwm_mb']:.0f} |")
PY
