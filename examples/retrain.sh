#!/usr/bin/env bash
# A retraining-driven reload, end to end: register a freshly trained model in MLflow, gate it
# with `hotserve validate`, move the alias the fleet follows, and (optionally) watch a running
# hotserve pick it up. See examples/README.md.
#
#   export MLFLOW_TRACKING_URI=http://127.0.0.1:5000
#   examples/retrain.sh [options] [MODEL_DIR]
#
# MODEL_DIR is the MLflow model directory the training job wrote (MLmodel, the ONNX graph and
# its data, tokenizer.json); default: tests/fixtures/sentiment_v2, standing in for a freshly
# trained model.
#
# Options (environment variable in brackets):
#   --name NAME        registered model name [MODEL_NAME, default sentiment]
#   --alias ALIAS      alias to promote [MODEL_ALIAS, default champion]
#   --mode MODE        upload (the directory byte for byte) or log-model (mlflow.onnx.log_model)
#                      [REGISTER_MODE, default upload]; see examples/register_model.py
#   --inputs FILE      also compare the new version with the one the alias points at now on
#                      these texts (one per line), as hotserve's shadow mode would
#                      (hotserve validate --against); refused -> not promoted [COMPARE_INPUTS]
#   --wait / --no-wait wait until hotserve at HOTSERVE_URL serves the new version
#                      [WAIT=yes|no|auto; auto (default) waits if HOTSERVE_URL answers]
#   HOTSERVE_URL       a running hotserve [default http://127.0.0.1:8080]
#   WAIT_TIMEOUT       seconds to wait for it [default 120]
#   HOTSERVE_BIN       [default target/release/hotserve]; PYTHON [default .venv/bin/python]
#
# Exit status: 0 promoted (and, if waited for, served); 1 the validation gate (or, with
# --inputs, the comparison with the current version) rejected the new version (the alias was not moved; the version is tagged hotserve.validation=failed); 2 usage
# or environment errors; 3 promoted, but hotserve did not serve it within WAIT_TIMEOUT.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name="${MODEL_NAME:-sentiment}"
alias="${MODEL_ALIAS:-champion}"
mode="${REGISTER_MODE:-upload}"
wait_mode="${WAIT:-auto}"
hotserve_url="${HOTSERVE_URL:-http://127.0.0.1:8080}"
wait_timeout="${WAIT_TIMEOUT:-120}"
hotserve="${HOTSERVE_BIN:-$root/target/release/hotserve}"
python="${PYTHON:-$root/.venv/bin/python}"
model_dir=""
inputs="${COMPARE_INPUTS:-}"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --alias) alias="$2"; shift 2 ;;
    --mode) mode="$2"; shift 2 ;;
    --inputs) inputs="$2"; shift 2 ;;
    --wait) wait_mode=yes; shift ;;
    --no-wait) wait_mode=no; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "retrain.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) model_dir="$1"; shift ;;
  esac
done
model_dir="${model_dir:-$root/tests/fixtures/sentiment_v2}"

