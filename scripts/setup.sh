#!/usr/bin/env bash
# Creates the project virtualenv (.venv) that holds the ONNX Runtime shared library hotserve
# loads at run time, and, on request, the Python packages the tests and benchmarks need.
#
#   scripts/setup.sh            # runtime: onnxruntime only (what `hotserve serve` needs)
#   scripts/setup.sh test       # + MLflow server/client, onnx, tokenizers, moto, boto3 and the
#                               #   Azure storage emulator azurite (npm) for the integration tests
#   scripts/setup.sh bench      # + FastAPI/uvicorn baseline and the realistic-model packages
#   scripts/setup.sh gpu        # + the GPU build of ONNX Runtime (onnxruntime-gpu, CUDA 13 and
#                               #   cuDNN 9 as wheels) in a virtualenv of its own, .venv-gpu
#                               #   (HOTSERVE_GPU_VENV), and .venv-gpu/hotserve-gpu.env, the
#                               #   ORT_DYLIB_PATH and LD_LIBRARY_PATH that make hotserve use it
#
# The GPU build gets its own virtualenv because onnxruntime-gpu and onnxruntime both install the
# Python package `onnxruntime` (one would overwrite the other's files), and so that .venv, which
# hotserve finds by itself, stays the CPU build the tests and CPU benchmarks use: the GPU build is
# chosen explicitly, with ORT_DYLIB_PATH (`set -a; . .venv-gpu/hotserve-gpu.env; set +a`, or
# EnvironmentFile= in a systemd unit). A large download (about 1.5 GB); it needs no GPU to install.
#
# Every version is pinned in scripts/requirements-*.txt. Re-running is cheap: a profile whose
# requirements file has not changed since its last install is skipped.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HOTSERVE_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

profiles=(runtime)
gpu=""
for arg in "$@"; do
  case "$arg" in
    runtime) ;;
    test) profiles+=(test) ;;
    bench) profiles+=(test bench) ;;
    gpu) gpu=1 ;;
    *) echo "setup.sh: unknown profile '$arg' (expected runtime, test, bench or gpu)" >&2; exit 2 ;;
  esac
done

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating virtualenv $venv" >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3
fi

for profile in "${profiles[@]}"; do
  req="$root/scripts/requirements-$profile.txt"
  stamp="$venv/.installed-$profile"
  if [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
    continue
  fi
  echo "setup: installing $profile packages from $req" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
done

# Azure's storage emulator for tests/it/stores.rs, from the npm registry, pinned, kept inside the
# virtualenv (node_modules under $venv/node) so that nothing outside it changes.
azurite="azurite@3.37.0"
if [[ " ${profiles[*]} " == *" test "* ]] && ! cmp -s <(echo "$azurite") "$venv/.installed-azurite" 2>/dev/null; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: npm is not installed; install Node.js (it runs the Azure storage emulator the tests use)" >&2
    exit 1
  fi
  echo "setup: installing $azurite into $venv/node" >&2
  npm install --prefix "$venv/node" --no-audit --no-fund --loglevel=error "$azurite" >&2
  echo "$azurite" >"$venv/.installed-azurite"
fi

# curl and openssl for tests/it/tls.rs (a real HTTPS client, and the certificates it trusts),
# from Debian when they are missing.
if [[ " ${profiles[*]} " == *" test "* ]]; then
  missing=()
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "setup: ${missing[*]} missing and not root; install them (apt-get install ${missing[*]})" >&2
      exit 1
    fi
    echo "setup: installing ${missing[*]} from Debian" >&2
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

lib="$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* 2>/dev/null | head -n 1 || true)"
if [ -z "$lib" ]; then
  echo "setup: onnxruntime is installed but libonnxruntime.so was not found under $venv" >&2
  exit 1
fi
echo "setup: ONNX Runtime library at $lib" >&2

# The GPU build (`gpu`), in its own virtualenv, and the environment that selects it.
if [ -n "$gpu" ]; then
  gpu_venv="${HOTSERVE_GPU_VENV:-$root/.venv-gpu}"
  req="$root/scripts/requirements-gpu.txt"
  if [ ! -x "$gpu_venv/bin/python" ]; then
    echo "setup: creating virtualenv $gpu_venv" >&2
    "$python" -m venv "$gpu_venv"
    "$gpu_venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3
  fi
  if ! { [ -f "$gpu_venv/.installed-gpu" ] && cmp -s "$req" "$gpu_venv/.installed-gpu"; }; then
    echo "setup: installing the GPU build of ONNX Runtime from $req into $gpu_venv" >&2
    "$gpu_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$gpu_venv/.installed-gpu"
  fi
  gpu_lib="$(ls "$gpu_venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* 2>/dev/null | head -n 1 || true)"
  if [ -z "$gpu_lib" ] || ! ls "$(dirname "$gpu_lib")"/libonnxruntime_providers_cuda.so >/dev/null 2>&1; then
    echo "setup: onnxruntime-gpu is installed but its libonnxruntime.so or libonnxruntime_providers_cuda.so was not found under $gpu_venv" >&2
    exit 1
  fi
  # ONNX Runtime's CUDA provider loads the CUDA and cuDNN libraries by name: the directories of
  # the NVIDIA wheels go on LD_LIBRARY_PATH (Python's onnxruntime preloads them itself).
  nvidia_libs="$(find "$gpu_venv"/lib/python3*/site-packages/nvidia -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u | paste -sd: -)"
  {
    echo "# Written by scripts/setup.sh gpu: hotserve on the GPU build of ONNX Runtime."
    echo "ORT_DYLIB_PATH=$gpu_lib"
    echo "LD_LIBRARY_PATH=$nvidia_libs"
  } >"$gpu_venv/hotserve-gpu.env"
  echo "setup: GPU build of ONNX Runtime at $gpu_lib; its environment is in $gpu_venv/hotserve-gpu.env" >&2
fi
