#!/usr/bin/env bash
# The hot-reload benchmark: hotserve under load while its model is swapped N times.
#   bench/swap.sh [--swaps 6] [--concurrency 16] ...   (all options: bench/swap.sh --help)
# Sets up the project virtualenv (MLflow) and runs bench/swap.py with it; see bench/README.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
case " $* " in
  *" -h "*|*" --help "*) ;;
  *) scripts/setup.sh test ;;
esac
exec "$root/.venv/bin/python" "$root/bench/swap.py" --skip-setup "$@"
