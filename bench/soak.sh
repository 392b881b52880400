#!/usr/bin/env bash
# The soak: >= 100 model swaps under steady load with registry faults injected at random.
#   bench/soak.sh [--swaps 100] [--minutes 14] [--fault-rate 0.3] ...   (--help: all)
# Sets up MLflow in .venv, builds target/release/hotserve and runs bench/soak.py; see
# bench/README.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
case " $* " in
  *" -h "*|*" --help "*) ;;
  *) scripts/setup.sh test && cargo build --release --locked --bin hotserve ;;
esac
exec "$root/.venv/bin/python" "$root/bench/soak.py" "$@"
