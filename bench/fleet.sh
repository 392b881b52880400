#!/usr/bin/env bash
# Many models under a memory budget: 200 models (copies of the bundled model and of MiniLM),
# Zipf traffic, a budget for 15% of them; hit ratio, cold starts, RSS against the budget.
#   bench/fleet.sh [--small 190] [--large 10] [--share 0.15] [--seconds 60] ...
#   (all options: .venv/bin/python bench/fleet.py --help)
# Builds hotserve (cargo build --release) unless --hotserve-bin is given, and the MiniLM model
# when missing, then runs bench/fleet.py; see bench/README.md, "Many models".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="$root/.venv/bin/python"
[ -x "$py" ] || { echo "bench/fleet.sh: no virtualenv at .venv (run scripts/setup.sh bench)" >&2; exit 1; }
case " $* " in
  *" --hotserve-bin"*) ;;
  *) cargo build --release --bin hotserve >&2 ;;
esac
[ -f bench/.cache/minilm-sentiment/MLmodel ] || "$py" bench/build_realistic_model.py --out bench/.cache/minilm-sentiment >&2
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT_DYLIB_PATH="$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* | head -n 1)"
  export ORT_DYLIB_PATH
fi
exec "$py" bench/fleet.py "$@"
