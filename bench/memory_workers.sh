#!/usr/bin/env bash
# Memory per inference worker (issue 15, target 5: RSS with 4 workers <= 1.3x RSS with 1).
#   bench/memory_workers.sh [--reloads 6] [--no-prepack-timing] [--profile release|dev]
# For MiniLM (bench/.cache/minilm-sentiment, built by bench/run.sh) and the test fixture, starts
# `hotserve serve` with 1, 2 and 4 inference workers in each weights layout (share_weights off,
# the old one session per worker from the file; on without prepacking; on, the default, with
# prepacked weights shared too), waits for /health/ready, sends a few requests, and prints
# resident memory (VmRSS) and time to ready.
# Then, with the default layout and 4 workers, reloads MiniLM --reloads times (a changed
# README.md and SIGHUP each time) and prints RSS after each, and times prepacking on and off
# in one process (examples/prepack.rs). Builds with `cargo build --release` (`--profile dev`:
# the debug build, whose dependencies, ONNX Runtime's glue included, are optimized too).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
reloads=6
prepack_timing=1
profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --reloads) reloads="$2"; shift 2 ;;
    --no-prepack-timing) prepack_timing=0; shift ;;
    --profile) profile="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* | head -1)}"
minilm="${MINILM_DIR:-$root/bench/.cache/minilm-sentiment}"
[ -f "$minilm/MLmodel" ] || { echo "no MiniLM at $minilm: run bench/run.sh once (it builds it) or set MINILM_DIR" >&2; exit 1; }
cargo build --profile "$profile" --bin hotserve --example prepack >&2
out="$root/target/$([ "$profile" = dev ] && echo debug || echo "$profile")"
bin="$out/hotserve"
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
now() { date +%s.%N; }

# start MODEL_DIR WORKERS SHARE PREPACK: starts hotserve, waits for ready; sets pid, url, ready_s.
start() {
  local p; p="$(port)"; url="http://127.0.0.1:$p"
  local t0; t0="$(now)"
  HOTSERVE_LISTEN="127.0.0.1:$p" MODEL_URI="$1" HOTSERVE_INFERENCE_WORKERS="$2" \
    HOTSERVE_INTRA_OP_THREADS=1 HOTSERVE_SHARE_WEIGHTS="$3" HOTSERVE_PREPACK_WEIGHTS="$4" \
    HOTSERVE_STATE_DIR="$work/state-$p" HOTSERVE_WATCH=false HOTSERVE_LOG_LEVEL=warn \
    "$bin" serve >"$work/log-$p" 2>&1 &
  pid=$!
  until curl -sf "$url/health/ready" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/log-$p" >&2; exit 1; }
    sleep 0.05
  done
  ready_s="$(echo "$(now) - $t0" | bc)"
  for _ in $(seq 8); do
    curl -sf -H 'content-type: application/json' \
      -d '{"text": "The plot was thin but the acting carried it."}' "$url/predict" >/dev/null
  done
}
served_version() {
  curl -s -D - -o /dev/null -H 'content-type: application/json' -d '{"text": "x"}' "$url/predict" |
    tr -d '\r' | awk 'tolower($1) == "x-model-version:" {print $2}'
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

echo "# Memory per inference worker ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1 /proc/loadavg))"
echo
echo "| model | layout | RSS 1 worker | 2 workers | 4 workers | 4 / 1 (target <= 1.3) | ready, 1 worker | ready, 4 workers |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for model in "MiniLM=$minilm" "fixture=$root/tests/fixtures/sentiment"; do
  name="${model%%=*}"; dir="${model#*=}"
  for layout in "per worker (share_weights false)=false false" \
                "shared, prepack_weights false=true false" \
                "shared + prepacked, shared (default)=true true"; do
    label="${layout%%=*}"; set -- ${layout#*=}
    declare -A rss=() ready=()
    for workers in 1 2 4; do
      start "$dir" "$workers" "$1" "$2"
      rss[$workers]="$(rss_mib "$pid")"; ready[$workers]="$ready_s"
      stop
    done
    ratio="$(echo "scale=2; ${rss[4]} / ${rss[1]}" | bc)"
    verdict="$(echo "$ratio <= 1.3" | bc | sed 's/1/meets/;s/0/misses/')"
    printf '| %s | %s | %s MiB | %s MiB | %s MiB | %s (%s) | %.2f s | %.2f s |\n' "$name" "$label" \
      "${rss[1]}" "${rss[2]}" "${rss[4]}" "$ratio" "$verdict" "${ready[1]}" "${ready[4]}"
  done
done

echo
echo "## RSS over reloads (MiniLM, 4 workers, default layout)"
echo
cp -r "$minilm" "$work/minilm"
start "$work/minilm" 4 true true
line="start $(rss_mib "$pid") MiB"
for i in $(seq "$reloads"); do
  before="$(served_version)"
  echo "reload $i" >>"$work/minilm/README.md"
  kill -HUP "$pid"
  until [ "$(served_version)" != "$before" ]; do sleep 0.2; done
  sleep 2 # the replaced version is freed on the loading thread once its last request is done
  line="$line, $i: $(rss_mib "$pid")"
done
stop
echo "$line"

if [ "$prepack_timing" = 1 ]; then
  echo
  echo "## Prepacking, MiniLM, one process, alternating rounds"
  echo
  for batch in 1 8 32; do
    "$out/examples/prepack" "$minilm" --rounds 10 --batches $((160 / (batch + 4) + 4)) --batch "$batch" --threads 1
  done
fi
