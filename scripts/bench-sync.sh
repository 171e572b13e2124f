#!/usr/bin/env bash
# A learner that joins with nothing (a SNAP sync of a big tree), plaintext and with quorum
# TLS, corral beside the reference. Per kind in BENCH_KINDS and mode in BENCH_MODES: a
# fresh 3-member ensemble gets BENCH_NODES znodes of 100 B through loadgen's setup; one
# follower is killed with SIGKILL, its dataDir emptied (myid kept) and it is started
# again. Reported: the time from that launch to the first getData("/") it answers on a
# new session (a learner serves only once synced; polled every 5 ms), its zxid against
# the leader's, and its RSS (and the anonymous part of it) then. Kind "mixed" is the
# rolling replacement with a big tree: a reference ensemble whose emptied follower comes
# back as corral (same zoo.cfg and myid) and syncs from the reference leader.
#
#   scripts/bench-sync.sh
#   BENCH_NODES=200000 BENCH_KINDS=corral BENCH_MODES=tls scripts/bench-sync.sh   # quick
#
# Knobs (environment): BENCH_NODES (1000000), BENCH_KINDS ("corral zookeeper mixed"),
# BENCH_MODES ("plain tls"), BENCH_ROUNDS (1), BENCH_OUT (perf/sync.jsonl, appended to).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

nodes="${BENCH_NODES:-1000000}"
kinds="${BENCH_KINDS:-corral zookeeper mixed}"
modes="${BENCH_MODES:-plain tls}"
rounds="${BENCH_ROUNDS:-1}"
out="${BENCH_OUT:-perf/sync.jsonl}"

source "$repo/scripts/bench-lib.sh"

tls_cfg="$(scripts/quorum-tls-keys.sh "$work/keys")"
mkdir -p "$(dirname "$out")"
run_id="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
rows=()
for (( round = 1; round <= rounds; round++ )); do
  for kind in $(round_order "$round" $kinds); do
    for mode in $modes; do
      name="$kind-$mode-$round"; extra=""
      [[ "$mode" == tls ]] && extra="$tls_cfg"
      log "round $round: $name: fresh ensemble, creating $nodes znodes of 100 B"
      ens_kind="$kind"; [[ "$kind" == mixed ]] && ens_kind=zookeeper
      start_ensemble "$ens_kind" "$name" "$corral" "$extra"
      leader="$(ensemble_leader "$name")"
      t0="$(date +%s.%N)"
      "$loadgen" -s "${addr[$leader]}" -c 1 -o 1 -k "$nodes" --value-size 100 -r 100 -w 0 -d 0.1 \
        --no-progress >/dev/null
      create_s="$(python3 -c "import time; print(f'{time.time() - $t0:.2f}')")"
      follower=""
      for m in ${ens_members[$name]}; do [[ "$m" == "$leader" ]] || { follower="$m"; break; }; done
      kill -9 "${pid[$follower]}"; reap_member "$follower"
      find "${dir[$follower]}/data" -mindepth 1 -maxdepth 1 ! -name myid -exec rm -rf {} +
      sync; echo "----- bench: joins empty -----" >> "${dir[$follower]}/server.log"
      [[ "$kind" == mixed ]] && { kind_of[$follower]=corral; bin_of[$follower]="$corral"; }
      joiner="${kind_of[$follower]}"
      launched="$(date +%s.%N)"
      launch_member "$follower"
      answered="$(first_answer "${port_of[$follower]}")" \
        || { log "$follower: not serving after its restart"; tail -5 "${dir[$follower]}/server.log" >&2; exit 1; }
      # first_answer's session is a txn: both are read after it.
      leader_zxid="$(srvr_zxid "${port_of[$leader]}")"
      follower_zxid="$(srvr_zxid "${port_of[$follower]}")"
      status="/proc/${pid[$follower]}/status"
      rss_kb="$(awk '$1 == "VmRSS:" { print $2 }' "$status")"
      anon_kb="$(awk '$1 == "RssAnon:" { print $2 }' "$status")"
      row="$(python3 - "$run_id" "$ens_kind" "$mode" "$round" "$nodes" "$create_s" "$launched" \
        "$answered" "$leader_zxid" "$follower_zxid" "$rss_kb" "$anon_kb" "$joiner" <<'PY'
import json, sys
a = sys.argv[1:]
print(json.dumps(dict(run_id=a[0], server=a[1], joiner=a[12], quorum=a[2], round=int(a[3]),
    nodes=int(a[4]),
    create_s=float(a[5]), join_to_serving_s=round(float(a[7]) - float(a[6]), 3),
    leader_zxid=int(a[8]), follower_zxid=int(a[9]), follower_rss_mb=round(int(a[10]) / 1024),
    follower_rss_anon_mb=round(int(a[11]) / 1024)),
    separators=(",", ":")))
PY
)"
      echo "$row" >> "$out"; rows+=("$row")
      log "round $round: $name: $row"
      [[ "$leader_zxid" == "$follower_zxid" ]] || { log "$follower: zxid $follower_zxid, leader $leader_zxid"; exit 1; }
      stop_ensemble "$name"
      sync
    done
  done
done

printf '%s\n' "${rows[@]}" > "$work/rows.jsonl"
python3 - "$work/rows.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\nA follower joins with an empty dataDir: {rows[0]['nodes']:,} znodes of 100 B, "
      f"run {rows[0]['run_id']}\n")
print("| ensemble | joiner | quorum link | round | create s | join to serving s "
      "| joiner RSS MB (anon) |")
print("|---|---|---|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['server']} | {r.get('joiner', r['server'])} | {r['quorum']} | {r['round']} "
          f"| {r['create_s']:.1f} "
          f"| {r['join_to_serving_s']:.2f} | {r['follower_rss_mb']} ({r['follower_rss_anon_mb']}) |")
PY
