#!/usr/bin/env bash
# The run command: sets up ONNX Runtime in the project virtualenv, builds hotserve in release
# mode and serves the bundled sentiment model (or MODEL_URI, if set) on HOTSERVE_LISTEN
# (default 0.0.0.0:8080). Extra arguments go to `hotserve serve`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"
cargo build --release --locked
exec "$root/target/release/hotserve" serve "$@"