say() { printf '\n== %s\n' "$*" >&2; }
die() { echo "retrain.sh: $1" >&2; exit "${2:-2}"; }
json_field() { "$python" -c '
import json, sys
try:
    v = json.load(sys.stdin).get(sys.argv[1])
except ValueError:
    v = None
print("" if v is None else v)' "$1"; }

[ -n "${MLFLOW_TRACKING_URI:-}" ] || die "set MLFLOW_TRACKING_URI to your MLflow server (e.g. http://127.0.0.1:5000)"
[ -f "$model_dir/MLmodel" ] || die "$model_dir is not an MLflow model directory (no MLmodel)"
[ -x "$python" ] || die "$python not found; run scripts/setup.sh test (MLflow client) or set PYTHON"
[ -x "$hotserve" ] || die "$hotserve not found; build it with: cargo build --release (or set HOTSERVE_BIN)"
register=("$python" "$root/examples/register_model.py")

# 1. Register: a new logged model linked to a training run, then a new version of $name.
say "1/4 registering $model_dir as a new version of '$name' ($mode) in $MLFLOW_TRACKING_URI"
registered="$("${register[@]}" register --dir "$model_dir" --name "$name" --mode "$mode" \
  --run-name "retrain-$(date -u +%Y%m%dT%H%M%SZ)" --version-tag "source=examples/retrain.sh" \
  --report-alias "$alias")"
echo "$registered" >&2
version="$(json_field version <<<"$registered")"
previous="$(json_field alias_version <<<"$registered")"
[ -n "$version" ] || die "register_model.py did not report a version"

# 2. Gate: the same validation hotserve runs before it lets a version go live (download,
#    MLmodel, ONNX session, graph inputs/outputs, warm-up, golden examples).
say "2/4 validating models:/$name/$version with hotserve validate"
against=()
if [ -n "$inputs" ] && [ -n "$previous" ]; then
  say "    comparing it with version $previous on $inputs (hotserve validate --against)"
  against=(--against "models:/$name/$previous" --inputs "$inputs")
fi
if ! "$hotserve" validate "models:/$name/$version" "${against[@]}"; then
  "${register[@]}" set-tag --name "$name" --version "$version" --tag hotserve.validation=failed >/dev/null || true
  echo >&2
  echo "retrain.sh: version $version of '$name' failed validation: '$alias' stays at version ${previous:-<unset>}; nothing changes for the fleet" >&2
  exit 1
fi

# 3. Promote: move the alias. Every hotserve following models:/$name@$alias picks the version
#    up at its next registry check (poll interval with jitter), or at once via a webhook.
say "3/4 moving '$alias' of '$name' to version $version (was ${previous:-unset})"
"${register[@]}" set-alias --name "$name" --alias "$alias" --version "$version" \
  --tag hotserve.validation=passed >&2
echo "roll back with: $python $root/examples/register_model.py set-alias --name $name --alias $alias --version ${previous:-<previous version>}" >&2

# 4. Optionally watch a running hotserve swap it in.
if [ "$wait_mode" = auto ]; then
  if curl -sf -m 2 "$hotserve_url/health/live" >/dev/null 2>&1; then wait_mode=yes; else wait_mode=no; fi
  [ "$wait_mode" = yes ] || echo "(no hotserve answers at $hotserve_url; not waiting — set HOTSERVE_URL or pass --wait)" >&2
fi
if [ "$wait_mode" = yes ]; then
  say "4/4 waiting up to ${wait_timeout}s for $hotserve_url to serve version $version"
  started=$SECONDS
  live=""
  while [ $((SECONDS - started)) -lt "$wait_timeout" ]; do
    live="$(curl -sf -m 5 "$hotserve_url/health" 2>/dev/null \
      | "$python" -c 'import json, sys; m = json.load(sys.stdin).get("model") or {}; print(m.get("name", ""), m.get("version", ""))' 2>/dev/null || true)"
    [ "$live" = "$name $version" ] && break
    sleep 1
  done
  if [ "$live" != "$name $version" ]; then
    echo "retrain.sh: $hotserve_url still serves '${live:-nothing}' after ${wait_timeout}s; its /health says:" >&2
    curl -s -m 5 "$hotserve_url/health" >&2 || true
    echo >&2
    exit 3
  fi
  echo "hotserve serves $name version $version (after $((SECONDS - started))s)" >&2
  answer="$(curl -s -m 10 -i -H 'content-type: application/json' \
    -d '{"text": "I love this"}' "$hotserve_url/predict" | tr -d '\r' || true)"
  echo "POST /predict {\"text\": \"I love this\"}:" >&2
  grep -i '^x-model-version' <<<"$answer" >&2 || echo "(no X-Model-Version header)" >&2
  tail -n 1 <<<"$answer" >&2
  echo >&2
else
  say "4/4 skipped (not waiting for a hotserve)"
fi
echo "models:/$name/$version"
