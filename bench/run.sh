#!/usr/bin/env bash
# hotserve benchmark: one command.
#
#   bench/run.sh [--quick]
#
# Sets up the bench virtualenv (scripts/setup.sh bench), builds the realistic model
# (bench/build_realistic_model.py) and hotserve (cargo build --release), then for each model
# (the test fixture tests/fixtures/sentiment and the realistic MiniLM model) and each server
# (hotserve's /predict, hotserve's Open Inference Protocol REST route, the FastAPI baseline,
# `mlflow models serve`, MLServer over the same protocol) starts the server on 127.0.0.1 at a
# free port, waits for readiness, warms up, runs wrk at each concurrency, records req/s,
# latency percentiles, errors and peak RSS, stops the server; finally runs the in-process ONNX
# Runtime ceiling (bench/ort_ceiling.py) per model and writes bench/results/<date>.md.
# All traffic goes to 127.0.0.1 only; every wrk run is bounded in time.
#
# Issue 15 adds, in the same run: a bare hyper server with a fixed answer (`bare`, the HTTP
# ceiling), /predict over h2c (`hotserve-h2c`, h2load), the two fixed pool layouts
# (`hotserve-2x1`, `hotserve-1x2`, realistic model, c=1 and 64), an open loop at half of
# hotserve's c=64 rate (examples/loadgen.rs --rate; the same rate against `bare` too, the
# floor of this machine and generator), a mix of text lengths (loadgen --texts
# bench/data/mixed.tsv), resident memory with 1 and 4 inference workers, and prints one table
# of the issue's targets with PASS / FAIL / n/a.
#
# Environment (all optional):
#   BENCH_SERVERS="hotserve hotserve-oip hotserve-grpc hotserve-h2c hotserve-2x1 hotserve-1x2 bare fastapi mlflow mlserver"
#                                             servers, in order (hotserve-grpc, hotserve-h2c:
#                                             h2load, mean latency only; bare: fixture model only;
#                                             hotserve-2x1/-1x2: realistic model only)
#   BENCH_MODELS="fixture realistic"          models to run
#   BENCH_CONCURRENCY="1 8 64 256"            wrk connection counts
#   BENCH_DURATION=10                         seconds per concurrency (--quick: 3)
#   BENCH_WARMUP=3                            warm-up seconds at c=8 (--quick: 1)
#   BENCH_CEILING_SECONDS=3                   ort_ceiling.py seconds per batch size (--quick: 1)
#   BENCH_TIMEOUT=10s                         wrk per-request timeout (a timed-out request is an error)
#   BENCH_WRK_THREADS=1                       wrk threads (the machine has few cores; wrk shares them)
#   BENCH_READY_TIMEOUT=180                   seconds to wait for a server to become ready
#   BENCH_FIXTURE_DIR=tests/fixtures/sentiment
#   BENCH_REALISTIC_DIR=bench/.cache/minilm-sentiment
#   BENCH_HOTSERVE_BIN=path                   use this binary; skip cargo build
#   BENCH_HOTSERVE_ARGS="..."                 extra arguments for `hotserve serve`
#   BENCH_MLFLOW_WORKERS=1                    uvicorn workers of `mlflow models serve`
#   BENCH_MLSERVER_WORKERS=1                  MLServer parallel_workers (inference processes)
#   BENCH_MLSERVER_VENV=bench/.venv-mlserver  MLServer's own virtualenv (made when missing)
#   BENCH_SKIP_SETUP=1                        do not run scripts/setup.sh bench
#   BENCH_OUT=bench/results/NAME.md           where to write the report
#   BENCH_LAYOUT_CONCURRENCY="1 64"           wrk connection counts of hotserve-2x1 and hotserve-1x2
#   BENCH_OPEN_LOOP=1                         0: skip the open loop (target 4)
#   BENCH_OPEN_LOOP_FRACTION=0.5              open-loop rate as a fraction of hotserve's c=64 req/s
#   BENCH_OPEN_LOOP_CONCURRENCY=256           most open-loop requests in flight
#   BENCH_LOADGEN_THREADS=2                   loadgen's tokio worker threads (open loop, mixed run;
#                                             one thread falls behind the tiny model's rate)
#   BENCH_MIXED=1                             0: skip the mixed lengths run (target 3)
#   BENCH_MIXED_FILE=bench/data/mixed.tsv     its texts: tokens<TAB>bucket<TAB>text a line
#   BENCH_MEMORY=1                            0: skip RSS with 1 and 4 inference workers (target 5)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bench="$root/bench"
venv="${HOTSERVE_VENV:-$root/.venv}"
py="$venv/bin/python"

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/run.sh: unknown argument '$arg' (expected --quick)" >&2; exit 2 ;;
  esac
done

