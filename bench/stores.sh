#!/usr/bin/env bash
# Cold start to ready for the realistic MiniLM model, read three ways on this machine in one
# run: from an S3 server straight (MODEL_URI=s3://...), from an MLflow server that does not
# proxy artifacts (models:/... resolved, then s3:// read directly), and through MLflow's
# artifact proxy (models:/... over mlflow-artifacts:/). Every start uses an empty cache, so it
# includes the download, the validation gate and the warm-up. The S3 server is moto (from the
# test virtualenv); everything runs on 127.0.0.1.
#
#   bench/stores.sh            # 5 starts per source, interleaved
#   BENCH_STORES_ROUNDS=9 bench/stores.sh
#
# Needs: scripts/setup.sh bench (the realistic model is built by bench/run.sh, or here) and a
# release build (built here).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rounds="${BENCH_STORES_ROUNDS:-5}"
venv="$root/.venv"
py="$venv/bin/python"
model="${BENCH_REALISTIC_DIR:-$root/bench/.cache/minilm-sentiment}"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

bash scripts/setup.sh bench >&2
[ -f "$model/MLmodel" ] || "$py" bench/build_realistic_model.py "$model" >&2
cargo build --release --locked >&2
bin="$root/target/release/hotserve"
export ORT_DYLIB_PATH="$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* | head -n 1)"

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { # url
  for _ in $(seq 1 600); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "stores.sh: $1 did not answer" >&2; return 1
}

export AWS_ACCESS_KEY_ID=AKIABENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_DEFAULT_REGION=us-east-1
s3_port="$(free_port)"
"$py" -m moto.server -H 127.0.0.1 -p "$s3_port" > "$work/moto.log" 2>&1 &
pids+=($!)
export MLFLOW_S3_ENDPOINT_URL="http://127.0.0.1:$s3_port"
wait_http "$MLFLOW_S3_ENDPOINT_URL/moto-api/"

proxy_port="$(free_port)"
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false "$venv/bin/mlflow" server --host 127.0.0.1 --port "$proxy_port" \
  --backend-store-uri "sqlite:///$work/proxy.db" --artifacts-destination "$work/proxy-artifacts" \
  > "$work/mlflow-proxy.log" 2>&1 &
pids+=($!)
direct_port="$(free_port)"
"$py" - <<EOF
import boto3
boto3.client("s3", endpoint_url="$MLFLOW_S3_ENDPOINT_URL").create_bucket(Bucket="bench")
EOF
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false "$venv/bin/mlflow" server --host 127.0.0.1 --port "$direct_port" \
  --backend-store-uri "sqlite:///$work/direct.db" --no-serve-artifacts \
  --default-artifact-root s3://bench/mlruns > "$work/mlflow-direct.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$proxy_port/health"
wait_http "http://127.0.0.1:$direct_port/health"

echo "uploading and registering $model" >&2
"$py" - <<EOF
import os, boto3
s3 = boto3.client("s3", endpoint_url="$MLFLOW_S3_ENDPOINT_URL")
for base, _, files in os.walk("$model"):
    for name in files:
        path = os.path.join(base, name)
        s3.upload_file(path, "bench", "models/minilm/" + os.path.relpath(path, "$model"))
EOF
for port in "$proxy_port" "$direct_port"; do
  MLFLOW_TRACKING_URI="http://127.0.0.1:$port" "$py" tests/it/support/register.py \
    "{\"op\": \"register\", \"dir\": \"$model\", \"name\": \"minilm\"}" > /dev/null
done

# Seconds from starting hotserve on an empty cache to /health/ready 200.
cold_start() { # name MODEL_URI [VAR=value ...]
  local uri="$2" cache port start end
  shift 2
  cache="$work/cache-$RANDOM$RANDOM"
  port="$(free_port)"
  start="$(date +%s.%N)"
  env "$@" "$bin" serve --model-uri "$uri" --listen "127.0.0.1:$port" --cache-dir "$cache" \
    --poll-interval 0 > "$work/hotserve.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 1200); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/health/ready" 2>/dev/null; then break; fi
    sleep 0.01
  done
  end="$(date +%s.%N)"
  curl -fsS -o /dev/null "http://127.0.0.1:$port/health/ready" || { cat "$work/hotserve.log" >&2; exit 1; }
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$cache"
  echo "$end - $start" | bc
}

declare -A times
for round in $(seq 1 "$rounds"); do
  s3="$(cold_start s3 s3://bench/models/minilm)"
  noproxy="$(cold_start noproxy models:/minilm/1 MLFLOW_TRACKING_URI=http://127.0.0.1:$direct_port)"
  proxy="$(cold_start proxy models:/minilm/1 MLFLOW_TRACKING_URI=http://127.0.0.1:$proxy_port)"
  times[s3]+="$s3 "
  times[noproxy]+="$noproxy "
  times[proxy]+="$proxy "
  echo "round $round: s3 $s3 s, no-proxy MLflow $noproxy s, MLflow proxy $proxy s" >&2
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "Cold start to ready, MiniLM ($(du -sh "$model" | cut -f1)), empty cache, median of $rounds (seconds):"
printf '| source | median | all |\n| --- | ---: | --- |\n'
for source in s3 noproxy proxy; do
  printf '| %s | %s | %s|\n' "$source" "$(echo "${times[$source]}" | median)" "${times[$source]}"
done
