#!/usr/bin/env bash
# Abusive clients beside a well-behaved one, against a release build serving the fixture model.
#   bench/abuse.sh [--attack-seconds 15] [--only slowloris,idle-keepalive] ...   (--help: all)
# Builds target/release/hotserve and runs bench/abuse.py; see bench/README.md.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
case " $* " in
  *" -h "*|*" --help "*) ;;
  *) scripts/setup.sh && cargo build --release --locked --bin hotserve ;;
esac
# Thousands of attack connections: the client needs the file descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "$root/.venv/bin/python" "$root/bench/abuse.py" "$@"