if [ "$quick" = 1 ]; then d_dur=3; d_warm=1; d_ceil=1; else d_dur=10; d_warm=3; d_ceil=3; fi
servers="${BENCH_SERVERS:-hotserve hotserve-oip hotserve-grpc hotserve-h2c hotserve-2x1 hotserve-1x2 bare fastapi mlflow mlserver}"
models="${BENCH_MODELS:-fixture realistic}"
concurrency="${BENCH_CONCURRENCY:-1 8 64 256}"
duration="${BENCH_DURATION:-$d_dur}"
warmup="${BENCH_WARMUP:-$d_warm}"
ceiling_seconds="${BENCH_CEILING_SECONDS:-$d_ceil}"
timeout="${BENCH_TIMEOUT:-10s}"
wrk_threads="${BENCH_WRK_THREADS:-1}"
ready_timeout="${BENCH_READY_TIMEOUT:-180}"
fixture_dir="${BENCH_FIXTURE_DIR:-$root/tests/fixtures/sentiment}"
realistic_dir="${BENCH_REALISTIC_DIR:-$bench/.cache/minilm-sentiment}"
mlflow_workers="${BENCH_MLFLOW_WORKERS:-1}"
mlserver_workers="${BENCH_MLSERVER_WORKERS:-1}"
mlserver_venv="${BENCH_MLSERVER_VENV:-$bench/.venv-mlserver}"
layout_concurrency="${BENCH_LAYOUT_CONCURRENCY:-1 64}"
open_loop="${BENCH_OPEN_LOOP:-1}"
open_loop_fraction="${BENCH_OPEN_LOOP_FRACTION:-0.5}"
open_loop_concurrency="${BENCH_OPEN_LOOP_CONCURRENCY:-256}"
loadgen_threads="${BENCH_LOADGEN_THREADS:-2}"
mixed="${BENCH_MIXED:-1}"
mixed_file="${BENCH_MIXED_FILE:-$bench/data/mixed.tsv}"
mixed_concurrency=64
memory="${BENCH_MEMORY:-1}"

say() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# output locations
mkdir -p "$bench/results"
day="$(date +%Y-%m-%d)"
out="${BENCH_OUT:-$bench/results/$day.md}"
if [ -z "${BENCH_OUT:-}" ] && [ -e "$out" ]; then out="$bench/results/$day-$(date +%H%M%S).md"; fi
work="${out%.md}.logs"
rm -rf "$work"; mkdir -p "$work"
run_jsonl="$work/runs.jsonl"
: > "$run_jsonl"
say "report: $out (logs and raw data: $work)"

# ---------------------------------------------------------------------------------------------
# tools
if [ "${BENCH_SKIP_SETUP:-0}" != 1 ]; then
  say "setting up the bench virtualenv (scripts/setup.sh bench)"
  "$root/scripts/setup.sh" bench
fi
[ -x "$py" ] || die "no virtualenv python at $py (run scripts/setup.sh bench)"
export PATH="$venv/bin:$PATH"  # `mlflow models serve` runs `uvicorn` from PATH

# h2load (Debian's nghttp2-client) drives the gRPC and h2c rows: a unary gRPC call is one HTTP/2
# POST of a length-prefixed protobuf message, which h2load sends as it is.
if [[ " $servers " == *" hotserve-grpc "* || " $servers " == *" hotserve-h2c "* ]] && ! command -v h2load >/dev/null 2>&1; then
  say "h2load not found; installing it from Debian (apt-get install nghttp2-client)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null || true
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq nghttp2-client >/dev/null || true
  fi
fi
if ! command -v wrk >/dev/null 2>&1; then
  say "wrk not found; installing it from Debian (apt-get install wrk)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null
  fi
  command -v wrk >/dev/null 2>&1 || die "could not install wrk"
fi

if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  lib="$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* 2>/dev/null | head -n 1 || true)"
  [ -n "$lib" ] && export ORT_DYLIB_PATH="$lib"
fi

# ---------------------------------------------------------------------------------------------
# models
declare -A model_dir=()
for m in $models; do
  case "$m" in
    realistic)
      say "building the realistic model (bench/build_realistic_model.py)"
      "$py" "$bench/build_realistic_model.py" --out "$realistic_dir" >/dev/null
      model_dir[$m]="$realistic_dir" ;;
    fixture)
      if [ -f "$fixture_dir/MLmodel" ]; then
        model_dir[$m]="$fixture_dir"
      else
        say "WARNING: fixture model $fixture_dir/MLmodel not found; skipping the fixture model"
        echo "{\"model\": \"fixture\", \"server\": \"all\", \"concurrency\": 0, \"skipped\": \"$fixture_dir/MLmodel not found\"}" >> "$run_jsonl"
      fi ;;
    *) die "unknown model '$m' (expected fixture or realistic)" ;;
  esac
done

# MLServer has its own virtualenv: mlserver 1.7.1 pins fastapi and starlette below the versions
# the project's virtualenv has (scripts/requirements-mlserver.txt).
if [[ " $servers " == *" mlserver "* ]] && [ ! -x "$mlserver_venv/bin/mlserver" ]; then
  say "creating MLServer's virtualenv $mlserver_venv (scripts/requirements-mlserver.txt)"
  base_python="$("$py" -c 'import sys; print(sys._base_executable)')"
  if ! { "$base_python" -m venv "$mlserver_venv" \
      && "$mlserver_venv/bin/pip" install -q -r "$root/scripts/requirements-mlserver.txt"; } \
      >"$work/mlserver-venv.log" 2>&1; then
    say "WARNING: could not set up MLServer (see $work/mlserver-venv.log); its rows are skipped"
  fi
fi

# The same models packaged as MLflow pyfuncs, for `mlflow models serve` and MLServer.
declare -A pyfunc_dir=()
if [[ " $servers " == *" mlflow "* || " $servers " == *" mlserver "* ]]; then
  for m in $models; do
    [ -n "${model_dir[$m]:-}" ] || continue
    say "packaging the $m model as an MLflow pyfunc (bench/mlflow_pyfunc.py)"
    if p="$("$py" "$bench/mlflow_pyfunc.py" "${model_dir[$m]}" 2>>"$work/mlflow-pyfunc.log")"; then
      pyfunc_dir[${model_dir[$m]}]="$p"
    else
      say "WARNING: packaging $m as a pyfunc failed (see $work/mlflow-pyfunc.log)"
    fi
  done
