#!/usr/bin/env bash
# The test command: installs what the tests need (project virtualenv with the pinned ONNX
# Runtime, MLflow server and client, onnx/tokenizers), then runs every test.
#
#   scripts/test.sh                       # everything
#   scripts/test.sh serve::               # extra arguments go to `cargo test`: a filter on
#                                         # the test path, here tests/it/serve.rs
#   scripts/test.sh --test it mlflow::    # the integration tests only (tests/it/), those of
#                                         # tests/it/mlflow/
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

"$root/scripts/setup.sh" test

if ! command -v cargo >/dev/null 2>&1; then
  echo "test: cargo is not installed; install Rust (https://rustup.rs) first" >&2
  exit 1
fi

export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* | head -n 1)}"
# Two cores: two tests at a time (the unit tests, then the one integration-test binary).
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
cargo test --locked --no-fail-fast "$@"
