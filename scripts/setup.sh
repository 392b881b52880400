#!/usr/bin/env bash
# Creates the project virtualenv (.venv) that holds the ONNX Runtime shared library hotserve
# loads at run time, and, on request, the Python packages the tests and benchmarks need.
#
#   scripts/setup.sh            # runtime: onnxruntime only (what `hotserve serve` needs)
#   scripts/setup.sh test       # + MLflow server/client, onnx, tokenizers, moto, boto3 and the
#                               #   Azure storage emulator azurite (npm) for the integration tests
#   scripts/setup.sh bench      # + FastAPI/uvicorn baseline and the realistic-model packages
#
# Every version is pinned in scripts/requirements-*.txt. Re-running is cheap: a profile whose
# requirements file has not changed since its last install is skipped.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HOTSERVE_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

profiles=(runtime)
for arg in "$@"; do
  case "$arg" in
    runtime) ;;
    test) profiles+=(test) ;;
    bench) profiles+=(test bench) ;;
    *) echo "setup.sh: unknown profile '$arg' (expected runtime, test or bench)" >&2; exit 2 ;;
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