fi

# ---------------------------------------------------------------------------------------------
# hotserve binary
hotserve_bin=""
hotserve_version="not run"
if [[ " $servers " == *" hotserve"* ]]; then
  if [ -n "${BENCH_HOTSERVE_BIN:-}" ]; then
    hotserve_bin="$BENCH_HOTSERVE_BIN"
  else
    say "building hotserve (cargo build --release; log: $work/cargo-build.log)"
    if (cd "$root" && cargo build --release) >"$work/cargo-build.log" 2>&1; then
      hotserve_bin="$root/target/release/hotserve"
    else
      tail -n 20 "$work/cargo-build.log" >&2 || true
      say "WARNING: cargo build --release failed; skipping hotserve (exclude it with BENCH_SERVERS=\"fastapi mlflow\")"
    fi
  fi
  if [ -n "$hotserve_bin" ] && [ ! -x "$hotserve_bin" ]; then
    say "WARNING: $hotserve_bin is not an executable; skipping hotserve"
    hotserve_bin=""
  fi
  if [ -n "$hotserve_bin" ]; then
    hotserve_version="$("$hotserve_bin" --version 2>/dev/null | head -n 1 || echo "$hotserve_bin")"
  else
    hotserve_version="skipped (no binary)"
  fi
fi

# The bare hyper server (`bare` rows) and the load generator of the open-loop and mixed-length
# runs, both examples of this crate (examples/bare_hyper.rs, examples/loadgen.rs).
bare_bin="$root/target/release/examples/bare_hyper"
loadgen_bin="$root/target/release/examples/loadgen"
examples_note=""
if [[ " $servers " == *" hotserve"* || " $servers " == *" bare "* ]]; then
  say "building the bare hyper server and loadgen (cargo build --release --example bare_hyper --example loadgen)"
  if ! (cd "$root" && cargo build --release --example bare_hyper --example loadgen) >"$work/cargo-build-examples.log" 2>&1; then
    tail -n 20 "$work/cargo-build-examples.log" >&2 || true
    examples_note="cargo build --release --example bare_hyper --example loadgen failed (see cargo-build-examples.log)"
    say "WARNING: $examples_note; the bare, open-loop, mixed-length rows are skipped"
  fi
fi
[ -x "$bare_bin" ] || bare_bin=""
[ -x "$loadgen_bin" ] || loadgen_bin=""

# The fixed pool layouts turn the adaptive pool off when the binary has one (`adaptive_pool`).
layout_extra=()
if [ -n "$hotserve_bin" ] && "$hotserve_bin" settings 2>/dev/null | grep -q '^adaptive_pool '; then
  layout_extra=(--set adaptive_pool=false)
fi
# hotserve_args SERVER: the extra `hotserve serve` arguments of a hotserve row.
hotserve_args() {
  case "$1" in
    hotserve-2x1) echo "--set inference_workers=2 --set intra_op_threads=1 ${layout_extra[*]}" ;;
    hotserve-1x2) echo "--set inference_workers=1 --set intra_op_threads=2 ${layout_extra[*]}" ;;
    *) echo "" ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# request bodies
"$py" "$bench/benchlib.py" bodies predict "$work/bodies-predict.jsonl"
"$py" "$bench/benchlib.py" bodies mlflow "$work/bodies-mlflow.jsonl"
"$py" "$bench/benchlib.py" bodies v2 "$work/bodies-v2.jsonl"

# ---------------------------------------------------------------------------------------------
# server lifecycle
server_pid=""
stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM -- "-$server_pid" 2>/dev/null || kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

# start_server SERVER MODEL_DIR PORT LOG MODEL [HOTSERVE ARGS...] -> sets server_pid, ready_path,
# req_path, bodies
start_server() {
  local server="$1" dir="$2" port="$3" log="$4" model="$5"
  shift 5
  local extra=("$@")
  case "$server" in
    hotserve-oip)
      # The model under its bench name, so that the V2 route is /v2/models/<name>/infer.
      mkdir -p "$work/hotserve-cache-$port"
      ready_path=/health/ready; req_path="/v2/models/$model/infer"; bodies="$work/bodies-v2.jsonl"
      # shellcheck disable=SC2086
      HOTSERVE_CACHE_DIR="$work/hotserve-cache-$port" \
        setsid "$hotserve_bin" serve --model "$model=$dir" --listen "127.0.0.1:$port" ${BENCH_HOTSERVE_ARGS:-} \
        >"$log" 2>&1 </dev/null &
      ;;
    mlserver)
      ready_path="/v2/models/$model/ready"; req_path="/v2/models/$model/infer"; bodies="$work/bodies-v2.jsonl"
      [ -x "$mlserver_venv/bin/mlserver" ] || { say "MLServer is not installed in $mlserver_venv (see $work/mlserver-venv.log)"; return 1; }
      [ -n "${pyfunc_dir[$dir]:-}" ] || { say "no MLflow pyfunc packaging of $dir (see $work/mlflow-pyfunc.log)"; return 1; }
      local repo="$work/mlserver-$model-$port"
      mkdir -p "$repo/$model"
      "$py" - "$repo" "$model" "${pyfunc_dir[$dir]}" "$port" "$mlserver_workers" \
        "$("$py" "$bench/benchlib.py" port)" "$("$py" "$bench/benchlib.py" port)" <<'PY'
