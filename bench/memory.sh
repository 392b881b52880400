#!/usr/bin/env bash
# Several models in one hotserve: resident memory with 1, 2 and 4 models, and during a swap.
#   bench/memory.sh [--hotserve-bin PATH] ...   (all options: .venv/bin/python bench/multi.py --help)
# Builds hotserve (cargo build --release) unless --hotserve-bin is given, and the realistic model
# when missing, then runs bench/multi.py memory; see bench/README.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="$root/.venv/bin/python"
[ -x "$py" ] || { echo "bench/memory.sh: no virtualenv at .venv (run scripts/setup.sh bench)" >&2; exit 1; }
case " $* " in
  *" --hotserve-bin"*) ;;
  *) cargo build --release --bin hotserve >&2 ;;
esac
[ -f bench/.cache/minilm-sentiment/MLmodel ] || "$py" bench/build_realistic_model.py --out bench/.cache/minilm-sentiment >&2
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT_DYLIB_PATH="$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* | head -n 1)"
  export ORT_DYLIB_PATH
fi
exec "$py" bench/multi.py memory "$@"
