#!/usr/bin/env bash
# Coverage-guided fuzzing of corral's decoders (fuzz/, libFuzzer via libfuzzer-sys).
#
#   scripts/fuzz.sh [TARGET...]          build, then run each target (all by default)
#                                        for FUZZ_SECONDS (default 60), one at a time;
#                                        prints executions and crashes per target
#   scripts/fuzz.sh build                build only
#   scripts/fuzz.sh seeds                rewrite fuzz/seeds/ (make_seeds)
#   scripts/fuzz.sh minimize [TARGET...] merge fuzz/work/<t> into a minimized
#                                        fuzz/corpus/<t> (libFuzzer -merge=1, one
#                                        input per covered edge)
#   scripts/fuzz.sh clean                remove fuzz/target, fuzz/work, fuzz/artifacts
#
# Env: FUZZ_SECONDS (per target), FUZZ_NICE (default 10), FUZZ_MAX_LEN (libFuzzer -max_len; default its own:
# the larger of 4096 and the largest seed), FUZZ_ARGS (more libFuzzer flags).
#
# Stable toolchain only: the build passes the SanitizerCoverage flags cargo-fuzz passes
# for `-s none` (sancov-module, inline 8-bit counters, PC table, compare tracing) and
# targets the host triple explicitly so build scripts and proc macros stay
# uninstrumented. No AddressSanitizer: the decoders are safe Rust (no `unsafe`), so a
# memory error cannot happen there; what the targets look for is panics, broken
# round trips and unbounded allocation (fuzz/src/lib.rs).
#
# Corpora: fuzz/seeds/<t> (generated, committed), fuzz/corpus/<t> (minimized,
# committed), fuzz/regressions/<t> (inputs of fixed crashes, committed, each also a
# unit test beside its decoder), fuzz/work/<t> (what a run finds; not committed). A crash lands in
# fuzz/artifacts/<t>/ and the run of that target stops there; reproduce it with
# `fuzz/target/<triple>/release/<t> <file>`.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
fuzz=$root/fuzz
targets_all=(client_frames sasl_digest txn corral_snapshot zk_snapshot zk_snapshot_file
    quorum_packet election quorum_sasl)
seconds=${FUZZ_SECONDS:-60}
# The machine is shared: builds and fuzzing run at a lower priority.
niceness=${FUZZ_NICE:-10}
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=$fuzz/target/$triple/release

build() {
    local flags=(
        --cfg fuzzing
        -Cpasses=sancov-module
        -Cllvm-args=-sanitizer-coverage-level=4
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
        -Cllvm-args=-sanitizer-coverage-pc-table
        -Cllvm-args=-sanitizer-coverage-trace-compares
        -Cdebug-assertions
        -Coverflow-checks
    )
    RUSTFLAGS="${flags[*]}" nice -n "$niceness" cargo build --release --manifest-path "$fuzz/Cargo.toml" \
        --target "$triple" --bins
}

# Executions libFuzzer reports in its final stats.
executions() {
    sed -n 's/^stat::number_of_executed_units: *//p' "$1" | tail -1
}

# The inputs of crashes found and fixed, replayed at the start of every run.
regressions() {
    [ -d "$fuzz/regressions/$1" ] && echo "$fuzz/regressions/$1" || true
}

run_one() {
    local t=$1 log status crashes execs
    mkdir -p "$fuzz/work/$t" "$fuzz/artifacts/$t" "$fuzz/corpus/$t" "$fuzz/seeds/$t"
    log=$(mktemp)
    local before
    before=$(find "$fuzz/artifacts/$t" -type f | wc -l)
    local t0=$SECONDS
    set +e
    # shellcheck disable=SC2086
    nice -n "$niceness" "$bin_dir/$t" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=2048 ${FUZZ_MAX_LEN:+-max_len=$FUZZ_MAX_LEN} ${FUZZ_ARGS:-} \
        -artifact_prefix="$fuzz/artifacts/$t/" \
        "$fuzz/work/$t" "$fuzz/corpus/$t" "$fuzz/seeds/$t" $(regressions "$t") >"$log" 2>&1
    status=$?
    set -e
    local took=$((SECONDS - t0))
    crashes=$(( $(find "$fuzz/artifacts/$t" -type f | wc -l) - before ))
    execs=$(executions "$log")
    printf '%-18s %10s execs in %4ss  crashes: %s  exit: %s\n' \
        "$t" "${execs:-?}" "$took" "$crashes" "$status"
    if [ "$crashes" -gt 0 ] || [ "$status" -ne 0 ]; then
        grep -E 'panicked|ERROR|corral-fuzz|Test unit written' "$log" | head -20 || true
    fi
    rm -f "$log"
}

minimize() {
    local t=$1 fresh
    fresh=$fuzz/corpus/$t.new
    rm -rf "$fresh"
    mkdir -p "$fresh" "$fuzz/work/$t" "$fuzz/corpus/$t" "$fuzz/seeds/$t"
    # Edges only (no hit-count buckets, no compare operands): about a third of the
    # files of a full merge; a run regrows the rest from it in seconds.
    nice -n "$niceness" "$bin_dir/$t" -merge=1 -use_counters=0 -use_cmp=0 "$fresh" "$fuzz/corpus/$t" "$fuzz/work/$t" "$fuzz/seeds/$t" \
        >/dev/null 2>&1
    rm -rf "$fuzz/corpus/$t"
    mv "$fresh" "$fuzz/corpus/$t"
    printf '%-18s %5s files %8s bytes\n' "$t" \
        "$(find "$fuzz/corpus/$t" -type f | wc -l)" \
        "$(cat "$fuzz/corpus/$t"/* 2>/dev/null | wc -c)"
}

case "${1:-run}" in
build)
    build
    ;;
seeds)
    build
    rm -rf "$fuzz/seeds"
    CORRAL_FUZZ_SEEDS=$fuzz/seeds "$bin_dir/make_seeds"
    ;;
minimize)
    shift
    build
    for t in "${@:-${targets_all[@]}}"; do minimize "$t"; done
    ;;
clean)
    rm -rf "$fuzz/target" "$fuzz/work" "$fuzz/artifacts"
    ;;
*)
    [ "${1:-run}" = run ] && shift || true
    build
    echo "fuzzing $(date -u +%Y-%m-%dT%H:%MZ), ${seconds}s per target"
    for t in "${@:-${targets_all[@]}}"; do run_one "$t"; done
    ;;
esac