import json, sys
repo, name, uri, http_port, workers, grpc_port, metrics_port = sys.argv[1:]
json.dump({"host": "127.0.0.1", "http_port": int(http_port), "grpc_port": int(grpc_port),
           "metrics_port": int(metrics_port), "parallel_workers": int(workers),
           "debug": False}, open(f"{repo}/settings.json", "w"))
json.dump({"name": name, "implementation": "mlserver_mlflow.MLflowRuntime",
           "parameters": {"uri": uri}}, open(f"{repo}/{name}/model-settings.json", "w"))
PY
      setsid env PATH="$mlserver_venv/bin:$PATH" "$mlserver_venv/bin/mlserver" start "$repo" \
        >"$log" 2>&1 </dev/null &
      ;;
    hotserve|hotserve-h2c|hotserve-2x1|hotserve-1x2)
      mkdir -p "$work/hotserve-cache-$port"
      ready_path=/health/ready; req_path=/predict; bodies="$work/bodies-predict.jsonl"
      # shellcheck disable=SC2086
      HOTSERVE_CACHE_DIR="$work/hotserve-cache-$port" \
        setsid "$hotserve_bin" serve --model-uri "$dir" --listen "127.0.0.1:$port" ${BENCH_HOTSERVE_ARGS:-} \
        $(hotserve_args "$server") "${extra[@]}" >"$log" 2>&1 </dev/null &
      ;;
    bare)
      # Any path answers 200 with the fixed body, the readiness probe included.
      ready_path=/health/ready; req_path=/predict; bodies="$work/bodies-predict.jsonl"
      setsid "$bare_bin" "127.0.0.1:$port" >"$log" 2>&1 </dev/null &
      ;;
    fastapi)
      ready_path=/health; req_path=/predict; bodies="$work/bodies-predict.jsonl"
      setsid "$py" "$bench/baseline_fastapi.py" "$port" "$dir" >"$log" 2>&1 </dev/null &
      ;;
    mlflow)
      ready_path=/ping; req_path=/invocations; bodies="$work/bodies-mlflow.jsonl"
      [ -n "${pyfunc_dir[$dir]:-}" ] || { say "no MLflow pyfunc packaging of $dir (see $work/mlflow-pyfunc.log)"; return 1; }
      setsid "$venv/bin/mlflow" models serve -m "${pyfunc_dir[$dir]}" --env-manager local \
        -p "$port" --host 127.0.0.1 -w "$mlflow_workers" >"$log" 2>&1 </dev/null &
      ;;
    *) die "unknown server '$server' (expected hotserve, hotserve-oip, hotserve-grpc, hotserve-h2c, hotserve-2x1, hotserve-1x2, bare, fastapi, mlflow or mlserver)" ;;
  esac
  server_pid=$!
  local deadline=$((SECONDS + ready_timeout))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      say "$server exited before becoming ready; last lines of $log:"; tail -n 15 "$log" >&2
      server_pid=""; return 1
    fi
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port$ready_path")" = 200 ]; then
      return 0
    fi
    sleep 0.25
  done
  say "$server not ready after ${ready_timeout}s; last lines of $log:"; tail -n 15 "$log" >&2
  stop_server; return 1
}

json_str() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }

skip_row() {  # model server reason
  echo "{\"model\": \"$1\", \"server\": \"$2\", \"concurrency\": 0, \"skipped\": \"$(json_str "$3")\"}" >> "$run_jsonl"
}

