#!/usr/bin/env bash
# MiniLM on a GPU (issue 26, target 4): hotserve's throughput at concurrency 1, 8 and 64 against
# in-process ONNX Runtime on the same device (bench/ort_ceiling.py --provider), one line each.
#
#   scripts/setup.sh bench gpu                                       # once: .venv and .venv-gpu
#   cargo build --release --locked --bin hotserve --example loadgen
#   bench/gpu.sh [cuda|cuda:N|tensorrt|tensorrt:N]                   # default cuda
#
# hotserve runs with execution_providers set to the provider alone (no cpu: a GPU that cannot
# start is a refusal, never a CPU run measured by mistake) and the GPU build of ONNX Runtime from
# .venv-gpu/hotserve-gpu.env. The ceiling is the best texts/s of one or two sessions on the device
# at batch sizes up to 64 (hotserve has at most two sessions per model on a device); hotserve's
# figure is requests/s of one text each, so the ratio is what the server keeps of the engine.
# Without an NVIDIA GPU (nvidia-smi finds none) it stops at once and says so.
#
# Environment: GPU_DURATION=10 (measured seconds per concurrency), GPU_WARMUP=3,
# GPU_CONCURRENCY="1 8 64", GPU_WORKERS=2 (inference_workers), GPU_MAX_BATCH=32
# (max_batch_size), GPU_CEILING_SECONDS=3, GPU_MODEL=bench/.cache/minilm-sentiment (built by
# bench/build_realistic_model.py when missing), HOTSERVE_GPU_VENV=.venv-gpu.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
provider="${1:-cuda}"
die() { echo "bench/gpu.sh: $*" >&2; exit 1; }

case "$provider" in
  cuda | cuda:[0-9]* | tensorrt | tensorrt:[0-9]*) ;;
  *) die "unknown provider '$provider' (expected cuda, cuda:N, tensorrt or tensorrt:N)" ;;
esac

# No GPU, no benchmark: said before anything is built or started.
command -v nvidia-smi >/dev/null 2>&1 ||
  die "no GPU here: nvidia-smi is not installed; run this on a machine with an NVIDIA GPU and its driver"
gpus="$(nvidia-smi -L 2>&1)" || die "no GPU here: nvidia-smi -L failed: ${gpus%%$'\n'*}"
[ -n "$gpus" ] || die "no GPU here: nvidia-smi -L lists none"

gpu_venv="${HOTSERVE_GPU_VENV:-$root/.venv-gpu}"
[ -f "$gpu_venv/hotserve-gpu.env" ] ||
  die "no GPU build of ONNX Runtime in $gpu_venv: run scripts/setup.sh gpu"
set -a
# shellcheck disable=SC1091
. "$gpu_venv/hotserve-gpu.env"
set +a
py="$root/.venv/bin/python"
[ -x "$py" ] || die "no virtualenv at .venv: run scripts/setup.sh bench gpu"
bin="$root/target/release/hotserve"
loadgen="$root/target/release/examples/loadgen"
[ -x "$bin" ] && [ -x "$loadgen" ] ||
  die "build first: cargo build --release --locked --bin hotserve --example loadgen"

duration="${GPU_DURATION:-10}"
warmup="${GPU_WARMUP:-3}"
levels="${GPU_CONCURRENCY:-1 8 64}"
model="${GPU_MODEL:-$root/bench/.cache/minilm-sentiment}"
[ -f "$model/MLmodel" ] || "$py" bench/build_realistic_model.py --out "$model" >&2

work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
echo "gpu: ${gpus%%$'\n'*}; provider $provider; ORT_DYLIB_PATH=$ORT_DYLIB_PATH" >&2

# The in-process ceiling on the same device.
"$gpu_venv/bin/python" bench/ort_ceiling.py "$model" --provider "$provider" \
  --batch-sizes 1,8,16,32,64 --seconds "${GPU_CEILING_SECONDS:-3}" --json "$work/ceiling.json" >&2 ||
  die "bench/ort_ceiling.py could not run on $provider (above)"
read -r ceiling ceiling_at < <("$py" - "$work/ceiling.json" <<'PY'
import json, sys
best = json.load(open(sys.argv[1]))["best"]
print(f"{best['texts_per_s']:.1f}", f"batch-{best['batch_size']}-{best['layout']}")
PY
)

# hotserve on the device.
port="$("$py" bench/benchlib.py port)"
"$py" bench/benchlib.py bodies predict "$work/bodies.jsonl"
HOTSERVE_EXECUTION_PROVIDERS="$provider" HOTSERVE_CACHE_DIR="$work/cache" \
  HOTSERVE_INFERENCE_WORKERS="${GPU_WORKERS:-2}" HOTSERVE_MAX_BATCH_SIZE="${GPU_MAX_BATCH:-32}" \
  "$bin" serve --model-uri "$model" --listen "127.0.0.1:$port" >"$work/hotserve.log" 2>&1 </dev/null &
server=$!
for _ in $(seq 1 600); do
  kill -0 "$server" 2>/dev/null || { cat "$work/hotserve.log" >&2; die "hotserve exited before it was ready (log above)"; }
  curl -fsS -o /dev/null "http://127.0.0.1:$port/health/ready" 2>/dev/null && break
  sleep 0.5
done
curl -fsS -o "$work/health.json" "http://127.0.0.1:$port/health" ||
  { cat "$work/hotserve.log" >&2; die "hotserve was not ready within 300 s (log above)"; }
in_use="$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"]["execution_provider"])' "$work/health.json")"
case "$in_use" in
  "${provider%%:*}"*) ;;
  *) die "hotserve runs the model on '$in_use', not on $provider" ;;
esac

for c in $levels; do
  common=(--url "http://127.0.0.1:$port/predict" --concurrency "$c" --threads 2 --body-file "$work/bodies.jsonl")
  "$loadgen" "${common[@]}" --duration "${warmup}s" >/dev/null 2>&1 || true
  "$loadgen" "${common[@]}" --duration "${duration}s" --summary-json "$work/c$c.json" >"$work/c$c.txt" 2>&1 ||
    { cat "$work/c$c.txt" >&2; die "loadgen failed at concurrency $c"; }
  "$py" - "$work/c$c.json" "$c" "$in_use" "$ceiling" "$ceiling_at" <<'PY'
import json, sys
summary, c, provider, ceiling, at = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
s = json.load(open(summary))
rps = s["ok"] / s["elapsed_s"] if s["elapsed_s"] else 0.0
lat = s["latency_us"]
print(f"gpu {provider} minilm c={c}: {rps:.1f} req/s = {rps / ceiling:.2f}x the in-process ceiling "
      f"({ceiling:.1f} texts/s, {at}); p50 {lat['p50'] / 1000:.2f} ms, p99 {lat['p99'] / 1000:.2f} ms, "
      f"{s['failed']} failed")
PY
done
