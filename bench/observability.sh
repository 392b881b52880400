#!/usr/bin/env bash
# What observability costs: hotserve with traces exported at a sampling ratio of 1.0 (and, when
# OBS_PAYLOAD_LOG is set, payload logging at 1.0 to a file) against the same build with both
# off, in one run, on the tiny fixture model and on MiniLM, through bench/ab.sh (the two take
# turns, round after round). The collector is the OTLP receiver of the tests in its --discard
# mode (it reads each export and answers 200 without decoding it): a collector that keeps up,
# so the figure is hotserve's own cost. Targets (issue 25): at least 0.9x on the tiny model and
# 0.97x on MiniLM.
#
#   cargo build --release --locked
#   bench/observability.sh                         # traces only
#   OBS_PAYLOAD_LOG=1 bench/observability.sh       # traces and payload logging
#
# Environment: as bench/ab.sh (AB_ROUNDS, AB_DURATION, AB_CONCURRENCY); OBS_PROTOCOL
# (http/protobuf or grpc, default http/protobuf); OBS_MODELS ("fixture minilm"). MiniLM is
# built by bench/build_realistic_model.py into bench/.cache/minilm-sentiment when missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin="$root/target/release/hotserve"
[ -x "$bin" ] || { echo "observability: build first: cargo build --release --locked" >&2; exit 1; }
py="$root/.venv/bin/python"
protocol="${OBS_PROTOCOL:-http/protobuf}"
work="$(mktemp -d)"
receiver=""
trap '[ -n "$receiver" ] && kill "$receiver" 2>/dev/null; rm -rf "$work"' EXIT

# The discarding collector, alive until this script ends.
mkfifo "$work/hold"
"$py" tests/it/support/otlp_receiver.py --discard <"$work/hold" >"$work/ports" &
receiver=$!
exec 3>"$work/hold"
for _ in $(seq 100); do [ -s "$work/ports" ] && break; sleep 0.1; done
if [ "$protocol" = grpc ]; then
  port="$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["grpc"])' "$work/ports")"
else
  port="$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$work/ports")"
fi
on="OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$port OTEL_EXPORTER_OTLP_PROTOCOL=$protocol OTEL_TRACES_SAMPLER=always_on"
if [ -n "${OBS_PAYLOAD_LOG:-}" ]; then
  on="$on HOTSERVE_PAYLOAD_LOG=file://$work/payload.jsonl HOTSERVE_PAYLOAD_LOG_SAMPLE=1"
fi

for model in ${OBS_MODELS:-fixture minilm}; do
  case "$model" in
    fixture) dir="$root/tests/fixtures/sentiment" ;;
    minilm)
      dir="$root/bench/.cache/minilm-sentiment"
      [ -f "$dir/MLmodel" ] || "$py" bench/build_realistic_model.py --out "$dir" >&2
      ;;
    *) echo "observability: unknown model $model (fixture, minilm)" >&2; exit 2 ;;
  esac
  echo "## $model: A = observability off, B = $on"
  AB_B_ENV="$on" bench/ab.sh "$bin" "$bin" "$dir"
done