bench_one() {  # model server
  local model="$1" server="$2" dir="${model_dir[$1]}"
  if [[ "$server" == hotserve* ]] && [ -z "$hotserve_bin" ]; then
    skip_row "$model" "$server" "hotserve binary could not be built"; return 0
  fi
  local levels="$concurrency"
  case "$server" in
    hotserve-grpc) bench_grpc "$model"; return 0 ;;
    hotserve-h2c) bench_h2c "$model"; return 0 ;;
    hotserve-2x1|hotserve-1x2)
      if [ "$model" != realistic ]; then
        skip_row "$model" "$server" "a fixed pool layout: measured on the realistic model only"; return 0
      fi
      levels="$layout_concurrency" ;;
    bare)
      if [ -z "$bare_bin" ]; then
        skip_row "$model" "$server" "examples/bare_hyper.rs was not built${examples_note:+: $examples_note}"; return 0
      fi
      if [ "$model" != fixture ]; then
        # Its answer does not depend on the model: no wrk rows, only the open loop at this
        # model's rate (the floor of target 4 at that rate).
        skip_row "$model" "$server" "a fixed answer whatever the model: measured with the fixture model only"
        [ "$open_loop" = 1 ] || return 0
        levels=""
      fi ;;
  esac
  local port log
  port="$("$py" "$bench/benchlib.py" port)"
  log="$work/$model-$server.log"
  say "[$model/$server] starting on 127.0.0.1:$port (log: $log)"
  local t0=$SECONDS
  if ! start_server "$server" "$dir" "$port" "$log" "$model"; then
    skip_row "$model" "$server" "did not start (see $(basename "$log"))"; return 0
  fi
  local startup=$((SECONDS - t0))
  local url="http://127.0.0.1:$port$req_path"
  # One request by hand: it must succeed before any load is applied.
  local code
  code="$(curl -s -o "$work/$model-$server.first-response.json" -w '%{http_code}' --max-time 30 \
    -H 'Content-Type: application/json' --data-binary "$(head -n 1 "$bodies")" "$url" || true)"
  if [ "$code" != 200 ]; then
    say "[$model/$server] first request answered HTTP $code: $(head -c 300 "$work/$model-$server.first-response.json" 2>/dev/null)"
    stop_server; skip_row "$model" "$server" "first request answered HTTP $code"; return 0
  fi
  say "[$model/$server] ready after ${startup}s; warming up ${warmup}s"
  BENCH_BODIES="$bodies" wrk -t1 -c8 -d"${warmup}s" --timeout "$timeout" -s "$bench/wrk/post.lua" "$url" \
    >"$work/$model-$server-warmup.txt" 2>&1 || true
  local c
  for c in $levels; do
    local threads=$wrk_threads
    [ "$threads" -gt "$c" ] && threads=$c
    local load
    load="$(cut -d' ' -f1 /proc/loadavg)"
    local res="$work/$model-$server-c$c.txt"
    BENCH_BODIES="$bodies" wrk -t"$threads" -c"$c" -d"${duration}s" --latency --timeout "$timeout" \
      -s "$bench/wrk/post.lua" "$url" >"$res" 2>&1 || true
    local line
    line="$(grep '^BENCH_JSON ' "$res" | head -n 1 | sed 's/^BENCH_JSON //' || true)"
    if [ -z "$line" ]; then
      say "[$model/$server] c=$c: wrk produced no result (see $res)"; skip_row "$model" "$server" "wrk failed at c=$c"; continue
    fi
    local tree_hwm main_hwm tree_rss nprocs
    read -r tree_hwm main_hwm tree_rss nprocs <<<"$("$py" "$bench/benchlib.py" rss "$server_pid")"
    echo "${line%\}}, \"model\": \"$model\", \"server\": \"$server\", \"concurrency\": $c, \"model_dir\": \"$(json_str "$dir")\", \"rss_tree_hwm_kb\": $tree_hwm, \"rss_main_hwm_kb\": $main_hwm, \"rss_tree_now_kb\": $tree_rss, \"processes\": $nprocs, \"startup_s\": $startup, \"loadavg_1m\": $load}" >> "$run_jsonl"
    local errs
    errs="$(grep -o '"errors_[a-z]*": [0-9]*' <<<"$line" | awk '{s += $2} END {print s + 0}' || true)"
    say "[$model/$server] c=$c: $(sed -n 's/.*"rps": \([0-9.]*\).*"lat_p50_ms": \([0-9.]*\).*"lat_p99_ms": \([0-9.]*\).*/\1 req\/s, p50 \2 ms, p99 \3 ms/p' <<<"$line"), errors $errs, peak RSS $((tree_hwm / 1024)) MiB"
  done
  # On the same warm server: the open loop at half its c=64 rate, and the mix of lengths.
  if [ "$server" = hotserve ]; then
    open_loop_run "$model" "$url"
    if [ "$model" = realistic ]; then mixed_run "$model" "$url"; fi
  fi
  # The same open loop against the bare server: the floor of this machine and load generator.
  if [ "$server" = bare ]; then open_loop_run "$model" "$url" bare; fi
  stop_server
}

# skip_section FILE REASON: a section that did not run, for the report.
skip_section() {
  say "skipped: $2"
  printf '{"skipped": "%s"}\n' "$(json_str "$2")" > "$1"
}

# open_loop_run MODEL URL [SERVER] (target 4): loadgen --rate at BENCH_OPEN_LOOP_FRACTION of
# hotserve's c=64 req/s of MODEL, latency counted from each request's due time. With SERVER
# (`bare`), the same rate against that server instead, written to open-loop-MODEL-SERVER.*.
open_loop_run() {
  local model="$1" url="$2" label="$1${3:+-$3}" who="${3:-hotserve}"
  local out="$work/open-loop-$label.json"
  [ "$open_loop" = 1 ] || { skip_section "$out" "the open loop (BENCH_OPEN_LOOP=0)"; return 0; }
  [ -n "$loadgen_bin" ] || { skip_section "$out" "examples/loadgen.rs was not built${examples_note:+: $examples_note}"; return 0; }
  local peak rate
  peak="$("$py" "$bench/benchlib.py" field "$run_jsonl" "$model" hotserve 64 rps)"
  [ -n "$peak" ] || { skip_section "$out" "the open loop needs hotserve's c=64 row (BENCH_CONCURRENCY has no 64?)"; return 0; }
  rate="$(awk -v p="$peak" -v f="$open_loop_fraction" 'BEGIN {printf "%.1f", p * f}')"
  say "[$model/$who] open loop at $rate req/s ($open_loop_fraction x hotserve's $peak), at most $open_loop_concurrency in flight, ${duration}s after ${warmup}s"
  local common=(--url "$url" --rate "$rate" --concurrency "$open_loop_concurrency" --timeout "$timeout"
    --threads "$loadgen_threads" --body-file "$work/bodies-predict.jsonl")
  "$loadgen_bin" "${common[@]}" --duration "${warmup}s" >"$work/open-loop-$label-warmup.txt" 2>&1 || true
  if ! "$loadgen_bin" "${common[@]}" --duration "${duration}s" --summary-json "$out" \
      >"$work/open-loop-$label.txt" 2>&1; then
    skip_section "$out" "loadgen failed (see open-loop-$label.txt)"; return 0
  fi
  say "[$model/$who] open loop: $(grep -E 'latency|open loop' "$work/open-loop-$label.txt" | tr -s ' ' | tr '\n' ';')"
}

