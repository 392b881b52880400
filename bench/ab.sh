#!/usr/bin/env bash
# A/B of two hotserve builds on one machine at one time: the two binaries take turns, round
# after round, serving the same model to the same wrk load (/predict and the Open Inference
# Protocol's infer route, at each concurrency), so drift of the machine hits both alike. Prints
# every run and, per route and concurrency, the median req/s and p99 of each and the ratio B/A.
#
#   bench/ab.sh A_BINARY B_BINARY [MODEL_DIR]      # MODEL_DIR: tests/fixtures/sentiment
#
#   git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release --locked)
#   cargo build --release --locked
#   bench/ab.sh /tmp/old/target/release/hotserve target/release/hotserve
#
#   # one build, two configurations (here: the access log to a file against none):
#   AB_B_ENV="HOTSERVE_ACCESS_LOG=/tmp/access.log" bench/ab.sh target/release/hotserve target/release/hotserve
#
# Environment: AB_ROUNDS=3, AB_DURATION=10 (seconds per run), AB_CONCURRENCY="8 64",
# AB_WARMUP=3 (seconds at c=8 after each start), AB_A_ENV / AB_B_ENV (VAR=value words for A's
# or B's server). Needs wrk (apt-get install wrk) and the project virtualenv's ONNX Runtime
# (scripts/setup.sh). All traffic stays on 127.0.0.1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 2 ] || { sed -n '2,20p' "$0" >&2; exit 2; }
a="$(realpath "$1")"
b="$(realpath "$2")"
model="$(realpath "${3:-$root/tests/fixtures/sentiment}")"
rounds="${AB_ROUNDS:-3}"
duration="${AB_DURATION:-10}"
concurrency="${AB_CONCURRENCY:-8 64}"
warmup="${AB_WARMUP:-3}"
command -v wrk >/dev/null 2>&1 || { echo "ab: wrk not found (apt-get install wrk)" >&2; exit 1; }
"$root/scripts/setup.sh" runtime >/dev/null
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* | head -n 1)}"
py="$root/.venv/bin/python"  # numpy (benchlib reads the texts with it); onnxruntime brings it
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
"$py" "$root/bench/benchlib.py" bodies predict "$work/predict.jsonl"
"$py" "$root/bench/benchlib.py" bodies v2 "$work/v2.jsonl"
name="$(basename "$model")"

# run LABEL BINARY ROUND: starts the binary, warms it up, runs wrk on each route and
# concurrency, appends "label route c rps p99" lines to $work/results, stops it.
run() {
  local label="$1" bin="$2" round="$3" port out route bodies c line i extra
  port="$("$py" "$root/bench/benchlib.py" port)"
  extra="AB_${label}_ENV"
  # shellcheck disable=SC2086 # VAR=value words
  env HOTSERVE_STATE_DIR="$work/state-$label" HOTSERVE_CACHE_DIR="$work/state-$label/models" \
    HOTSERVE_LISTEN="127.0.0.1:$port" MODEL_URI="$model" HOTSERVE_MODEL_NAME="$name" \
    ${!extra:-} "$bin" serve >"$work/$label-$round.log" 2>&1 &
  pid=$!
  for i in $(seq 180); do
    curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$work/$label-$round.log"; exit 1; }
    sleep 1
  done
  BENCH_BODIES="$work/predict.jsonl" wrk -t1 -c8 -d"${warmup}s" -s "$root/bench/wrk/post.lua" \
    "http://127.0.0.1:$port/predict" >/dev/null
  for route in /predict "/v2/models/$name/infer"; do
    bodies="$work/predict.jsonl"
    [ "$route" = /predict ] || bodies="$work/v2.jsonl"
    for c in $concurrency; do
      out="$(BENCH_BODIES="$bodies" wrk -t1 -c"$c" -d"${duration}s" --timeout 10s --latency \
        -s "$root/bench/wrk/post.lua" "http://127.0.0.1:$port$route")"
      line="$(echo "$out" | sed -n 's/^BENCH_JSON //p')"
      echo "$line" | "$py" -c '
import json, sys
r = json.load(sys.stdin)
errors = sum(v for k, v in r.items() if k.startswith("errors_"))
print(sys.argv[1], sys.argv[2], sys.argv[3], round(r["rps"], 1), round(r["lat_p99_ms"], 2), errors)
' "$label" "$route" "$c" | tee -a "$work/results"
    done
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
}

echo "ab: A=$a ${AB_A_ENV:-}"
echo "ab: B=$b ${AB_B_ENV:-}"
echo "ab: model $model, $rounds rounds of ${duration}s runs at c=$concurrency, alternating"
echo "label route c rps p99_ms errors"
for round in $(seq "$rounds"); do
  # Alternate which goes first, so neither always runs on a warmer machine.
  if [ $((round % 2)) = 1 ]; then run A "$a" "$round"; run B "$b" "$round"; else run B "$b" "$round"; run A "$a" "$round"; fi
done
"$py" - "$work/results" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
keys = sorted({(r[1], int(r[2])) for r in rows})
print("\nroute c | A req/s  B req/s  B/A | A p99 ms  B p99 ms | errors A B")
for route, c in keys:
    def med(label, column):
        return statistics.median(float(r[column]) for r in rows if r[0] == label and r[1] == route and int(r[2]) == c)
    def errs(label):
        return sum(int(r[5]) for r in rows if r[0] == label and r[1] == route and int(r[2]) == c)
    a, b = med("A", 3), med("B", 3)
    print(f"{route} c={c} | {a:8.0f} {b:8.0f} {b / a:5.3f} | {med('A', 4):8.2f} {med('B', 4):8.2f} | {errs('A')} {errs('B')}")
EOF
