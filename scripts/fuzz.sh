#!/usr/bin/env bash
# Runs each fuzz target (fuzz/fuzz_targets/) for a set time with cargo fuzz and libFuzzer, under
# AddressSanitizer (RUSTC_BOOTSTRAP=1 lets the pinned stable toolchain take cargo fuzz's -Z flags;
# no nightly toolchain is needed). Prints the executions and corpus size per target.
#
#   scripts/fuzz.sh --seconds 30              # every target, 30 s each (what CI runs)
#   scripts/fuzz.sh --seconds 600 config      # one target
#   scripts/fuzz.sh --seconds 600 --keep      # new inputs are added to fuzz/corpus/ (commit them)
#   scripts/fuzz.sh --seconds 30 --dev        # unoptimized build: half the build time (the gate)
#
# Seeds and the kept corpus are in fuzz/corpus/<target>/. Without --keep, new inputs go to a
# temporary directory and the repository is not changed. A crash stops the run with exit 1 and
# leaves the input in fuzz/artifacts/<target>/; copy it to fuzz/regressions/<target>/ with the fix:
# tests/tests/t99_fuzz_regressions.rs runs every file there (and the corpus) on each test run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

seconds=30
keep=""
profile=()
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        --dev) profile=(--dev); shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "--seconds: a whole number" >&2; exit 2; }
if [ ${#targets[@]} -eq 0 ]; then
    for file in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$file" .rs)"); done
fi

ensure_build_tools
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz 0.13.2" >&2
    cargo install cargo-fuzz --version 0.13.2 --locked >&2
fi

export RUSTC_BOOTSTRAP=1
echo "==> building the fuzz targets (address sanitizer${profile:+, unoptimized})" >&2
# cargo fuzz has no --locked: keep fuzz/Cargo.lock as committed, and fail if the build needed
# another one.
lock=$(mktemp)
cp fuzz/Cargo.lock "$lock"
cargo fuzz build "${profile[@]}" --fuzz-dir fuzz >&2
if ! cmp -s fuzz/Cargo.lock "$lock"; then
    cp "$lock" fuzz/Cargo.lock
    echo "fuzz/Cargo.lock is out of date: update it (cargo update --manifest-path fuzz/Cargo.toml -w) and commit it" >&2
    exit 1
fi
rm -f "$lock"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
printf '%-14s %12s %10s %8s\n' target executions exec/s corpus
for target in "${targets[@]}"; do
    [ -f "fuzz/fuzz_targets/$target.rs" ] || { echo "no fuzz target $target" >&2; exit 2; }
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target" "$scratch/$target"
    if [ -n "$keep" ]; then corpus=("fuzz/corpus/$target"); else corpus=("$scratch/$target" "fuzz/corpus/$target"); fi
    log="$scratch/$target.log"
    if ! cargo fuzz run "${profile[@]}" --fuzz-dir fuzz "$target" "${corpus[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$target/" >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz target $target failed: the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    size=$(sed -n 's/.*corp: \([0-9]*\)\/.*/\1/p' "$log" | tail -n 1)
    printf '%-14s %12s %10s %8s\n' "$target" "${runs:-?}" "${rate:-?}" "${size:-?}"
done