# mixed_run MODEL URL (target 3): closed loop at 64 connections over bench/data/mixed.tsv, one
# text a request in file order; texts/s and latency per length bucket.
mixed_run() {
  local model="$1" url="$2" out="$work/mixed-$1.json"
  [ "$mixed" = 1 ] || { skip_section "$out" "mixed lengths (BENCH_MIXED=0)"; return 0; }
  [ -n "$loadgen_bin" ] || { skip_section "$out" "examples/loadgen.rs was not built${examples_note:+: $examples_note}"; return 0; }
  [ -f "$mixed_file" ] || { skip_section "$out" "no ${mixed_file#"$root"/} (the texts of the mixed run; BENCH_MIXED_FILE)"; return 0; }
  say "[$model/hotserve] mixed lengths ($mixed_file), $mixed_concurrency connections, ${duration}s after ${warmup}s"
  local common=(--url "$url" --concurrency "$mixed_concurrency" --timeout "$timeout" --threads "$loadgen_threads"
    --texts "$mixed_file")
  "$loadgen_bin" "${common[@]}" --duration "${warmup}s" >"$work/mixed-$model-warmup.txt" 2>&1 || true
  if ! "$loadgen_bin" "${common[@]}" --duration "${duration}s" --summary-json "$out" \
      >"$work/mixed-$model.txt" 2>&1; then
    skip_section "$out" "loadgen failed (see mixed-$model.txt)"; return 0
  fi
  say "[$model/hotserve] mixed lengths: $(head -n 1 "$work/mixed-$model.txt")"
}

# memory_run MODEL (target 5): resident memory of hotserve with 1, then 4 inference workers,
# each after ~100 requests (bench/memory_workers.sh does more: layouts, reloads).
memory_run() {
  local model="$1" dir="${model_dir[$1]}" out="$work/memory-$1.json"
  [ "$memory" = 1 ] || { skip_section "$out" "memory (BENCH_MEMORY=0)"; return 0; }
  [ -n "$hotserve_bin" ] || { skip_section "$out" "no hotserve binary"; return 0; }
  local w parts=()
  for w in 1 4; do
    local port log
    port="$("$py" "$bench/benchlib.py" port)"; log="$work/$model-memory-w$w.log"
    say "[$model/hotserve] memory with inference_workers=$w"
    if ! start_server hotserve "$dir" "$port" "$log" "$model" --set "inference_workers=$w"; then
      skip_section "$out" "hotserve with inference_workers=$w did not start (see $(basename "$log"))"; return 0
    fi
    local url="http://127.0.0.1:$port/predict" ok=0 i
    if [ -n "$loadgen_bin" ]; then
      "$loadgen_bin" --url "$url" --concurrency 4 --max-requests 100 --duration 60s \
        --body-file "$work/bodies-predict.jsonl" >"$work/$model-memory-w$w.txt" 2>&1 && ok=1
    else
      for i in $(seq 1 100); do
        curl -sf -o /dev/null -H 'Content-Type: application/json' \
          --data-binary "$(sed -n "$((i % 200 + 1))p" "$work/bodies-predict.jsonl")" "$url" || break
      done
      ok=1
    fi
    local tree_hwm main_hwm tree_rss nprocs
    read -r tree_hwm main_hwm tree_rss nprocs <<<"$("$py" "$bench/benchlib.py" rss "$server_pid")"
    stop_server
    [ "$ok" = 1 ] || { skip_section "$out" "the warm-up requests failed (see $model-memory-w$w.txt)"; return 0; }
    parts+=("\"$w\": {\"rss_kb\": $tree_rss, \"hwm_kb\": $tree_hwm}")
    say "[$model/hotserve] inference_workers=$w: RSS $((tree_rss / 1024)) MiB (peak $((tree_hwm / 1024)) MiB)"
  done
  local IFS=,
  echo "{\"model\": \"$model\", \"workers\": {${parts[*]}}}" > "$out"
}

# The gRPC rows: hotserve with grpc_listen, ModelInfer driven by h2load (HTTP/2, one stream per
# connection at a time, like wrk's closed loop). h2load reports throughput and mean latency, not
# percentiles; a first call through tritonclient.grpc must succeed before any load.
bench_grpc() {  # model
  local model="$1" dir="${model_dir[$1]}" server=hotserve-grpc
  if ! command -v h2load >/dev/null 2>&1; then
    skip_row "$model" "$server" "h2load (nghttp2-client) is not installed"; return 0
  fi
  local port gport log body
  port="$("$py" "$bench/benchlib.py" port)"; gport="$("$py" "$bench/benchlib.py" port)"
  log="$work/$model-$server.log"; body="$work/grpc-$model.bin"
  mkdir -p "$work/hotserve-cache-$port"
  say "[$model/$server] starting, HTTP 127.0.0.1:$port, gRPC 127.0.0.1:$gport (log: $log)"
  local t0=$SECONDS
  # shellcheck disable=SC2086
  HOTSERVE_CACHE_DIR="$work/hotserve-cache-$port" \
    setsid "$hotserve_bin" serve --model "$model=$dir" --listen "127.0.0.1:$port" \
    --grpc-listen "127.0.0.1:$gport" ${BENCH_HOTSERVE_ARGS:-} >"$log" 2>&1 </dev/null &
  server_pid=$!
  local deadline=$((SECONDS + ready_timeout))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/health/ready")" = 200 ]; do
    if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$server_pid" 2>/dev/null; then
      stop_server; skip_row "$model" "$server" "did not start (see $(basename "$log"))"; return 0
    fi
    sleep 0.25
  done
  local startup=$((SECONDS - t0))
  if ! "$py" - "$model" "127.0.0.1:$gport" "$body" >"$work/$model-$server.first-response.txt" 2>&1 <<'PY'
