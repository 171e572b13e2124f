#!/usr/bin/env bash
# A long fault soak: the `soak` test of tests/faults.rs (concurrent register,
# create and ephemeral workloads against a 3- or 5-member ensemble while a seeded
# nemesis kills, pauses, partitions and slows members, fills one member's disk and
# tears one member's last log record), once per kind, then one summary line per
# run: ops, faults injected, violations, acknowledged writes lost, and how many
# full disks made their member exit. The disk-full faults need root (each member's
# data and log dirs are tmpfs mounts); without it they are skipped, loudly.
# Exits non-zero if any run found a violation; its log keeps the replay command.
#
#   scripts/soak.sh                                   # 30 min of corral
#   SOAK_MINUTES=60 SOAK_KINDS="corral zookeeper mixed" scripts/soak.sh
#   SOAK_SEED=123 SOAK_MINUTES=5 SOAK_KINDS=corral5 scripts/soak.sh   # replay one schedule
#
# Knobs (environment): SOAK_MINUTES (30), SOAK_KINDS ("corral"; each of corral,
# zookeeper, mixed, with a 5 suffix for five members), SOAK_SEED (random per run),
# SOAK_LOG_DIR (target/soak). The test's own FAULTS_* knobs (e.g. FAULTS_THINK_MS,
# FAULTS_SYNC_AFTER_CREATE=0, FAULTS_DISK_MB: each member tmpfs, 256 MiB; raise it
# for soaks of hours, whose logs outgrow it; FAULTS_DISK_STALL=1: also draw stalled
# disks, one member's fsyncs held for 1-5 s) pass through.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

minutes="${SOAK_MINUTES:-30}"
kinds="${SOAK_KINDS:-corral}"
log_dir="${SOAK_LOG_DIR:-target/soak}"
mkdir -p "$log_dir"

nice -n 10 cargo test --test faults --no-run >/dev/null

status=0
summaries=()
for kind in $kinds; do
  seed="${SOAK_SEED:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}"
  log="$log_dir/soak-$kind-$seed.log"
  echo "soak: $kind for $minutes min, seed $seed (log $log)"
  if FAULTS_KINDS="$kind" FAULTS_SEED="$seed" FAULTS_SECS="$((minutes * 60))" \
      nice -n 10 cargo test --test faults -- soak --exact --ignored --nocapture >"$log" 2>&1; then
    result=pass
  else
    result=FAIL
    status=1
  fi
  line="$(grep -h '^\[faults\] SUMMARY' "$log" | tail -1 || true)"
  if [ -z "$line" ]; then
    line="no summary (the run did not finish; see $log)"
  fi
  summaries+=("$result $line")
  if [ "$result" = FAIL ]; then
    grep -h -A3 'replay with' "$log" | head -4 || true
  fi
done

echo
echo "soak results ($minutes min per kind):"
for s in "${summaries[@]}"; do
  echo "  $s"
done
exit "$status"
