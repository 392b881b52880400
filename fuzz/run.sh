#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, one after the other, one process,
# on a corpus under fuzz/corpus/<target> seeded from fuzz/seeds/<target>. Crashes land in
# fuzz/artifacts/<target>/. Exits non-zero if any target found something.
#
#   fuzz/run.sh [SECONDS] [TARGET...]        e.g. fuzz/run.sh 300, fuzz/run.sh 60 request bundle
#
# Stable Rust: libFuzzer's coverage instrumentation needs no nightly flag; only the sanitizers
# do, so the targets are built with --sanitizer none (Rust's own checks, with debug assertions
# and overflow checks on, still turn every bug into a panic libFuzzer reports).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(request webhook model_uri mlmodel bundle tokenizer wordpiece)
fi
fuzz/setup.sh
cargo fuzz build --sanitizer none --debug-assertions
failed=()
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    echo "== $target: ${seconds}s"
    if ! cargo fuzz run --sanitizer none --debug-assertions "$target" \
        "$PWD/fuzz/corpus/$target" "$PWD/fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$PWD/fuzz/artifacts/$target/"; then
        failed+=("$target")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "found crashes in: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