import struct, sys
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
model, url, out = sys.argv[1:]
text = "I really enjoyed this film, the acting was wonderful"
client = grpcclient.InferenceServerClient(url)
x = grpcclient.InferInput("text", [1], "BYTES")
x.set_data_from_numpy(np.array([text.encode()], dtype=object))
print(client.infer(model, [x]).as_numpy("label"))
request = service_pb2.ModelInferRequest(model_name=model)
t = request.inputs.add(); t.name = "text"; t.datatype = "BYTES"; t.shape.extend([1])
t.contents.bytes_contents.append(text.encode())
message = request.SerializeToString()
open(out, "wb").write(b"\x00" + struct.pack(">I", len(message)) + message)
PY
  then
    say "[$model/$server] the first gRPC call failed: $(tail -n 3 "$work/$model-$server.first-response.txt")"
    stop_server; skip_row "$model" "$server" "first gRPC call failed"; return 0
  fi
  local url="http://127.0.0.1:$gport/inference.GRPCInferenceService/ModelInfer"
  h2load_levels "$model" "$server" "$dir" "$url" "$startup" -d "$body" -H 'content-type: application/grpc' -H 'te: trailers'
  stop_server
}

# The h2c row (target 6): hotserve's POST /predict over HTTP/2 with prior knowledge (no TLS), as
# a gateway like Envoy sends it upstream, driven by h2load like the gRPC row. Skipped when the
# first h2c request does not answer 200 over HTTP/2 (a binary whose listener speaks HTTP/1.1 only).
bench_h2c() {  # model
  local model="$1" dir="${model_dir[$1]}" server=hotserve-h2c
  if ! command -v h2load >/dev/null 2>&1; then
    skip_row "$model" "$server" "h2load (nghttp2-client) is not installed"; return 0
  fi
  local port log body
  port="$("$py" "$bench/benchlib.py" port)"
  log="$work/$model-$server.log"; body="$work/h2c-body.json"
  head -n 1 "$work/bodies-predict.jsonl" | tr -d '\n' > "$body"
  say "[$model/$server] starting on 127.0.0.1:$port (log: $log)"
  local t0=$SECONDS
  if ! start_server "$server" "$dir" "$port" "$log" "$model"; then
    skip_row "$model" "$server" "did not start (see $(basename "$log"))"; return 0
  fi
  local startup=$((SECONDS - t0)) url="http://127.0.0.1:$port/predict" got
  got="$(curl -s --http2-prior-knowledge -o "$work/$model-$server.first-response.json" \
    -w '%{http_code} %{http_version}' --max-time 30 -H 'content-type: application/json' \
    --data-binary "@$body" "$url" 2>&1 || true)"
  if [ "$got" != "200 2" ]; then
    say "[$model/$server] the first h2c request answered '${got:-nothing}' (HTTP code, version); skipping the row"
    stop_server
    skip_row "$model" "$server" "no h2c on this listener: curl --http2-prior-knowledge got '${got:-nothing}' (status, HTTP version), not '200 2'"
    return 0
  fi
  h2load_levels "$model" "$server" "$dir" "$url" "$startup" -d "$body" -H 'content-type: application/json'
  stop_server
}

# h2load_levels MODEL SERVER DIR URL STARTUP H2LOAD_ARGS...: a warm-up at 8 connections, then
# h2load at each concurrency (one stream per connection at a time, like wrk's closed loop) on
# the running server; one runs.jsonl row per level. h2load reports throughput and mean latency,
# not percentiles.
h2load_levels() {
  local model="$1" server="$2" dir="$3" url="$4" startup="$5"
  shift 5
  local h2=("$@" -m 1)
  h2load "${h2[@]}" -c 8 -D "$warmup" "$url" >"$work/$model-$server-warmup.txt" 2>&1 || true
  local c
  for c in $concurrency; do
    local load res
    load="$(cut -d' ' -f1 /proc/loadavg)"
    res="$work/$model-$server-c$c.txt"
    h2load "${h2[@]}" -c "$c" -t 1 -D "$duration" "$url" >"$res" 2>&1 || true
    local rps ok failed mean
    rps="$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$res" | head -n 1)"
    ok="$(sed -n 's/^requests: .* \([0-9]*\) succeeded, \([0-9]*\) failed.*/\1/p' "$res" | head -n 1)"
    failed="$(sed -n 's/^requests: .* \([0-9]*\) succeeded, \([0-9]*\) failed.*/\2/p' "$res" | head -n 1)"
    mean="$(awk '/^time for request:/ {print $6; exit}' "$res")"
    case "$mean" in *us) mean="$(awk -v v="${mean%us}" 'BEGIN {print v / 1000}')" ;; *ms) mean="${mean%ms}" ;; *s) mean="$(awk -v v="${mean%s}" 'BEGIN {print v * 1000}')" ;; *) mean=0 ;; esac
    if [ -z "$rps" ]; then
      say "[$model/$server] c=$c: h2load produced no result (see $res)"; skip_row "$model" "$server" "h2load failed at c=$c"; continue
    fi
    local tree_hwm main_hwm tree_rss nprocs
    read -r tree_hwm main_hwm tree_rss nprocs <<<"$("$py" "$bench/benchlib.py" rss "$server_pid")"
    echo "{\"requests\": ${ok:-0}, \"duration_s\": $duration, \"rps\": $rps, \"errors_status\": ${failed:-0}, \"lat_mean_ms\": $mean, \"model\": \"$model\", \"server\": \"$server\", \"concurrency\": $c, \"model_dir\": \"$(json_str "$dir")\", \"rss_tree_hwm_kb\": $tree_hwm, \"rss_main_hwm_kb\": $main_hwm, \"rss_tree_now_kb\": $tree_rss, \"processes\": $nprocs, \"startup_s\": $startup, \"loadavg_1m\": $load, \"client\": \"h2load (mean latency only)\"}" >> "$run_jsonl"
    say "[$model/$server] c=$c: $rps req/s, mean ${mean} ms, failed ${failed:-?}, peak RSS $((tree_hwm / 1024)) MiB"
  done
}

load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
for m in $models; do
  [ -n "${model_dir[$m]:-}" ] || continue
  for s in $servers; do
    bench_one "$m" "$s"
  done
  if [ "$m" = realistic ] && [[ " $servers " == *" hotserve "* ]]; then
    memory_run "$m"
  fi
done

# ---------------------------------------------------------------------------------------------
# ONNX Runtime ceiling
for m in $models; do
  [ -n "${model_dir[$m]:-}" ] || continue
  say "[$m] ONNX Runtime ceiling (bench/ort_ceiling.py, ${ceiling_seconds}s per batch size)"
  ceiling_args=()
  # The same mix of lengths as the mixed run, in naive and length-sorted batches of 32 (target 3).
  if [ "$m" = realistic ] && [ "$mixed" = 1 ] && [ -f "$mixed_file" ]; then
    if grep -q -- '--mixed' "$bench/ort_ceiling.py"; then
      ceiling_args=(--mixed "$mixed_file")
    else
      say "WARNING: this bench/ort_ceiling.py has no --mixed; the mixed-length ceiling is not measured"
    fi
  fi
  "$py" "$bench/ort_ceiling.py" "${model_dir[$m]}" --seconds "$ceiling_seconds" "${ceiling_args[@]}" \
    --json "$work/ceiling-$m.json" 2>&1 | tee "$work/ceiling-$m.txt" >&2 || say "WARNING: ort_ceiling.py failed for $m"
done

# ---------------------------------------------------------------------------------------------
# report
cmdline="bench/run.sh"
[ "$quick" = 1 ] && cmdline="$cmdline --quick"
for v in BENCH_SERVERS BENCH_MODELS BENCH_CONCURRENCY BENCH_DURATION BENCH_WARMUP BENCH_HOTSERVE_ARGS BENCH_MLFLOW_WORKERS BENCH_MLSERVER_WORKERS \
         BENCH_CEILING_SECONDS BENCH_LAYOUT_CONCURRENCY BENCH_OPEN_LOOP BENCH_OPEN_LOOP_FRACTION BENCH_OPEN_LOOP_CONCURRENCY BENCH_LOADGEN_THREADS BENCH_MIXED BENCH_MIXED_FILE BENCH_MEMORY; do
  [ -n "${!v:-}" ] && cmdline="$v=\"${!v}\" $cmdline"
done
META_LOAD="$load_start" META_HOTSERVE="$hotserve_version" META_COMMAND="$cmdline" META_ROOT="$root" \
META_WRK_THREADS="$wrk_threads" META_DURATION="$duration" META_WARMUP="$warmup" META_TIMEOUT="$timeout" \
META_MLFLOW_WORKERS="$mlflow_workers" META_MLSERVER_WORKERS="$mlserver_workers" \
META_LAYOUT="${layout_extra[*]:-no adaptive_pool setting in this binary}" "$py" - "$work/meta.json" <<'EOF'
import importlib.metadata as md
import json, os, subprocess, sys
e = os.environ
def sh(c):
    try:
        return subprocess.run(c, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
vers = []
for p in ("onnxruntime", "tokenizers", "fastapi", "uvicorn", "mlflow"):
    try:
        vers.append(f"{p} {md.version(p)}")
    except Exception:
        pass
json.dump({
    "date": sh("date '+%Y-%m-%d %H:%M %Z'"),
    "cpu": cpu, "nproc": sh("nproc"), "mem": f"{int(mem) / 1048576:.0f} GiB",
    "loadavg": e["META_LOAD"], "hotserve": e["META_HOTSERVE"],
    "commit": sh(f"git -C '{e['META_ROOT']}' rev-parse --short HEAD 2>/dev/null") or "uncommitted",
    "wrk": sh("wrk -v 2>&1 | head -n 1").split(" Copyright")[0],
    "wrk_threads": e["META_WRK_THREADS"], "duration": e["META_DURATION"], "warmup": e["META_WARMUP"],
    "timeout": e["META_TIMEOUT"], "python_versions": ", ".join(vers), "command": e["META_COMMAND"],
    "notes": [
        "the machine may be shared: compare runs made under similar load averages",
        f"mlflow models serve runs with {e['META_MLFLOW_WORKERS']} uvicorn worker(s); its RSS includes the mlflow CLI parent process",
        f"MLServer (mlserver-mlflow, the same pyfunc as mlflow) runs with parallel_workers={e['META_MLSERVER_WORKERS']}; its RSS includes its inference worker processes",
        f"hotserve-2x1 / hotserve-1x2: inference_workers x intra_op_threads fixed ({e['META_LAYOUT']}); `hotserve` is the default (adaptive) pool",
    ],
}, open(sys.argv[1], "w"), indent=2)
EOF
"$py" "$bench/benchlib.py" report "$run_jsonl" "$work" "$out" --meta "$work/meta.json"
say "wrote $out"
cat "$out"
# The issue 15 targets again, last, where they are seen (also at the top of the report).
echo
cat "$work/targets.md"
